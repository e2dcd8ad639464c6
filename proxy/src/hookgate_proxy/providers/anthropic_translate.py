"""Translate OpenAI chat completions to the Anthropic Messages API and back, without I/O.

Wire formats: OpenAI `POST /v1/chat/completions` and Anthropic `POST /v1/messages` with
`anthropic-version: 2023-06-01`. Every function here is pure, so each rule is tested with
tables of cases and no server.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from hookgate_proxy.providers.base import ProviderError

PROVIDER = "anthropic"

DEFAULT_MAX_TOKENS = 4096
"""Anthropic requires `max_tokens`; OpenAI clients may leave it out, so this is sent instead."""

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
"""Anthropic `stop_reason` to OpenAI `finish_reason`; an unknown reason becomes `stop`."""

OVERLOADED_STATUS = 529
OVERLOADED_CLIENT_STATUS = 503
"""Anthropic reports overload with HTTP 529, which no HTTP standard defines. Clients get 503
instead, the standard status for a server that is temporarily overloaded (RFC 9110, section
15.6.4). The error keeps `overloaded_error` as its type and code, so the cause stays visible."""

PASSTHROUGH_FIELDS = ("top_k",)
"""Anthropic-only request fields that a client may send in an OpenAI request."""

_HANDLED_FIELDS = frozenset({
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop",
    "user", "tools", "tool_choice", "parallel_tool_calls", "stream", "stream_options", "n",
    "response_format",
})

_TOOL_ID_INVALID = re.compile(r"[^a-zA-Z0-9_-]")
_DATA_URL = re.compile(r"^data:(?P<media_type>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)$", re.DOTALL)


def invalid_request(message: str, param: str | None = None) -> ProviderError:
    """Build the 400 error for a request that cannot be expressed in the Messages API."""
    return ProviderError(message, status_code=400, error_type="invalid_request_error",
                         provider=PROVIDER, param=param)


# Requests


def to_anthropic_request(body: Mapping[str, Any], *, default_max_tokens: int = DEFAULT_MAX_TOKENS,
                         stream: bool = False) -> tuple[dict[str, Any], list[str]]:
    """Translate an OpenAI chat completions body to a Messages API body.

    Returns the Anthropic body and the sorted names of the request fields that were dropped:
    OpenAI fields with no Anthropic equivalent (`seed`, `logit_bias`, ...) and unknown fields,
    because the Messages API rejects unknown fields with 400. Raises ProviderError (400) for a
    request that cannot be translated without changing its meaning, naming the offending field
    in `param`.
    `temperature` and `top_p` are sent as they are, so a temperature above 1 (valid for OpenAI,
    which accepts 0 to 2) gets the Anthropic API's own 400 error.
    """
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid_request("`model` must be a non-empty string", "model")
    n = body.get("n")
    if n not in (None, 1):
        raise invalid_request(f"the Anthropic Messages API returns one choice; n={n!r} is "
                              "not supported", "n")
    _check_response_format(body.get("response_format"))

    system, messages = to_anthropic_messages(body.get("messages"))
    request: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": _max_tokens(body, default_max_tokens),
    }
    if system:
        request["system"] = system
    if stream:
        request["stream"] = True

    for name in ("temperature", "top_p", *PASSTHROUGH_FIELDS):
        if body.get(name) is not None:
            request[name] = body[name]
    stop_sequences = _stop_sequences(body.get("stop"))
    if stop_sequences:
        request["stop_sequences"] = stop_sequences
    user = body.get("user")
    if user is not None:
        if not isinstance(user, str):
            raise invalid_request("`user` must be a string", "user")
        request["metadata"] = {"user_id": user}

    tools = body.get("tools")
    if tools:
        request["tools"] = to_anthropic_tools(tools)
        tool_choice = to_anthropic_tool_choice(body.get("tool_choice"),
                                               body.get("parallel_tool_calls"))
        if tool_choice is not None:
            request["tool_choice"] = tool_choice

    ignored = sorted(key for key, value in body.items()
                     if key not in _HANDLED_FIELDS and key not in PASSTHROUGH_FIELDS
                     and value is not None)
    return request, ignored


def _max_tokens(body: Mapping[str, Any], default: int) -> int:
    # `max_completion_tokens` replaced `max_tokens` in the OpenAI API, so it wins when both
    # are present.
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise invalid_request(f"`{name}` must be a positive integer, got {value!r}", name)
        return value
    return default


def _stop_sequences(stop: Any) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(item, str) for item in stop):
        return list(stop)
    raise invalid_request("`stop` must be a string or a list of strings", "stop")


def _check_response_format(response_format: Any) -> None:
    if response_format is None:
        return
    kind = response_format.get("type") if isinstance(response_format, Mapping) else None
    if kind != "text":
        # NOTE: JSON mode and JSON schemas are not translated. They are rejected instead of
        # dropped, because a client that asked for JSON would otherwise get free text.
        raise invalid_request(f"response_format type {kind!r} is not supported by the "
                              "anthropic provider; only 'text' is", "response_format")


def to_anthropic_messages(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split OpenAI messages into Anthropic `system` blocks and alternating turns.

    `system` and `developer` messages become system text blocks in their original order,
    wherever they stood, because the Messages API has no system role inside the conversation.
    `tool` messages become `tool_result` blocks in a user turn. Consecutive turns of one role
    are merged, because the API requires user and assistant turns to alternate. Messages with
    no content are dropped, because the API rejects empty text blocks.
    """
    if not isinstance(messages, list) or not messages:
        raise invalid_request("`messages` must be a non-empty list", "messages")

    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for position, message in enumerate(messages):
        param = f"messages[{position}]"
        if not isinstance(message, Mapping):
            raise invalid_request(f"{param} must be an object", param)
        role = message.get("role")

        if role in ("system", "developer"):
            system.extend(_text_blocks(message.get("content"), param))
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"), param)
            anthropic_role = "user"
        elif role == "assistant":
            blocks = _assistant_blocks(message, param)
            anthropic_role = "assistant"
        elif role == "tool":
            blocks = [_tool_result_block(message, param)]
            anthropic_role = "user"
        else:
            raise invalid_request(f"{param}.role {role!r} is not supported; expected system, "
                                  "developer, user, assistant or tool", f"{param}.role")

        if not blocks:
            continue
        if turns and turns[-1]["role"] == anthropic_role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": anthropic_role, "content": blocks})

    if not turns:
        raise invalid_request("`messages` must contain at least one user message with content",
                              "messages")
    if turns[0]["role"] != "user":
        raise invalid_request("the first non-system message must be a user message, because "
                              "the Anthropic Messages API starts every conversation with a user "
                              "turn", "messages")

    for turn in turns:
        if turn["role"] == "user":
            _move_tool_results_first(turn)
    _strip_final_assistant_whitespace(turns)
    return system, turns


