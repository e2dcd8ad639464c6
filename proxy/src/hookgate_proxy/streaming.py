"""Streaming chat completions: pass chunks on as they arrive, then log the whole response.

`ChatStream` is a plain ASGI response rather than Starlette's StreamingResponse
because it must know how the stream ended (finished, upstream error, or client
gone) to submit exactly one event; a task watches for the client's disconnect and
stops the upstream read as soon as it happens.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from hookgate_proxy.calls import Call
from hookgate_proxy.errors import error_body
from hookgate_proxy.providers.base import ProviderError

__all__ = ["ChatStream", "StreamAssembler"]

logger = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"


class StreamAssembler:
    """Builds one `chat.completion` object from the chunks of a stream."""

    def __init__(self) -> None:
        self.header: dict[str, Any] = {}
        self.choices: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, Any] | None = None
        self.chunks = 0

    def add(self, chunk: dict[str, Any]) -> None:
        self.chunks += 1
        if not self.header:
            self.header = {key: chunk[key] for key in ("id", "created", "model",
                                                       "system_fingerprint") if key in chunk}
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            self._add_choice(choice)

    def _add_choice(self, choice: dict[str, Any]) -> None:
        index = choice.get("index", 0)
        state = self.choices.setdefault(index, {"role": "assistant", "content": [],
                                                "tool_calls": {}, "finish_reason": None})
        delta = choice.get("delta") or {}
        if delta.get("role"):
            state["role"] = delta["role"]
        if delta.get("content"):
            state["content"].append(delta["content"])
        for call in delta.get("tool_calls") or ():
            slot = state["tool_calls"].setdefault(call.get("index", 0), {
                "id": None, "type": "function", "function": {"name": "", "arguments": ""}})
            if call.get("id"):
                slot["id"] = call["id"]
            if call.get("type"):
                slot["type"] = call["type"]
            function = call.get("function") or {}
            if function.get("name"):
                slot["function"]["name"] += function["name"]
            if function.get("arguments"):
                slot["function"]["arguments"] += function["arguments"]
        if choice.get("finish_reason"):
            state["finish_reason"] = choice["finish_reason"]

    def completion(self) -> dict[str, Any]:
        """Return the chunks so far as one `chat.completion` object."""
        choices = []
        for index in sorted(self.choices):
            state = self.choices[index]
            message: dict[str, Any] = {"role": state["role"],
                                       "content": "".join(state["content"]) or None}
            if state["tool_calls"]:
                message["tool_calls"] = [state["tool_calls"][key]
                                         for key in sorted(state["tool_calls"])]
            choices.append({"index": index, "message": message,
                            "finish_reason": state["finish_reason"]})
        result: dict[str, Any] = {**self.header, "object": "chat.completion", "choices": choices}
        if self.usage is not None:
            result["usage"] = self.usage
        return result


def _event_bytes(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class ChatStream:
    """The ASGI response of a streaming chat completion.

    `first` is the first chunk, already read so that an upstream error before any
    output could still be returned with its own status. With `client_usage` false
    the client did not ask for usage: hookgate asked the upstream for it anyway (for
    the event) and removes it from what the client receives.
    """

    def __init__(self, call: Call, chunks: AsyncIterator[dict[str, Any]],
                 first: dict[str, Any] | None, headers: dict[str, str], *,
                 client_usage: bool) -> None:
        self.call = call
        self.chunks = chunks
        self.first = first
        # Latin-1, as Starlette decodes request headers: ignored names are echoed
        # from the client's header and must go back as the same bytes.
        self.headers = [(b"content-type", b"text/event-stream"),
                        (b"cache-control", b"no-cache"),
                        *((name.encode("latin-1"), value.encode("latin-1"))
                          for name, value in headers.items())]
        self.client_usage = client_usage
        self.assembler = StreamAssembler()
        self.error: ProviderError | None = None
        self.finished = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        pump = asyncio.create_task(self._pump(send))
        watch = asyncio.create_task(self._wait_disconnect(receive))
        disconnected = False
        try:
            done, _ = await asyncio.wait({pump, watch}, return_when=asyncio.FIRST_COMPLETED)
            if pump not in done:
                disconnected = True
                pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
            failure = None if pump.cancelled() else pump.exception()
            if isinstance(failure, OSError):
                # The send itself failed: the connection is gone.
                disconnected = True
            elif failure is not None and self.error is None:
                logger.error("call %s: stream failed: %r", self.call.call_id, failure,
                             exc_info=failure)
                self.error = ProviderError(f"stream failed: {type(failure).__name__}",
                                           status_code=500, error_type="internal_error")
        finally:
            watch.cancel()
            if not pump.done():
                pump.cancel()
            await asyncio.gather(pump, watch, return_exceptions=True)
            await self._close_upstream()
            self._submit(disconnected)

    async def _wait_disconnect(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return

    async def _pump(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        try:
            if self.first is not None:
                await self._forward(send, self.first)
                self.first = None
            async for chunk in self.chunks:
                await self._forward(send, chunk)
        except ProviderError as error:
            self.error = error
            await send({"type": "http.response.body", "body": _event_bytes(error_body(error)),
                        "more_body": False})
            return
        self.finished = True
        await send({"type": "http.response.body", "body": DONE, "more_body": False})

    async def _forward(self, send: Send, chunk: dict[str, Any]) -> None:
        self.assembler.add(chunk)
        if self.call.first_token_time is None and _has_content(chunk):
            self.call.first_token_time = datetime.now(timezone.utc)
        if not self.client_usage and "usage" in chunk:
            if not chunk.get("choices"):
                return
            chunk = {key: value for key, value in chunk.items() if key != "usage"}
        await send({"type": "http.response.body", "body": _event_bytes(chunk),
                    "more_body": True})

    async def _close_upstream(self) -> None:
        close = getattr(self.chunks, "aclose", None)
        if close is None:
            return
        try:
            await close()
        except Exception as error:
            logger.debug("call %s: closing the upstream stream raised %r",
                         self.call.call_id, error)

    def _submit(self, disconnected: bool) -> None:
        call = self.call
        response = self.assembler.completion()
        if self.finished and not disconnected:
            call.succeed(response)
        elif self.error is not None:
            logger.debug("call %s: upstream failed mid-stream: %s", call.call_id,
                         self.error.message)
            call.fail(self.error, response=response)
        else:
            message = f"client disconnected after {self.assembler.chunks} chunks"
            logger.info("call %s: %s", call.call_id, message)
            call.fail(None, cancelled=True, message=message, response=response)


def _has_content(chunk: dict[str, Any]) -> bool:
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("tool_calls"):
            return True
    return False
