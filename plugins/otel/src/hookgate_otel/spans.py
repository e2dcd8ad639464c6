"""Map a hookgate `CallEvent` to the attributes of an OpenTelemetry GenAI span.

Attribute names follow the OpenTelemetry semantic conventions for generative AI
(`gen_ai.*`, as listed in opentelemetry-semantic-conventions 0.66b2) and the
general conventions (`error.type`, `http.response.status_code`, `client.address`).
Names under `hookgate.` are this project's own. Message content appears only in
`gen_ai.input.messages` and `gen_ai.output.messages`, and only when the event still
carries it: with `log_content: false` hookgate-core removes it before the plugin
receives the event.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson

from hookgate import CallEvent

__all__ = ["PER_CALL_ATTRIBUTES", "span_attributes", "span_name", "time_ns"]

AttributeValue = str | bool | int | float | Sequence[str]

OPERATIONS = {"chat_completion": "chat", "embedding": "embeddings"}

# OpenAI request fields and the GenAI attribute that carries each one.
REQUEST_PARAMETERS = {
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "seed": "gen_ai.request.seed",
}

# Attributes whose values differ from call to call, so caching their encoding is useless.
PER_CALL_ATTRIBUTES = frozenset({
    "hookgate.call_id",
    "hookgate.client_trace_id",
    "gen_ai.response.id",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
})


def span_name(event: CallEvent) -> str:
    """Return the span name the GenAI conventions prescribe: `{operation} {model}`."""
    return f"{OPERATIONS.get(event.call_type, event.call_type)} {event.model}"


def time_ns(moment: datetime) -> int:
    """Return `moment` as integer nanoseconds since the Unix epoch, as the SDK expects."""
    return int(moment.timestamp() * 1_000_000) * 1000


def span_attributes(event: CallEvent) -> dict[str, AttributeValue]:
    """Build every span attribute for `event`, content included only if the event has it."""
    attributes: dict[str, AttributeValue] = {
        "gen_ai.operation.name": OPERATIONS.get(event.call_type, event.call_type),
        "gen_ai.request.model": event.model,
        "hookgate.call_id": event.call_id,
        "hookgate.route": event.route,
        "hookgate.stream": event.stream,
        "hookgate.status": event.status,
    }
    if event.provider:
        # gen_ai.system is the older name of gen_ai.provider.name; backends that
        # predate the rename still read it, so both are set.
        attributes["gen_ai.provider.name"] = event.provider
        attributes["gen_ai.system"] = event.provider

    _add_request(attributes, event)
    _add_response(attributes, event)
    _add_usage(attributes, event)
    _add_metadata(attributes, event)
    _add_error(attributes, event)
    _add_content(attributes, event)
    return attributes


def _add_request(attributes: dict[str, AttributeValue], event: CallEvent) -> None:
    params = event.params
    for field, attribute in REQUEST_PARAMETERS.items():
        value = params.get(field)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            attributes[attribute] = value

    choices = params.get("n")
    if isinstance(choices, int) and not isinstance(choices, bool) and choices != 1:
        attributes["gen_ai.request.choice.count"] = choices

    stop = params.get("stop")
    if isinstance(stop, str):
        attributes["gen_ai.request.stop_sequences"] = (stop,)
    elif isinstance(stop, Sequence) and all(isinstance(item, str) for item in stop):
        attributes["gen_ai.request.stop_sequences"] = tuple(stop)


def _add_response(attributes: dict[str, AttributeValue], event: CallEvent) -> None:
    response = event.response or {}
    response_model = response.get("model") or event.upstream_model
    if isinstance(response_model, str) and response_model:
        attributes["gen_ai.response.model"] = response_model
    if isinstance(response.get("id"), str):
        attributes["gen_ai.response.id"] = response["id"]

    reasons = [choice.get("finish_reason") for choice in response.get("choices") or ()
               if isinstance(choice, Mapping)]
    if reasons and all(isinstance(reason, str) for reason in reasons):
        attributes["gen_ai.response.finish_reasons"] = tuple(reasons)

    if event.first_token_time is not None:
        seconds = (event.first_token_time - event.start_time).total_seconds()
        attributes["gen_ai.response.time_to_first_chunk"] = max(seconds, 0.0)


def _add_usage(attributes: dict[str, AttributeValue], event: CallEvent) -> None:
    if event.usage is None:
        return
    attributes["gen_ai.usage.input_tokens"] = event.usage.prompt_tokens
    attributes["gen_ai.usage.output_tokens"] = event.usage.completion_tokens


def _add_metadata(attributes: dict[str, AttributeValue], event: CallEvent) -> None:
    metadata = event.metadata
    optional: dict[str, str | None] = {
        "hookgate.key_alias": metadata.key_alias,
        "hookgate.key_hash": metadata.key_hash,
        "hookgate.team": metadata.team,
        "hookgate.user": metadata.user,
        "hookgate.client_trace_id": metadata.trace_id,
        "client.address": metadata.client_ip,
        "user_agent.original": metadata.user_agent,
    }
    for attribute, value in optional.items():
        if value:
            attributes[attribute] = value
    if metadata.tags:
        attributes["hookgate.tags"] = tuple(metadata.tags)
    if event.disabled_callbacks:
        attributes["hookgate.disabled_callbacks"] = tuple(event.disabled_callbacks)


def _add_error(attributes: dict[str, AttributeValue], event: CallEvent) -> None:
    if event.error is None:
        return
    attributes["error.type"] = event.error.type
    if event.error.status_code is not None:
        attributes["http.response.status_code"] = event.error.status_code
    if event.error.cancelled:
        attributes["hookgate.cancelled"] = True


def _add_content(attributes: dict[str, AttributeValue], event: CallEvent) -> None:
    if event.messages:
        if event.call_type == "embedding":
            inputs = [{"role": "user", "parts": [_text_part(item)]} for item in event.messages]
        else:
            inputs = [_input_message(message) for message in event.messages]
        attributes["gen_ai.input.messages"] = _to_json(inputs)

    choices = (event.response or {}).get("choices")
    if choices and event.call_type == "chat_completion":
        outputs = [_output_message(choice) for choice in choices if isinstance(choice, Mapping)]
        if outputs:
            attributes["gen_ai.output.messages"] = _to_json(outputs)


def _input_message(message: Any) -> dict[str, Any]:
    if not isinstance(message, Mapping):
        return {"role": "user", "parts": [_text_part(message)]}
    role = message.get("role", "user")
    parts = _content_parts(message.get("content"))

    if role == "tool":
        parts = [{"type": "tool_call_response", "id": message.get("tool_call_id"),
                  "response": message.get("content")}]
    parts.extend(_tool_call_parts(message.get("tool_calls")))
    return {"role": role, "parts": parts}


def _output_message(choice: Mapping[str, Any]) -> dict[str, Any]:
    message = choice.get("message") or {}
    parts = _content_parts(message.get("content"))
    parts.extend(_tool_call_parts(message.get("tool_calls")))
    output: dict[str, Any] = {"role": message.get("role", "assistant"), "parts": parts}
    if choice.get("finish_reason") is not None:
        output["finish_reason"] = choice["finish_reason"]
    return output


def _content_parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [_text_part(content)]
    parts = []
    for item in content if isinstance(content, Sequence) else (content,):
        if isinstance(item, Mapping) and item.get("type") == "text":
            parts.append(_text_part(item.get("text", "")))
        elif isinstance(item, Mapping):
            # Images, audio and files keep their OpenAI shape under their own type.
            parts.append({**item, "type": item.get("type", "unknown")})
        else:
            parts.append(_text_part(item))
    return parts


def _tool_call_parts(tool_calls: Any) -> list[dict[str, Any]]:
    parts = []
    for call in tool_calls or ():
        if not isinstance(call, Mapping):
            continue
        function = call.get("function") or {}
        parts.append({"type": "tool_call", "id": call.get("id"), "name": function.get("name"),
                      "arguments": function.get("arguments")})
    return parts


def _text_part(value: Any) -> dict[str, Any]:
    return {"type": "text", "content": value if isinstance(value, str) else str(value)}


def _to_json(value: Any) -> str:
    # orjson is several times faster than json.dumps here. Its output differs only in
    # the spelling of some floats (1e-7 for 1e-07, null for NaN and Infinity). It
    # rejects an int beyond 64 bits and a lone surrogate, which json.dumps encodes.
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
