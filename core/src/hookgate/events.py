"""The event model: what every logger plugin receives once per finished LLM call.

The model only grows by adding optional fields, so that a plugin written against an
older hookgate-core keeps working. Every field is documented in docs/event-model.md,
and a test checks that page against the model.

One event object is shared by every plugin that receives it. It is frozen, and its
nested request and response data are converted to read-only containers
(`FrozenDict` and tuples), so that one plugin cannot change what another sees.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any, Literal, NoReturn

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "CallEvent",
    "ErrorInfo",
    "FrozenDict",
    "RequestMetadata",
    "Usage",
    "freeze",
    "new_call_id",
]


class FrozenDict(dict):  # type: ignore[type-arg]
    """A dict that rejects every change after it is built.

    It subclasses dict so that json, orjson and pydantic serialize it as a plain
    JSON object with no adapter.
    """

    __slots__ = ()

    def _reject(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("hookgate event data is read-only; copy it before changing it")

    __setitem__ = _reject
    __delitem__ = _reject
    __ior__ = _reject
    clear = _reject
    pop = _reject
    popitem = _reject
    setdefault = _reject
    update = _reject

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items(), key=lambda item: str(item[0]))))

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenDict:
        return self


def freeze(value: Any) -> Any:
    """Return `value` with every dict made a FrozenDict and every list a tuple.

    Strings, numbers, booleans and None are returned as they are; so is any other
    object, which the proxy never puts in an event.
    """
    if isinstance(value, FrozenDict):
        return value
    if isinstance(value, dict):
        return FrozenDict({key: freeze(item) for key, item in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(item) for item in value)
    return value


class _RandomIds:
    """Random 128-bit ids cut from a buffer of `os.urandom` bytes.

    `uuid.uuid4()` reads the operating system's random source once per id, and that
    read releases the GIL. On the request path that is costly: while a logger's
    thread is busy, getting the GIL back can take up to the interpreter's switch
    interval (5 ms by default), and a profile of the proxy with three loggers
    showed 17% of the event loop's samples there. Reading 4 KiB at a time keeps
    the ids as random as uuid4's and releases the GIL once per 256 ids.
    """

    def __init__(self, chunk: int = 4096) -> None:
        self._chunk = chunk
        self._buffer = b""
        self._position = 0
        self._lock = threading.Lock()

    def next_hex(self) -> str:
        with self._lock:
            if self._position + 16 > len(self._buffer):
                self._buffer = os.urandom(self._chunk)
                self._position = 0
            start = self._position
            self._position += 16
            return self._buffer[start:start + 16].hex()


    def reset(self) -> None:
        """Forget the buffer, so that a forked child never repeats its parent's ids."""
        self._buffer = b""
        self._position = 0
        self._lock = threading.Lock()


_random_ids = _RandomIds()
os.register_at_fork(after_in_child=_random_ids.reset)


def new_call_id() -> str:
    """Return a new call id: 32 random lowercase hex digits, usable as a W3C trace id."""
    return _random_ids.next_hex()


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


class Usage(_Frozen):
    """Token counts as the provider reported them (zero where it reported none)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ErrorInfo(_Frozen):
    """What went wrong in a failed call."""

    type: str
    """Exception class name or error kind, e.g. `ProviderTimeout`, `InvalidRequest`."""
    message: str
    """The error message returned to the client (never contains a secret)."""
    status_code: int | None = None
    """HTTP status returned to the client, or None if the client went away first."""
    provider: str | None = None
    """Provider that raised the error, or None if it happened before a provider was called."""
    cancelled: bool = False
    """True if the client disconnected before the call finished."""


class RequestMetadata(_Frozen):
    """Who made the request and how. Never contains a key, a secret or an auth header."""

    key_alias: str | None = None
    """The configured alias of the API key used, if any."""
    key_hash: str | None = None
    """A SHA-256 prefix of the API key (16 hex digits), for correlation without the key."""
    team: str | None = None
    user: str | None = None
    """The OpenAI `user` field or the `x-hookgate-user` header."""
    tags: tuple[str, ...] = ()
    trace_id: str | None = None
    """A trace id sent by the client (`traceparent` or `x-hookgate-trace-id`)."""
    client_ip: str | None = None
    user_agent: str | None = None


class CallEvent(_Frozen):
    """One finished LLM call, as every logger plugin receives it."""

    call_id: str = Field(default_factory=new_call_id)
    """Unique id of the call; also sent to the client in the `x-hookgate-call-id` header."""
    call_type: Literal["chat_completion", "embedding"] = "chat_completion"
    route: str = "/chat/completions"
    """Request path as the client sent it, e.g. `/v1/chat/completions`."""
    model: str
    """Model name as the client requested it."""
    upstream_model: str | None = None
    """Model name sent to the provider, or None if no provider was chosen."""
    provider: str | None = None
    """Provider prefix from the config (`openai`, `anthropic`, `mock`), or None."""
    stream: bool = False
    status: Literal["success", "failure"]
    start_time: datetime = Field(default_factory=_utc_now)
    """When hookgate received the request (UTC)."""
    end_time: datetime = Field(default_factory=_utc_now)
    """When the last byte of the response was sent, or the call failed (UTC)."""
    first_token_time: datetime | None = None
    """For streams: when the first chunk with content was sent (UTC)."""
    latency_ms: float = 0.0
    """`end_time - start_time` in milliseconds."""
    usage: Usage | None = None
    messages: tuple[Any, ...] = ()
    """The request messages (chat) or input strings (embeddings), read-only."""
    params: FrozenDict = Field(default_factory=FrozenDict)
    """Every other request field (temperature, tools, ...), read-only."""
    response: FrozenDict | None = None
    """The response body; for streams, assembled from the chunks into one completion."""
    error: ErrorInfo | None = None
    """Set if and only if `status` is `failure`."""
    metadata: RequestMetadata = Field(default_factory=RequestMetadata)
    disabled_callbacks: tuple[str, ...] = ()
    """Names of the callbacks this request disabled (sorted), so the loggers that still
    run keep a record of the opt-out."""

    @field_validator("messages", mode="before")
    @classmethod
    def _freeze_messages(cls, value: Iterable[Any]) -> tuple[Any, ...]:
        return tuple(freeze(item) for item in value)

    @field_validator("params", "response", mode="before")
    @classmethod
    def _freeze_mapping(cls, value: Mapping[str, Any] | None) -> FrozenDict | None:
        if value is None:
            return None
        return freeze(dict(value))  # type: ignore[no-any-return]

    def without_content(self) -> CallEvent:
        """Return a copy with messages, response choices and embeddings left out.

        Plugins configured with `log_content: false` send this copy: metadata, usage,
        timing and status only.
        """
        response = None
        if self.response is not None:
            response = {
                key: value
                for key, value in self.response.items()
                if key not in ("choices", "data")
            }
        return self.model_copy(update={"messages": (), "response": freeze(response)})
