"""A loopback stand-in for the Anthropic Messages API, for tests.

`AnthropicServer` runs an aiohttp server on 127.0.0.1 in its own thread, so synchronous
tests, asynchronous tests and a `hookgate serve` subprocess can all call it. It rejects the
requests that a translation bug would produce, as the real API does:
- a missing or wrong `x-api-key` (401), a missing `anthropic-version` header (400);
- a missing `max_tokens` or `model`, and any unknown body field (400);
- empty text, malformed tools or tool choice, and `tool_result` blocks that do not match the
  `tool_use` blocks of the previous turn (400).
It is stricter than the real API in one place: roles must alternate starting with user, while
the real API merges consecutive turns of one role. Rejections use the Anthropic error JSON, but
the message texts are our own.

Tests queue `Reply` objects. Each request takes the next one, or an echo of the last user text
when none is queued, and gets it as one JSON message or as server-sent events if it set
`stream`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

API_VERSIONS = frozenset({"2023-01-01", "2023-06-01"})

REQUEST_FIELDS = frozenset({
    "model", "messages", "max_tokens", "system", "stop_sequences", "stream", "temperature",
    "top_p", "top_k", "metadata", "tools", "tool_choice", "thinking", "service_tier",
})
TOOL_FIELDS = frozenset({"name", "description", "input_schema", "cache_control", "type"})
BLOCK_TYPES = {
    "user": frozenset({"text", "image", "document", "tool_result"}),
    "assistant": frozenset({"text", "tool_use", "thinking", "redacted_thinking"}),
}
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")


class RequestRejected(Exception):
    """A request the real API would reject; carries the Anthropic error type and status."""

    def __init__(self, message: str, *, status: int = 400,
                 error_type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type


@dataclass
class Reply:
    """One scripted response (message content or an error) and how to deliver it."""

    content: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str = "end_turn"
    input_tokens: int = 11
    output_tokens: int = 7
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

    status: int = 200
    """A status of 300 or more sends an error instead of the message."""
    error_type: str = "api_error"
    error_message: str = "Internal server error"
    raw_body: bytes | None = None
    """Sent as the whole error body instead of Anthropic error JSON (with `status` >= 300)."""

    delay: float = 0.0
    """Seconds to wait before sending the response headers."""
    piece_size: int | None = None
    """Stream: bytes per TCP write, so events arrive split at arbitrary points."""
    line_ending: str = "\n"
    multiline_data: bool = False
    """Stream: spread each event's JSON over several `data:` lines."""
    error_after: int | None = None
    """Stream: after this many events, send an `error` event and close."""
    stream_error_type: str = "overloaded_error"
    truncate_after: int | None = None
    """Stream: after this many events, close without message_stop."""
    stall_after: int | None = None
    """Stream: after this many events, send nothing for `stall` seconds."""
    stall: float = 0.0


def text_reply(text: str, **options: Any) -> Reply:
    """Build a reply with one text block."""
    return Reply(content=[{"type": "text", "text": text}], **options)


def tool_reply(name: str, tool_input: dict[str, Any], *, text: str | None = None,
               tool_id: str = "toolu_01", **options: Any) -> Reply:
    """Build a reply that calls one tool, optionally after some text."""
    content = [{"type": "text", "text": text}] if text else []
    content.append({"type": "tool_use", "id": tool_id, "name": name, "input": tool_input})
    return Reply(content=content, stop_reason="tool_use", **options)


def error_reply(status: int, error_type: str, message: str, **options: Any) -> Reply:
    """Build a reply that fails with an Anthropic error body."""
    return Reply(status=status, error_type=error_type, error_message=message, **options)


@dataclass(frozen=True)
class RecordedRequest:
    """A request the server received, whether accepted or rejected."""

    headers: Mapping[str, str]
    """Header names in lower case."""
    body: Any
    path: str


