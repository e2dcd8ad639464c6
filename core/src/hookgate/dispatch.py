"""Isolated dispatch: hand each finished call to every active logger, off the request path.

The request path only calls `Dispatcher.submit`, which puts the event on one bounded
queue per plugin and returns; it never waits for a logger and does no I/O. Each
plugin has its own lane (see `hookgate.lanes`), so a slow or broken plugin delays
nobody else:

- sync hooks run in the plugin's own daemon thread, so they cannot stall the event
  loop, and a thread stuck forever does not keep the process from exiting;
- async hooks run on the event loop under a timeout;
- an exception is counted and logged (rate-limited), and the next event goes on;
- when a plugin's queue is full, new events for that plugin are dropped and counted.

Why not pluggy's own `hook.log_success(...)`: it calls the implementations in one
loop and stops at the first exception, so one raising plugin would hide the event
from the rest. `subset_hook_caller` would skip the disabled ones, but it builds a new
caller object per distinct set of names (header values are chosen by the client) and
some pluggy releases miss implementations registered with `specname`. Calling each
plugin's `HookCall` from its own worker gives isolation, and a set lookup per plugin
does the per-request skipping with no allocation that grows with the header values.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hookgate.events import CallEvent
from hookgate.lanes import AsyncLane, Lane, LaneSettings, PluginStats, ThreadLane
from hookgate.plugins import PluginRegistry, PluginStatus

__all__ = [
    "DisableResult",
    "Dispatcher",
    "LaneSettings",
    "PluginStats",
    "ShutdownReport",
]

logger = logging.getLogger(__name__)

DEFAULT_BACKLOG = 10_000
DEFAULT_HOOK_TIMEOUT = 30.0


@dataclass(frozen=True)
class DisableResult:
    """What a request's list of names to disable amounted to."""

    disabled: frozenset[str]
    """Active plugins that this request skips."""
    unknown: tuple[str, ...] = ()
    """Names that match no active plugin; ignored."""
    required: tuple[str, ...] = ()
    """Names of required plugins, which cannot be disabled; ignored."""


@dataclass
class ShutdownReport:
    """What `Dispatcher.close` could not do before its deadline."""

    undelivered: dict[str, int] = field(default_factory=dict)
    """Events per plugin still queued or in flight when the deadline ran out."""
    flush_failed: list[str] = field(default_factory=list)
    """Plugins whose `logger_flush` raised or did not finish in time."""

    @property
    def complete(self) -> bool:
        return not any(self.undelivered.values()) and not self.flush_failed


