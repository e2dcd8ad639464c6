"""The hooks a hookgate logger plugin can implement.

hookgate always calls hooks with keyword arguments, one call per plugin, so an
implementation declares only the parameters it needs, in any order, and may mark
them keyword-only. The specs below are written without `*` for a reason: pluggy
1.x reads only positional parameter names, so a keyword-only spec would switch off
its check that an implementation asks for no parameter the hook does not pass.

Every hook may be `def` or `async def`. A sync implementation runs in the plugin's
own worker thread and an async one on the event loop with a timeout; an exception
raised by either is caught, counted and logged (rate-limited) and never reaches the
client or another plugin.

The reference in docs/hooks.md documents each hook with its exact signature, and a
test checks it against this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pluggy

from hookgate.events import CallEvent

PROJECT_NAME = "hookgate"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__all__ = [
    "PROJECT_NAME",
    "hookimpl",
    "hookspec",
    "log_failure",
    "log_success",
    "logger_flush",
    "logger_health",
    "logger_routes",
    "logger_setup",
]


@hookspec
def log_success(event: CallEvent) -> None:
    """Record a successful LLM call.

    Fires once per call that returned a response, after the last byte was sent to the
    client; for a stream, once after the last chunk, with the chunks assembled into
    `event.response`. It does not fire for a request that disabled this plugin with
    the `x-litellm-disable-callbacks` header.

    :param event: The finished call, read-only. `event.status` is `"success"`.

    May be async. Runs off the request path: the client never waits for it.
    """


@hookspec
def log_failure(event: CallEvent) -> None:
    """Record a failed LLM call.

    Fires once per call that failed after authentication: an invalid request, an
    unknown model, a provider error or timeout, an error in the middle of a stream,
    or a client that disconnected (then `event.error.cancelled` is true). A call
    gets either `log_success` or `log_failure`, never both.

    :param event: The failed call, read-only. `event.status` is `"failure"` and
        `event.error` says what went wrong.

    May be async. Runs off the request path: the client never waits for it.
    """


@hookspec
def logger_setup(name: str, settings: Mapping[str, Any]) -> None:
    """Read the plugin's settings and prepare to receive events.

    Fires once at startup, before the first event, for each enabled plugin.
    Raise `hookgate.NotConfigured` when a required setting is missing (the plugin is
    then listed as "not configured" with your message and gets no events); raise
    any other exception for an invalid setting (the plugin is listed as failed).

    :param name: The plugin's name: its entry-point name, or the name it was
        registered under from Python. The same object may be registered under
        several names, each with its own settings.
    :param settings: The plugin's section of the config (`callback_settings.<name>`),
        read-only; empty when the config has none. Fall back to the backend's own
        environment variables for anything missing here.

    May be async. An exception is reported in the plugin's record; it never stops
    the proxy or another plugin.
    """


@hookspec
def logger_flush(timeout: float) -> None:
    """Send everything still buffered, then release connections and files.

    Fires once at shutdown, after hookgate has handed the plugin every queued event
    (or the deadline ran out). No event arrives after it.

    :param timeout: Seconds left before the deadline. Work still pending then is
        abandoned, so count and log what you could not send.

    May be async. An exception is logged and counted like any other.
    """


@hookspec
def logger_health() -> Mapping[str, Any] | None:
    """Report the plugin's own view of its backend, for the admin listing.

    Fires whenever an admin reads `GET /callbacks/status` or runs `hookgate plugins`.
    Return a JSON-compatible mapping (for example `{"backend": "unreachable",
    "last_status": 503, "queued": 120}`), or None if there is nothing to add to the
    counters hookgate keeps itself. Never include a secret.

    Sync only, and it must return at once: do no I/O here, report what you have seen.
    An exception is shown in the listing as the health error.
    """


@hookspec
def logger_routes(app: Any) -> None:
    """Add HTTP routes to the proxy, such as a `/metrics` page.

    Fires once at startup, after `logger_setup`, for each active plugin.

    :param app: The proxy's ASGI application. In hookgate-proxy it is a
        `fastapi.FastAPI`; call `app.add_api_route` or `app.mount` on it.

    Sync only. An exception marks the plugin as failed.
    """