class AnthropicServer:
    """Run the stand-in API on a free loopback port: `with AnthropicServer() as server:`."""

    def __init__(self, api_key: str = "sk-ant-test-key") -> None:
        self.api_key = api_key
        self.requests: list[RecordedRequest] = []
        self.port = 0
        self._replies: deque[Reply] = deque()
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The URL to use as `api_base`."""
        return f"http://127.0.0.1:{self.port}"

    def enqueue(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in order."""
        self._replies.extend(replies)

    def reset(self) -> None:
        """Forget recorded requests and queued replies, for the next test."""
        self.requests.clear()
        self._replies.clear()

    def __enter__(self) -> AnthropicServer:
        started = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(started,), daemon=True,
                                        name="anthropic-server")
        self._thread.start()
        if not started.wait(10) or not self.port:
            raise RuntimeError("the loopback Anthropic server did not start within 10 s")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is None or self._runner is None or self._thread is None:
            return
        stopping = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        stopping.result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def _serve(self, started: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/v1/messages", self._handle)
        # A short shutdown timeout, because tests leave stalled responses behind on purpose.
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, handler_cancellation=True)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = self._runner.addresses[0][1]
        started.set()
        self._loop.run_forever()
        self._loop.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        headers = {name.lower(): value for name, value in request.headers.items()}
        self.requests.append(RecordedRequest(headers=headers, body=body, path=request.path))

        try:
            check_headers(headers, self.api_key)
            check_body(body)
        except RequestRejected as rejection:
            return error_response(rejection.status, rejection.error_type, str(rejection))

        reply = self._replies.popleft() if self._replies else echo_reply(body)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.status >= 300:
            if reply.raw_body is not None:
                return web.Response(status=reply.status, body=reply.raw_body,
                                    content_type="text/html")
            return error_response(reply.status, reply.error_type, reply.error_message)

        message = self._message(body, reply)
        if body.get("stream"):
            return await self._stream(request, message, reply)
        return web.json_response(message, headers={"request-id": f"req_{message['id']}"})

    def _message(self, body: Mapping[str, Any], reply: Reply) -> dict[str, Any]:
        usage: dict[str, Any] = {"input_tokens": reply.input_tokens,
                                 "output_tokens": reply.output_tokens}
        if reply.cache_read_input_tokens:
            usage["cache_read_input_tokens"] = reply.cache_read_input_tokens
        if reply.cache_creation_input_tokens:
            usage["cache_creation_input_tokens"] = reply.cache_creation_input_tokens
        return {
            "id": f"msg_{next(self._ids):04d}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": reply.content,
            "stop_reason": reply.stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }

    async def _stream(self, request: web.Request, message: Mapping[str, Any],
                      reply: Reply) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream",
                                               "request-id": f"req_{message['id']}"})
        await response.prepare(request)

        for count, (name, data) in enumerate(stream_events(message)):
            if count == reply.error_after:
                error = {"type": "error", "error": {"type": reply.stream_error_type,
                                                    "message": "Overloaded"}}
                await self._write(response, encode_event("error", error, reply), reply)
                return response
            if count == reply.truncate_after:
                return response
            if count == reply.stall_after:
                await asyncio.sleep(reply.stall)
            await self._write(response, encode_event(name, data, reply), reply)
        await response.write_eof()
        return response

    async def _write(self, response: web.StreamResponse, payload: bytes, reply: Reply) -> None:
        size = reply.piece_size or len(payload)
        for start in range(0, len(payload), size):
            await response.write(payload[start:start + size])
            # Yield to the event loop, so each piece leaves in its own TCP segment.
            await asyncio.sleep(0)


def error_response(status: int, error_type: str, message: str) -> web.Response:
    """Return an Anthropic error response."""
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    return web.json_response(body, status=status, headers={"request-id": "req_error"})


def echo_reply(body: Mapping[str, Any]) -> Reply:
    """Build the default reply: the text of the last user turn, prefixed with `echo: `."""
    content = body["messages"][-1]["content"]
    if isinstance(content, list):
        content = " ".join(block.get("text", "") for block in content if block["type"] == "text")
    return text_reply(f"echo: {content}")


def check_headers(headers: Mapping[str, str], api_key: str) -> None:
    """Raise RequestRejected for the header problems the real API reports."""
    if "x-api-key" not in headers:
        raise RequestRejected("x-api-key header is required", status=401,
                              error_type="authentication_error")
    if headers["x-api-key"] != api_key:
        raise RequestRejected("invalid x-api-key", status=401, error_type="authentication_error")
    version = headers.get("anthropic-version")
    if version is None:
        raise RequestRejected("anthropic-version: header is required")
    if version not in API_VERSIONS:
        raise RequestRejected(f"anthropic-version: invalid version {version!r}")
    if not headers.get("content-type", "").startswith("application/json"):
        raise RequestRejected("content-type must be application/json")