def _text_blocks(content: Any, param: str) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise invalid_request(f"{param}.content must be a string or a list of parts",
                              f"{param}.content")
    blocks = []
    for position, part in enumerate(content):
        part_param = f"{param}.content[{position}]"
        if not isinstance(part, Mapping) or part.get("type") not in ("text", "refusal"):
            raise invalid_request(f"{part_param} must be a text part here", part_param)
        blocks.extend(_text_part(part, part_param))
    return blocks


def _text_part(part: Mapping[str, Any], param: str) -> list[dict[str, Any]]:
    text = part.get("text") if part["type"] == "text" else part.get("refusal")
    if not isinstance(text, str):
        raise invalid_request(f"{param} has no text", param)
    return [{"type": "text", "text": text}] if text else []


def _user_blocks(content: Any, param: str) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        return _text_blocks(content, param)

    blocks = []
    for position, part in enumerate(content):
        part_param = f"{param}.content[{position}]"
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "image_url":
            blocks.append(_image_block(part, part_param))
        elif kind == "file":
            blocks.append(_document_block(part, part_param))
        elif kind in ("text", "refusal"):
            blocks.extend(_text_part(part, part_param))
        else:
            raise invalid_request(f"{part_param}.type {kind!r} is not supported by the anthropic "
                                  "provider; expected text, image_url or file", part_param)
    return blocks


def _image_block(part: Mapping[str, Any], param: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, Mapping) else image
    if not isinstance(url, str) or not url:
        raise invalid_request(f"{param}.image_url.url is missing", param)

    match = _DATA_URL.match(url)
    if match:
        source = {"type": "base64", "media_type": match["media_type"], "data": match["data"]}
    elif url.startswith(("https://", "http://")):
        source = {"type": "url", "url": url}
    else:
        raise invalid_request(f"{param}.image_url.url must be an http(s) URL or a base64 data "
                              "URL", param)
    return {"type": "image", "source": source}


def _document_block(part: Mapping[str, Any], param: str) -> dict[str, Any]:
    file = part.get("file")
    data = file.get("file_data") if isinstance(file, Mapping) else None
    match = _DATA_URL.match(data) if isinstance(data, str) else None
    if match is None:
        # NOTE: uploaded OpenAI file ids cannot be resolved here; only inline data works.
        raise invalid_request(f"{param}.file.file_data must be a base64 data URL; file ids "
                              "are not supported by the anthropic provider", param)
    source = {"type": "base64", "media_type": match["media_type"], "data": match["data"]}
    return {"type": "document", "source": source}


