"""The frames the proxy and its logger process exchange over one Unix socket pair.

A frame is a 4-byte big-endian length, then that many bytes: one kind byte and a body.

- `E` (event, proxy to logger process): the names of the plugins that receive the
  event, comma-separated, a newline, then the event as JSON.
- `C` (control, both ways): one JSON object with an `op` field.

No reply follows an event, so the request path sends and returns without waiting
for the logger process. Control messages are few: the setup and its answer, periodic
counters, drain, and close.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from hookgate import CallEvent

__all__ = [
    "CONTROL",
    "EVENT",
    "FRAME_HEADER",
    "MAX_FRAME",
    "FrameError",
    "control_frame",
    "encode_event",
    "event_frame",
    "parse_event",
    "read_frame",
]

EVENT = b"E"
CONTROL = b"C"
MAX_FRAME = 64 * 1024 * 1024
"""The largest frame either side accepts; an event over it is dropped and counted."""

_LENGTH = struct.Struct(">I")
FRAME_HEADER = _LENGTH.size
"""Bytes of the length prefix in front of every frame."""


class FrameError(ValueError):
    """A frame that breaks the protocol: the stream cannot be trusted after it."""


def _plain(value: Any) -> Any:
    # The event's nested models (usage, error, metadata) as their fields.
    fields = getattr(value, "__dict__", None)
    if fields is None:
        raise TypeError(f"cannot encode {type(value).__name__} in an event")
    return fields


def encode_event(event: CallEvent | Mapping[str, Any]) -> bytes:
    """Return an event as JSON that `CallEvent.model_validate_json` reads back unchanged.

    `event` is a `CallEvent` or the keyword arguments that build one. orjson on the
    fields is several times faster than `model_dump_json`, and the proxy pays this
    cost once per request. Raises TypeError for a value JSON cannot hold.
    """
    fields = event.__dict__ if isinstance(event, CallEvent) else event
    return orjson.dumps(fields, default=_plain)


def event_frame(names: Iterable[str], body: bytes) -> bytes:
    """Return the frame that delivers the encoded event `body` to the plugins `names`."""
    head = ",".join(names).encode("ascii")
    return _LENGTH.pack(1 + len(head) + 1 + len(body)) + EVENT + head + b"\n" + body


def control_frame(message: dict[str, Any]) -> bytes:
    body = orjson.dumps(message)
    return _LENGTH.pack(1 + len(body)) + CONTROL + body


def parse_event(body: bytes) -> tuple[list[str], CallEvent]:
    """Split an event frame's body into the receiving plugin names and the event."""
    head, separator, payload = body.partition(b"\n")
    if not separator:
        raise FrameError("event frame without a newline after the plugin names")
    return head.decode("ascii").split(","), CallEvent.model_validate_json(payload)


class FrameBuffer:
    """Split a byte stream into frames, for a reader that takes what the socket has.

    One `read` of up to a megabyte and a loop over the frames in it cost far less per
    event than two awaited `readexactly` calls per frame.
    """

    def __init__(self) -> None:
        self._data = bytearray()

    def feed(self, chunk: bytes) -> None:
        self._data += chunk

    @property
    def partial(self) -> bool:
        """True if the bytes fed so far end inside a frame."""
        return bool(self._data)

    def frames(self) -> list[tuple[bytes, bytes]]:
        """Return every complete frame fed so far as (kind, body), and keep the rest.

        Raises FrameError for a length outside the protocol's limits.
        """
        data = self._data
        found = []
        position = 0
        size = len(data)
        while size - position >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(data, position)
            if not 1 <= length <= MAX_FRAME:
                raise FrameError(f"frame length {length} is outside 1 to {MAX_FRAME}")
            end = position + _LENGTH.size + length
            if end > size:
                break
            start = position + _LENGTH.size
            found.append((bytes(data[start:start + 1]), bytes(data[start + 1:end])))
            position = end
        del data[:position]
        return found


async def read_frame(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    """Read one frame and return its kind and body, or None at a clean end of stream."""
    try:
        head = await reader.readexactly(_LENGTH.size)
    except asyncio.IncompleteReadError as error:
        if error.partial:
            raise FrameError("stream ended inside a frame header") from None
        return None
    (length,) = _LENGTH.unpack(head)
    if not 1 <= length <= MAX_FRAME:
        raise FrameError(f"frame length {length} is outside 1 to {MAX_FRAME}")
    try:
        frame = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise FrameError("stream ended inside a frame") from None
    return frame[:1], frame[1:]