def check_body(body: Any) -> None:
    """Raise RequestRejected for the body problems the real API reports."""
    if not isinstance(body, dict):
        raise RequestRejected("request body must be a JSON object")
    for name in body:
        if name not in REQUEST_FIELDS:
            raise RequestRejected(f"{name}: Extra inputs are not permitted")
    if not isinstance(body.get("model"), str):
        raise RequestRejected("model: Field required")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise RequestRejected("max_tokens: Field required (a positive integer)")
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None and not (isinstance(value, (int, float)) and 0 <= value <= 1):
            raise RequestRejected(f"{name}: must be between 0 and 1")
    stop_sequences = body.get("stop_sequences", [])
    if not isinstance(stop_sequences, list) or not all(isinstance(s, str) for s in stop_sequences):
        raise RequestRejected("stop_sequences: must be a list of strings")
    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict) or set(metadata) - {"user_id"}:
        raise RequestRejected("metadata: only user_id is permitted")

    check_system(body.get("system"))
    tool_names = check_tools(body.get("tools"))
    check_tool_choice(body.get("tool_choice"), tool_names)
    check_messages(body.get("messages"))


def check_system(system: Any) -> None:
    """Reject a system prompt that is neither a string nor a list of non-empty text blocks."""
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise RequestRejected("system: must be a string or a list of text blocks")
    for position, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise RequestRejected(f"system.{position}: must be a text block")
        check_text(block, f"system.{position}")


def check_tools(tools: Any) -> set[str]:
    """Reject malformed tool definitions; return the tool names."""
    if tools is None:
        return set()
    if not isinstance(tools, list):
        raise RequestRejected("tools: must be a list")
    names = set()
    for position, tool in enumerate(tools):
        where = f"tools.{position}"
        if not isinstance(tool, dict):
            raise RequestRejected(f"{where}: must be an object")
        for name in tool:
            if name not in TOOL_FIELDS:
                raise RequestRejected(f"{where}.{name}: Extra inputs are not permitted")
        if not TOOL_NAME.match(str(tool.get("name", ""))):
            raise RequestRejected(f"{where}.name: must match {TOOL_NAME.pattern}")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise RequestRejected(f"{where}.input_schema: must be a JSON schema of type object")
        if tool["name"] in names:
            raise RequestRejected(f"tools: tool names must be unique, {tool['name']!r} repeats")
        names.add(tool["name"])
    return names


def check_tool_choice(choice: Any, tool_names: set[str]) -> None:
    """Reject a tool_choice that is malformed or names no defined tool."""
    if choice is None:
        return
    if not tool_names:
        raise RequestRejected("tool_choice: may only be specified while providing tools")
    kind = choice.get("type") if isinstance(choice, dict) else None
    allowed = {"auto": {"type", "disable_parallel_tool_use"},
               "any": {"type", "disable_parallel_tool_use"},
               "tool": {"type", "name", "disable_parallel_tool_use"},
               "none": {"type"}}
    if kind not in allowed:
        raise RequestRejected(f"tool_choice.type: invalid value {kind!r}")
    extra = set(choice) - allowed[kind]
    if extra:
        raise RequestRejected(f"tool_choice.{sorted(extra)[0]}: Extra inputs are not permitted")
    if kind == "tool" and choice.get("name") not in tool_names:
        raise RequestRejected(f"tool_choice.name: no tool named {choice.get('name')!r}")


def check_messages(messages: Any) -> None:
    """Reject turns that do not alternate from user, empty content and unmatched tool ids."""
    if not isinstance(messages, list) or not messages:
        raise RequestRejected("messages: at least one message is required")

    open_tool_ids: set[str] = set()
    for position, message in enumerate(messages):
        where = f"messages.{position}"
        role = message.get("role") if isinstance(message, dict) else None
        if role not in BLOCK_TYPES:
            raise RequestRejected(f"{where}.role: must be 'user' or 'assistant'")
        expected = "user" if position % 2 == 0 else "assistant"
        if role != expected:
            raise RequestRejected(f"messages: roles must alternate between 'user' and "
                                  f"'assistant', starting with 'user'; {where} is {role!r}")
        blocks = content_blocks(message.get("content"), where)
        for number, block in enumerate(blocks):
            if block.get("type") not in BLOCK_TYPES[role]:
                raise RequestRejected(f"{where}.content.{number}.type: {block.get('type')!r} is "
                                      f"not permitted in a {role} message")
            if block["type"] == "text":
                check_text(block, f"{where}.content.{number}")

        if role == "user":
            check_tool_results(blocks, open_tool_ids, where)
            open_tool_ids = set()
        else:
            open_tool_ids = check_tool_uses(blocks, where)

    last = messages[-1]
    if last["role"] == "assistant":
        blocks = content_blocks(last["content"], "messages")
        if blocks[-1]["type"] == "text" and blocks[-1]["text"] != blocks[-1]["text"].rstrip():
            raise RequestRejected("final assistant content cannot end with trailing whitespace")