def _assistant_blocks(message: Mapping[str, Any], param: str) -> list[dict[str, Any]]:
    blocks = _text_blocks(message.get("content"), param)

    tool_calls = message.get("tool_calls") or []
    if not isinstance(tool_calls, list):
        raise invalid_request(f"{param}.tool_calls must be a list", f"{param}.tool_calls")
    for position, call in enumerate(tool_calls):
        call_param = f"{param}.tool_calls[{position}]"
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or not function.get("name") or not call.get("id"):
            raise invalid_request(f"{call_param} needs an id and a function name", call_param)
        blocks.append({
            "type": "tool_use",
            "id": anthropic_tool_id(call["id"]),
            "name": function["name"],
            "input": _tool_arguments(function.get("arguments"), call_param),
        })
    return blocks


def _tool_arguments(arguments: Any, param: str) -> Any:
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, Mapping):
        return dict(arguments)
    try:
        parsed = json.loads(arguments)
    except (TypeError, ValueError) as error:
        raise invalid_request(f"{param}.function.arguments is not valid JSON: {error}",
                              f"{param}.function.arguments") from None
    if not isinstance(parsed, dict):
        raise invalid_request(f"{param}.function.arguments must encode a JSON object",
                              f"{param}.function.arguments")
    return parsed


def _tool_result_block(message: Mapping[str, Any], param: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise invalid_request(f"{param}.tool_call_id is missing", f"{param}.tool_call_id")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": anthropic_tool_id(call_id)}
    content = _text_blocks(message.get("content"), param)
    if content:
        block["content"] = content
    return block


def anthropic_tool_id(call_id: str) -> str:
    """Return `call_id` with every character outside `[a-zA-Z0-9_-]` replaced by `_`.

    The Messages API accepts only that pattern for tool_use ids, while ids produced by other
    providers may contain other characters. The same replacement is applied to the tool_use
    and the tool_result, so the pair still matches.
    """
    return _TOOL_ID_INVALID.sub("_", call_id)


def _move_tool_results_first(turn: dict[str, Any]) -> None:
    # The API requires tool_result blocks to precede any other content of their user turn;
    # sorted() is stable, so the order within each group is kept.
    turn["content"] = sorted(turn["content"], key=lambda block: block["type"] != "tool_result")


def _strip_final_assistant_whitespace(turns: list[dict[str, Any]]) -> None:
    # A final assistant turn is a prefill of the response, and the API rejects a prefill that
    # ends with whitespace.
    last = turns[-1]
    if last["role"] != "assistant" or last["content"][-1]["type"] != "text":
        return
    stripped = last["content"][-1]["text"].rstrip()
    if stripped:
        last["content"][-1]["text"] = stripped
        return
    last["content"].pop()
    if not last["content"]:
        turns.pop()


def to_anthropic_tools(tools: Any) -> list[dict[str, Any]]:
    """Translate OpenAI `tools` (function definitions) to Anthropic tool definitions."""
    if not isinstance(tools, list):
        raise invalid_request("`tools` must be a list", "tools")

    result = []
    for position, tool in enumerate(tools):
        param = f"tools[{position}]"
        if not isinstance(tool, Mapping) or tool.get("type") != "function":
            raise invalid_request(f"{param} must be a tool of type 'function'", param)
        function = tool.get("function")
        if not isinstance(function, Mapping) or not function.get("name"):
            raise invalid_request(f"{param}.function.name is missing", f"{param}.function")

        definition: dict[str, Any] = {
            "name": function["name"],
            "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
        }
        if function.get("description"):
            definition["description"] = function["description"]
        result.append(definition)
    return result


def to_anthropic_tool_choice(tool_choice: Any,
                             parallel_tool_calls: Any = None) -> dict[str, Any] | None:
    """Translate OpenAI `tool_choice` and `parallel_tool_calls` to Anthropic `tool_choice`.

    Returns None when the API default (auto, parallel calls allowed) applies.
    """
    if tool_choice is None or tool_choice == "auto":
        choice: dict[str, Any] = {"type": "auto"}
    elif tool_choice == "none":
        # Anthropic rejects disable_parallel_tool_use together with type none.
        return {"type": "none"}
    elif tool_choice == "required":
        choice = {"type": "any"}
    elif (isinstance(tool_choice, Mapping) and tool_choice.get("type") == "function"
          and isinstance(tool_choice.get("function"), Mapping)
          and tool_choice["function"].get("name")):
        choice = {"type": "tool", "name": tool_choice["function"]["name"]}
    else:
        raise invalid_request("`tool_choice` must be 'auto', 'none', 'required' or "
                              "{'type': 'function', 'function': {'name': ...}}", "tool_choice")

    if parallel_tool_calls is False:
        choice["disable_parallel_tool_use"] = True
    if choice == {"type": "auto"}:
        return None
    return choice


# Responses


def finish_reason(stop_reason: str | None) -> str | None:
    """Map an Anthropic `stop_reason` to an OpenAI `finish_reason` (None stays None)."""
    if stop_reason is None:
        return None
    return FINISH_REASONS.get(stop_reason, "stop")


def to_openai_usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    """Translate Anthropic usage to OpenAI usage.

    Anthropic counts cache reads and cache writes apart from `input_tokens`, while OpenAI's
    `prompt_tokens` includes cached tokens, so the three are added up and cache reads are also
    reported as `prompt_tokens_details.cached_tokens`.
    """
    cache_read = usage.get("cache_read_input_tokens") or 0
    cache_write = usage.get("cache_creation_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + cache_read + cache_write
    completion = usage.get("output_tokens") or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read},
    }


