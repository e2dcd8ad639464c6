"""One call's bookkeeping: who asked, what was disabled, and the event at the end.

A `Call` is created when a request has passed authentication. The handler fills
it in as the request proceeds and calls `succeed` or `fail` once the response is
complete. Later calls are ignored, so that no request can produce two events.
Building and submitting the event is in-memory work only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from starlette.requests import Request

from hookgate.dispatch import DisableResult
from hookgate.events import new_call_id
from hookgate_proxy.errors import ProxyError
from hookgate_proxy.header import DISABLE_HEADER, parse_disable_header
from hookgate_proxy.logger_process import EventDispatcher
from hookgate_proxy.providers.base import Deployment, ProviderError

__all__ = ["Call", "Receivers"]

# Request fields that set credentials or the upstream address. hookgate takes
# these from the config only: they are dropped from the body, so a client can
# neither redirect a deployment's key nor get a secret into an event.
CREDENTIAL_FIELDS = frozenset({"api_key", "api_base", "base_url"})

_NO_DISABLE = DisableResult(frozenset())

CallType = Literal["chat_completion", "embedding"]


@dataclass(frozen=True)
class Receivers:
    """Names of the active plugins that receive success events and failure events."""

    success: frozenset[str]
    failure: frozenset[str]

    @classmethod
    def of(cls, dispatcher: EventDispatcher) -> Receivers:
        groups = dispatcher.categories()
        both = groups["success_and_failure"]
        return cls(frozenset(groups["success"] + both), frozenset(groups["failure"] + both))


class Call:
    """The state of one authenticated request, from arrival to its event.

    When no plugin would receive the event (none is active for that outcome, or the
    request disabled them all), the event is not built, which saves the tens of
    microseconds its validation and freezing take.
    """

    __slots__ = (
        "body", "call_id", "call_type", "deployment", "disable", "dispatcher", "done",
        "first_token_time", "header_sent", "key_hash", "model", "receivers", "request",
        "route", "start_time", "started", "stream", "upstream_seconds",
    )

    def __init__(self, request: Request, dispatcher: EventDispatcher, receivers: Receivers,
                 key_hash: str | None, call_type: CallType, started: float) -> None:
        self.request = request
        self.dispatcher = dispatcher
        self.receivers = receivers
        self.key_hash = key_hash
        self.call_type = call_type
        self.started = started
        self.start_time = datetime.now(timezone.utc) - timedelta(
            seconds=time.perf_counter() - started)
        self.call_id = new_call_id()
        self.route = request.url.path
        self.model = ""
        self.body: dict[str, Any] = {}
        self.deployment: Deployment | None = None
        self.stream = False
        self.first_token_time: datetime | None = None
        self.upstream_seconds = 0.0
        self.done = False

        values = request.headers.getlist(DISABLE_HEADER)
        self.header_sent = bool(values)
        names = parse_disable_header(values) if values else ()
        self.disable = dispatcher.resolve(names) if names else _NO_DISABLE

    # Response headers

    def headers(self) -> dict[str, str]:
        """Return the hookgate response headers: call id, overhead and callback report."""
        overhead = (time.perf_counter() - self.started - self.upstream_seconds) * 1000
        headers = {"x-hookgate-call-id": self.call_id,
                   "x-hookgate-overhead-ms": f"{max(overhead, 0.0):.2f}"}
        if self.header_sent:
            disable = self.disable
            headers["x-hookgate-callbacks-disabled"] = ",".join(sorted(disable.disabled))
            headers["x-hookgate-callbacks-ignored"] = ",".join(
                sorted((*disable.unknown, *disable.required)))
            if disable.required:
                headers["x-hookgate-callbacks-required"] = ",".join(sorted(disable.required))
        return headers

    # Events

    def succeed(self, response: dict[str, Any] | None) -> None:
        """Submit the success event (once; later calls do nothing)."""
        if self.done:
            return
        self.done = True
        if not self.receivers.success - self.disable.disabled:
            return
        usage = response.get("usage") if response else None
        fields = self._fields("success", response=response, usage=_usage(usage))
        self.dispatcher.submit_fields(fields, self.disable.disabled)

    def fail(self, error: ProxyError | ProviderError | None, *, cancelled: bool = False,
             message: str | None = None, status_code: int | None = None,
             response: dict[str, Any] | None = None) -> None:
        """Submit the failure event (once; later calls do nothing).

        `error` is the error returned to the client. With `cancelled`, the client
        went away and `message` states when.
        """
        if self.done:
            return
        self.done = True
        if not self.receivers.failure - self.disable.disabled:
            return
        if error is not None:
            info = {
                "type": getattr(error, "kind", None) or type(error).__name__,
                "message": error.message,
                "status_code": error.status_code if status_code is None else status_code,
                "provider": getattr(error, "provider", None)
                if isinstance(error, ProviderError) else None,
                "cancelled": cancelled,
            }
        else:
            info = {"type": "ClientDisconnected", "message": message or "client disconnected",
                    "status_code": status_code, "cancelled": cancelled,
                    "provider": self.deployment.provider if self.deployment else None}
        usage = response.get("usage") if response else None
        fields = self._fields("failure", response=response, error=info, usage=_usage(usage))
        self.dispatcher.submit_fields(fields, self.disable.disabled)

    def _fields(self, status: Literal["success", "failure"], *,
                response: dict[str, Any] | None = None, error: dict[str, Any] | None = None,
                usage: dict[str, int] | None = None) -> dict[str, Any]:
        """Return the event as the keyword arguments of `CallEvent`, in plain values.

        Plain values, not models: the dispatcher builds the `CallEvent` only if a
        plugin in this process receives it, and encodes these values to JSON for a
        logger process.
        """
        end = datetime.now(timezone.utc)
        body = self.body
        content_key = "input" if self.call_type == "embedding" else "messages"
        messages = body.get(content_key, ())
        if isinstance(messages, str):
            messages = (messages,)
        elif not isinstance(messages, (list, tuple)):
            messages = ()
        params = {key: value for key, value in body.items()
                  if key not in ("model", content_key)}
        deployment = self.deployment

        return {
            "call_id": self.call_id,
            "call_type": self.call_type,
            "route": self.route,
            "model": self.model,
            "upstream_model": deployment.upstream_model if deployment else None,
            "provider": deployment.provider if deployment else None,
            "stream": self.stream,
            "status": status,
            "start_time": self.start_time,
            "end_time": end,
            "first_token_time": self.first_token_time,
            "latency_ms": (end - self.start_time).total_seconds() * 1000,
            "usage": usage,
            "messages": messages,
            "params": params,
            "response": response,
            "error": error,
            "metadata": self._metadata(),
            "disabled_callbacks": sorted(self.disable.disabled),
        }

    def _metadata(self) -> dict[str, Any]:
        headers = self.request.headers
        user = self.body.get("user")
        if not isinstance(user, str):
            user = headers.get("x-hookgate-user")
        tags: list[str] = []
        metadata = self.body.get("metadata")
        if isinstance(metadata, dict) and isinstance(metadata.get("tags"), list):
            tags = [str(tag) for tag in metadata["tags"]]
        client = self.request.client
        return {
            "key_hash": self.key_hash,
            "user": user,
            "tags": tags,
            "trace_id": _trace_id(headers.get("traceparent")) or headers.get("x-hookgate-trace-id"),
            "client_ip": client.host if client else None,
            "user_agent": headers.get("user-agent"),
        }


def _usage(usage: Any) -> dict[str, int] | None:
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens") or 0
    completion = usage.get("completion_tokens") or 0
    total = usage.get("total_tokens") or prompt + completion
    try:
        return {"prompt_tokens": int(prompt), "completion_tokens": int(completion),
                "total_tokens": int(total)}
    except (TypeError, ValueError):
        return None


def _trace_id(traceparent: str | None) -> str | None:
    """Return the trace id of a W3C `traceparent` header (`00-<trace id>-<span>-<flags>`)."""
    if not traceparent:
        return None
    parts = traceparent.strip().split("-")
    if len(parts) >= 4 and len(parts[1]) == 32:
        return parts[1].lower()
    return None