def content_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    """Return a message's content as blocks, rejecting empty content."""
    if isinstance(content, str):
        if not content:
            raise RequestRejected(f"{where}: text content must be non-empty")
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not content:
        raise RequestRejected(f"{where}: content must be a non-empty string or list of blocks")
    if not all(isinstance(block, dict) for block in content):
        raise RequestRejected(f"{where}.content: every block must be an object")
    return content


def check_text(block: Mapping[str, Any], where: str) -> None:
    """Reject a text block whose text is missing or empty."""
    text = block.get("text")
    if not isinstance(text, str) or not text:
        raise RequestRejected(f"{where}: text content blocks must be non-empty")


def check_tool_uses(blocks: list[dict[str, Any]], where: str) -> set[str]:
    """Reject malformed tool_use blocks; return their ids."""
    ids = set()
    for block in blocks:
        if block["type"] != "tool_use":
            continue
        if not TOOL_ID.match(str(block.get("id", ""))):
            raise RequestRejected(f"{where}: tool_use.id must match {TOOL_ID.pattern}")
        if not isinstance(block.get("input"), dict):
            raise RequestRejected(f"{where}: tool_use.input must be an object")
        ids.add(block["id"])
    return ids


def check_tool_results(blocks: list[dict[str, Any]], open_ids: set[str], where: str) -> None:
    """Reject tool results that do not match exactly the previous turn's tool_use ids."""
    result_ids = [block.get("tool_use_id") for block in blocks if block["type"] == "tool_result"]
    unexpected = [tool_id for tool_id in result_ids if tool_id not in open_ids]
    if unexpected:
        raise RequestRejected(f"{where}: unexpected tool_use_id found in tool_result blocks: "
                              f"{', '.join(map(str, unexpected))}. Each tool_result block must "
                              "have a corresponding tool_use block in the previous message.")
    missing = sorted(open_ids - set(result_ids))
    if missing:
        raise RequestRejected(f"{where}: tool_use ids were found without tool_result blocks "
                              f"immediately after: {', '.join(missing)}")
    kinds = [block["type"] for block in blocks]
    first_other = next((i for i, kind in enumerate(kinds) if kind != "tool_result"), len(kinds))
    if "tool_result" in kinds[first_other:]:
        raise RequestRejected(f"{where}: tool_result blocks must come before other content")


def stream_events(message: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield the (event, data) pairs the real API streams for `message`.

    Text arrives in pieces of 4 characters and tool input as JSON fragments of 7 characters,
    so a client has to join them.
    """
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None,
             "usage": {**message["usage"], "output_tokens": 1}}
    yield "message_start", {"type": "message_start", "message": start}
    yield "ping", {"type": "ping"}

    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            yield "content_block_start", {"type": "content_block_start", "index": index,
                                          "content_block": {"type": "text", "text": ""}}
            for piece in chunks(block["text"], 4):
                yield "content_block_delta", {"type": "content_block_delta", "index": index,
                                              "delta": {"type": "text_delta", "text": piece}}
        else:
            yield "content_block_start", {"type": "content_block_start", "index": index,
                                          "content_block": {**block, "input": {}}}
            fragments = ["", *chunks(json.dumps(block["input"]), 7)]
            for piece in fragments:
                yield "content_block_delta", {
                    "type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": piece}}
        yield "content_block_stop", {"type": "content_block_stop", "index": index}

    yield "message_delta", {"type": "message_delta",
                            "delta": {"stop_reason": message["stop_reason"],
                                      "stop_sequence": None},
                            "usage": {"output_tokens": message["usage"]["output_tokens"]}}
    yield "message_stop", {"type": "message_stop"}


def chunks(text: str, size: int) -> list[str]:
    """Split `text` into pieces of `size` characters."""
    return [text[start:start + size] for start in range(0, len(text), size)]


def encode_event(name: str, data: Mapping[str, Any], reply: Reply) -> bytes:
    """Encode one server-sent event with the reply's line ending and data layout."""
    end = reply.line_ending
    if reply.multiline_data:
        lines = json.dumps(data, indent=1).split("\n")
    else:
        lines = [json.dumps(data)]
    text = f"event: {name}{end}" + "".join(f"data: {line}{end}" for line in lines) + end
    return text.encode()