def to_openai_tool_call(block: Mapping[str, Any]) -> dict[str, Any]:
    """Translate a `tool_use` block to an OpenAI tool call with JSON-string arguments."""
    return {
        "id": block["id"],
        "type": "function",
        "function": {
            "name": block["name"],
            "arguments": json.dumps(block.get("input") or {}, ensure_ascii=False,
                                    separators=(",", ":")),
        },
    }


def to_openai_response(message: Mapping[str, Any], *, created: int,
                       model: str | None = None) -> dict[str, Any]:
    """Translate an Anthropic `message` object to an OpenAI `chat.completion` object.

    Text blocks are joined into `content`; `thinking` and `redacted_thinking` blocks are left
    out, because chat completions have no standard field for them.
    """
    content = message.get("content")
    if not isinstance(content, list):
        raise ProviderError("the Anthropic API returned a message without a content list",
                            status_code=502, provider=PROVIDER)

    texts = [block.get("text", "") for block in content if block.get("type") == "text"]
    tool_calls = [to_openai_tool_call(block) for block in content
                  if block.get("type") == "tool_use"]
    reply: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not tool_calls else None,
    }
    if tool_calls:
        reply["tool_calls"] = tool_calls

    return {
        "id": message.get("id", ""),
        "object": "chat.completion",
        "created": created,
        "model": message.get("model") or model or "",
        "choices": [{
            "index": 0,
            "message": reply,
            "finish_reason": finish_reason(message.get("stop_reason")),
            "logprobs": None,
        }],
        "usage": to_openai_usage(message.get("usage") or {}),
    }


# Errors


def error_from_response(status: int, body: bytes, *,
                        request_id: str | None = None) -> ProviderError:
    """Build the ProviderError for a non-2xx Messages API response.

    The status is kept except for 529 (overloaded), which becomes 503. An Anthropic error body
    (`{"type": "error", "error": {"type", "message"}}`) gives the message and the error type;
    any other body gives a generic message that quotes its start.
    """
    error_type, message = _parse_error_body(body)
    if message is None:
        excerpt = body[:200].decode("utf-8", "replace").strip()
        message = f"the Anthropic API returned HTTP {status} with a non-JSON body: {excerpt!r}"
    if request_id:
        message = f"{message} (Anthropic request-id {request_id})"
    return error_from_event(error_type or _default_error_type(status), message,
                            status=status)


def error_from_event(error_type: str, message: str, *, status: int | None = None) -> ProviderError:
    """Build the ProviderError for an Anthropic error, from a response or a stream `error` event.

    Without a status (a stream event), the status follows from the error type.
    """
    if status is None:
        status = _STATUS_BY_ERROR_TYPE.get(error_type, 502)
    if status == OVERLOADED_STATUS:
        status = OVERLOADED_CLIENT_STATUS
    return ProviderError(message, status_code=status, error_type=error_type, provider=PROVIDER,
                         code=error_type)


_STATUS_BY_ERROR_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": OVERLOADED_STATUS,
}


def _default_error_type(status: int) -> str:
    for error_type, error_status in _STATUS_BY_ERROR_TYPE.items():
        if error_status == status:
            return error_type
    return "api_error"


def _parse_error_body(body: bytes) -> tuple[str | None, str | None]:
    try:
        data = json.loads(body)
    except ValueError:
        return None, None
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return None, None
    error_type = error.get("type") if isinstance(error.get("type"), str) else None
    message = error.get("message") if isinstance(error.get("message"), str) else None
    return error_type, message
