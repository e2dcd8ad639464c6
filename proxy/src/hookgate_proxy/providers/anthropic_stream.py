"""Parse Anthropic server-sent events and turn them into OpenAI chat completion chunks, without I/O.

`SSEParser` follows the server-sent events parsing rules of the WHATWG HTML standard:
- any of CRLF, LF or CR ends a line;
- the `data` lines of one event are joined with LF, and lines starting with `:` are comments;
- a blank line dispatches the event, so an unterminated event at the end is discarded.
It accepts its input in arbitrary pieces, including pieces that split a line or a UTF-8
character.
`StreamTranslator` turns the decoded Messages API events into `chat.completion.chunk` dicts.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hookgate_proxy.providers.anthropic_translate import (
    PROVIDER,
    error_from_event,
    finish_reason,
    to_openai_usage,
)
from hookgate_proxy.providers.base import ProviderError


@dataclass(frozen=True)
class SSEEvent:
    """One dispatched server-sent event."""

    event: str
    """The `event:` field, or `message` when the event has none."""
    data: str


class SSEParser:
    """Incremental server-sent events parser: feed bytes, get the events completed so far."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._event = ""
        self._data: list[str] = []
        self._seen_bytes = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Parse one piece of the stream and return the events it completed."""
        text = self._decoder.decode(chunk)
        if not self._seen_bytes and text:
            self._seen_bytes = True
            text = text.removeprefix("\ufeff")
        self._buffer += text

        events = []
        while True:
            line, found = self._next_line()
            if not found:
                break
            event = self._process_line(line)
            if event is not None:
                events.append(event)
        return events

    def close(self) -> list[SSEEvent]:
        """Process the end of the stream and return the events it completed.

        Only a final CR line ending can complete an event here, because `feed` keeps a CR at
        the end of its input unprocessed in case an LF follows.
        """
        if self._buffer.endswith("\r"):
            return self.feed(b"\n")
        return []

    def _next_line(self) -> tuple[str, bool]:
        buffer = self._buffer
        line_feed = buffer.find("\n")
        carriage_return = buffer.find("\r")
        if carriage_return == -1 or -1 < line_feed < carriage_return:
            if line_feed == -1:
                return "", False
            self._buffer = buffer[line_feed + 1:]
            return buffer[:line_feed], True

        # A CR at the end of the buffer may be the first half of a CRLF split across two
        # reads, so wait for the next byte before deciding where the line ends.
        if carriage_return + 1 == len(buffer):
            return "", False
        skip = 2 if buffer[carriage_return + 1] == "\n" else 1
        self._buffer = buffer[carriage_return + skip:]
        return buffer[:carriage_return], True

    def _process_line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None

        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        # `id` and `retry` matter only to reconnecting browsers; other fields are ignored, as
        # the standard requires.
        return None

    def _dispatch(self) -> SSEEvent | None:
        event = SSEEvent(self._event or "message", "\n".join(self._data)) if self._data else None
        self._event = ""
        self._data = []
        return event


class StreamTranslator:
    """Translate the events of one Messages API stream into OpenAI chunks.

    Call `feed` for each event in order. It returns the chunks to send, raises ProviderError
    for an `error` event or a malformed event, and sets `finished` at `message_stop`.
    """

    def __init__(self, *, created: int, model: str, include_usage: bool = False) -> None:
        self.created = created
        self.model = model
        self.include_usage = include_usage
        self.finished = False
        self._id = ""
        self._usage: dict[str, Any] = {}
        self._tool_index_by_block: dict[int, int] = {}

    def feed(self, event: SSEEvent) -> list[dict[str, Any]]:
        """Translate one event and return the chunks it produces (often none)."""
        data = self._decode(event)
        kind = data.get("type", event.event)

        if kind == "message_start":
            return self._message_start(data.get("message") or {})
        if kind == "content_block_start":
            return self._block_start(data)
        if kind == "content_block_delta":
            return self._block_delta(data)
        if kind == "message_delta":
            return self._message_delta(data)
        if kind == "message_stop":
            self.finished = True
            return [self._usage_chunk()] if self.include_usage else []
        if kind == "error":
            error = data.get("error") or {}
            raise error_from_event(str(error.get("type") or "api_error"),
                                   str(error.get("message") or "stream error without message"))
        # `ping`, `content_block_stop` and event types added to the API later carry nothing
        # that a chat completion chunk can express.
        return []

    def _decode(self, event: SSEEvent) -> dict[str, Any]:
        try:
            data = json.loads(event.data)
        except ValueError:
            raise ProviderError(f"the Anthropic API sent a {event.event!r} event whose data is "
                                "not JSON", status_code=502, provider=PROVIDER) from None
        if not isinstance(data, dict):
            raise ProviderError(f"the Anthropic API sent a {event.event!r} event whose data is "
                                "not a JSON object", status_code=502, provider=PROVIDER)
        return data

    def _message_start(self, message: Mapping[str, Any]) -> list[dict[str, Any]]:
        self._id = str(message.get("id") or "")
        self.model = str(message.get("model") or self.model)
        self._usage.update(message.get("usage") or {})
        return [self._chunk({"role": "assistant", "content": ""})]

    def _block_start(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        block = data.get("content_block") or {}
        if block.get("type") == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        if block.get("type") != "tool_use":
            return []

        tool_index = len(self._tool_index_by_block)
        self._tool_index_by_block[data.get("index", -1)] = tool_index
        call = {
            "index": tool_index,
            "id": block.get("id", ""),
            "type": "function",
            "function": {"name": block.get("name", ""), "arguments": ""},
        }
        # The Messages API streams tool input as JSON fragments and sends an empty `input`
        # here, but a non-empty one is sent in full rather than lost.
        if block.get("input"):
            call["function"]["arguments"] = json.dumps(block["input"], separators=(",", ":"))
        return [self._chunk({"tool_calls": [call]})]

    def _block_delta(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        delta = data.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [self._chunk({"content": delta["text"]})]
        if kind == "input_json_delta" and delta.get("partial_json"):
            tool_index = self._tool_index_by_block.get(data.get("index", -1))
            if tool_index is None:
                raise ProviderError("the Anthropic API sent tool input for a content block "
                                    "that did not start as tool_use", status_code=502,
                                    provider=PROVIDER)
            call = {"index": tool_index, "function": {"arguments": delta["partial_json"]}}
            return [self._chunk({"tool_calls": [call]})]
        # thinking_delta, signature_delta and citations_delta have no chunk equivalent.
        return []

    def _message_delta(self, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        # message_delta usage counts are cumulative, so they replace the message_start ones.
        self._usage.update({key: value for key, value in (data.get("usage") or {}).items()
                            if value is not None})
        stop_reason = (data.get("delta") or {}).get("stop_reason")
        if stop_reason is None:
            return []
        return [self._chunk({}, finish=finish_reason(stop_reason))]

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        if self.include_usage:
            # The OpenAI API sends `usage: null` on every chunk but the last when usage is
            # requested, and clients may rely on the key being present.
            chunk["usage"] = None
        return chunk

    def _usage_chunk(self) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": to_openai_usage(self._usage),
        }