class Dispatcher:
    """Delivers events to the active plugins of one registry, each on its own lane.

    Build it after the registry has set up its plugins, then `await start()` on the
    event loop that will call `submit`. `submit` is not thread-safe: call it from
    that loop only.
    """

    def __init__(self, registry: PluginRegistry, lanes: Mapping[str, LaneSettings], *,
                 backlog: int = DEFAULT_BACKLOG,
                 hook_timeout: float = DEFAULT_HOOK_TIMEOUT) -> None:
        if backlog < 1:
            raise ValueError(f"backlog must be at least 1, got {backlog}")
        if hook_timeout <= 0:
            raise ValueError(f"hook_timeout must be positive, got {hook_timeout}")
        self.registry = registry
        self.hook_timeout = hook_timeout
        self._backlog = backlog
        self._settings = dict(lanes)
        self._lanes: dict[str, Lane] = {}
        self._success_lanes: tuple[Lane, ...] = ()
        self._failure_lanes: tuple[Lane, ...] = ()
        self._watchdog: asyncio.Task[None] | None = None
        self._closing = False

    # Lifecycle

    async def start(self) -> None:
        """Create each active plugin's lane and worker on the running loop."""
        loop = asyncio.get_running_loop()
        for name in sorted(self._settings):
            record = self.registry.record(name)
            if record is None or record.status is not PluginStatus.ACTIVE:
                continue
            settings = self._settings[name]
            success = self.registry.hook_call(name, "log_success") if settings.success else None
            failure = self.registry.hook_call(name, "log_failure") if settings.failure else None
            flush = self.registry.hook_call(name, "logger_flush")
            arguments = (name, settings, success, failure, flush)
            options: dict[str, Any] = {"capacity": self._backlog,
                                       "hook_timeout": self.hook_timeout}
            delivery = [call for call in (success, failure) if call is not None]
            try:
                if delivery and all(call.is_async for call in delivery):
                    self._lanes[name] = AsyncLane(*arguments, **options)
                else:
                    self._lanes[name] = ThreadLane(*arguments, loop=loop, **options)
            except RuntimeError as error:
                # Starting a thread fails when the process is out of threads or memory.
                self.registry.fail(name, f"could not start its worker: {error}")

        self._success_lanes = tuple(lane for lane in self._lanes.values() if lane.success)
        self._failure_lanes = tuple(lane for lane in self._lanes.values() if lane.failure)
        if any(isinstance(lane, ThreadLane) for lane in self._lanes.values()):
            self._watchdog = asyncio.create_task(self._watch(), name="hookgate-watchdog")
        logger.info("dispatch started for %d plugins: %s", len(self._lanes),
                    ", ".join(self._lanes) or "none")

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until every queued event has been handed to its plugin.

        Returns False if `timeout` seconds passed first.
        """
        loop = asyncio.get_running_loop()
        deadline = float("inf") if timeout is None else loop.time() + timeout
        results = await asyncio.gather(*(lane.drain(deadline) for lane in self._lanes.values()))
        return all(results)

    async def close(self, timeout: float = 10.0) -> ShutdownReport:
        """Drain every backlog, flush every plugin and stop, all within `timeout` seconds.

        Events submitted after this starts are dropped and counted. Returns what
        could not be delivered or flushed; each such plugin is also logged.
        """
        self._closing = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        report = ShutdownReport()

        # Each lane drains and then flushes on its own, so a plugin stuck on one event
        # does not use up the deadline of the plugins behind it.
        results = await asyncio.gather(*(self._close_lane(lane, deadline)
                                         for lane in self._lanes.values()))
        for name, flushed in results:
            if not flushed:
                report.flush_failed.append(name)

        if self._watchdog is not None:
            self._watchdog.cancel()
        for lane in self._lanes.values():
            left = lane.backlog()
            await lane.stop()
            if left:
                report.undelivered[lane.name] = left
                logger.error("plugin %s: %d events not delivered before the shutdown deadline",
                             lane.name, left)
        logger.info("dispatch stopped: %s", "all events delivered" if report.complete
                    else f"undelivered {report.undelivered}, flush failed {report.flush_failed}")
        return report

    async def _close_lane(self, lane: Lane, deadline: float) -> tuple[str, bool]:
        await lane.drain(deadline)
        remaining = max(0.0, deadline - asyncio.get_running_loop().time())
        return lane.name, await lane.flush(remaining)

    async def _watch(self) -> None:
        # One task for every thread lane: a stuck sync hook cannot be interrupted,
        # but it is counted as timed out soon after the hook timeout passes.
        interval = min(1.0, self.hook_timeout / 4)
        lanes = [lane for lane in self._lanes.values() if isinstance(lane, ThreadLane)]
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for lane in lanes:
                lane.check_timeout(now)

    # The request path

    def resolve(self, names: Iterable[str]) -> DisableResult:
        """Split the names a request asked to disable into applied and ignored ones.

        Expects names already trimmed and lowercased. Costs one dict lookup per name.
        Each ignored name is reported once, in the order first given.
        """
        disabled = set()
        unknown: dict[str, None] = {}
        required: dict[str, None] = {}
        for name in names:
            lane = self._lanes.get(name)
            if lane is None:
                unknown[name] = None
            elif lane.settings.required:
                required[name] = None
            else:
                disabled.add(name)
        return DisableResult(frozenset(disabled), tuple(unknown), tuple(required))

    def submit(self, event: CallEvent, disabled: frozenset[str] = frozenset()) -> None:
        """Queue `event` for every active plugin not in `disabled`. Never blocks."""
        lanes = self._success_lanes if event.status == "success" else self._failure_lanes
        for lane in lanes:
            if disabled and lane.name in disabled:
                continue
            if self._closing:
                lane.record_drop(event, "shutting down")
            elif not lane.offer(event):
                lane.record_drop(event, f"backlog full ({self._backlog} events)")

    def submit_fields(self, fields: Mapping[str, Any],
                      disabled: frozenset[str] = frozenset()) -> None:
        """Build the event from `fields` (the keyword arguments of `CallEvent`) and submit it.

        The same call as `submit` for a host whose dispatcher may run the plugins
        elsewhere and skip building the model (the proxy's logger process).
        """
        self.submit(CallEvent(**fields), disabled)

    # Introspection

    @property
    def active(self) -> dict[str, LaneSettings]:
        """Settings of every plugin that receives events, by name."""
        return {name: lane.settings for name, lane in self._lanes.items()}

    def categories(self) -> dict[str, list[str]]:
        """Active plugins grouped by the events they receive, each list sorted."""
        groups: dict[str, list[str]] = {"success": [], "failure": [], "success_and_failure": []}
        for name, lane in sorted(self._lanes.items()):
            if lane.success and lane.failure:
                groups["success_and_failure"].append(name)
            elif lane.success:
                groups["success"].append(name)
            elif lane.failure:
                groups["failure"].append(name)
        return groups

    def health(self, name: str) -> Mapping[str, Any] | None:
        """Return what plugin `name`'s `logger_health` reports (see `PluginRegistry.health`)."""
        return self.registry.health(name)

    def stats(self) -> dict[str, PluginStats]:
        """Return a snapshot of every active plugin's counters, as copies that stay unchanged."""
        return {name: lane.snapshot() for name, lane in self._lanes.items()}
