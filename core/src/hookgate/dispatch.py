"""Isolated dispatch: hand each finished call to every active logger, off the request path.

The request path only calls `Dispatcher.submit`, which puts the event on one bounded
queue per plugin and returns; it never waits for a logger and does no I/O. Each
plugin has its own worker task, so a slow or broken plugin delays nobody else:

- a sync hook runs in the plugin's own daemon thread, so it cannot stall the event
  loop, and a thread stuck forever does not keep the process from exiting;
- an async hook runs on the event loop under a timeout;
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
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hookgate.events import CallEvent
from hookgate.plugins import HookCall, PluginRegistry, PluginStatus

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
ERROR_LOG_INTERVAL = 60.0


@dataclass(frozen=True)
class LaneSettings:
    """How the proxy enabled one plugin."""

    success: bool = True
    """Deliver `log_success` events (if the plugin implements the hook)."""
    failure: bool = True
    """Deliver `log_failure` events (if the plugin implements the hook)."""
    required: bool = False
    """No request may disable this plugin (an audit log)."""
    log_content: bool = True
    """False: the plugin gets `event.without_content()`, with no messages or output."""


@dataclass
class PluginStats:
    """Live counters of one plugin, for the admin listing."""

    name: str
    delivered: int = 0
    failed: int = 0
    timed_out: int = 0
    """Calls that exceeded the hook timeout; also counted in `failed`."""
    dropped: int = 0
    backlog: int = 0
    """Events queued or being delivered right now."""
    last_error: str | None = None
    last_error_time: float | None = None
    """Unix time of the last error."""
    last_success_time: float | None = None
    """Unix time of the last event delivered without error."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "failed": self.failed,
            "timed_out": self.timed_out,
            "dropped": self.dropped,
            "backlog": self.backlog,
            "last_error": self.last_error,
            "last_error_time": self.last_error_time,
            "last_success_time": self.last_success_time,
        }


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


class _ErrorLog:
    """Logs a plugin's errors at most once per interval, with a count of the rest."""

    def __init__(self, interval: float = ERROR_LOG_INTERVAL) -> None:
        self.interval = interval
        self._next = 0.0
        self._suppressed = 0

    def error(self, message: str, *args: object, exc_info: BaseException | None = None) -> None:
        now = time.monotonic()
        if now < self._next:
            self._suppressed += 1
            return
        if self._suppressed:
            message += " (%d similar messages suppressed in the last %.0f s)"
            args = (*args, self._suppressed, self.interval)
        logger.error(message, *args, exc_info=exc_info)
        self._suppressed = 0
        self._next = now + self.interval


class _SyncRunner:
    """One daemon thread that runs a plugin's sync hooks in order.

    A ThreadPoolExecutor would do, except that its threads are joined at interpreter
    exit: one hook stuck in `time.sleep(3600)` would then keep the proxy from exiting.
    """

    def __init__(self, name: str) -> None:
        self._jobs: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []
        self._ready = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name=f"hookgate-{name}", daemon=True)
        self._thread.start()

    def run(self, function: Callable[[], Any]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        with self._ready:
            self._jobs.append((function, future))
            self._ready.notify()
        return future

    def stop(self) -> None:
        """Let the thread exit once it has run the jobs already queued."""
        with self._ready:
            self._stopping = True
            self._ready.notify()

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._jobs and not self._stopping:
                    self._ready.wait()
                if not self._jobs:
                    return
                function, future = self._jobs.pop(0)
            try:
                result = function()
            except BaseException as error:  # handed to the awaiting task
                _resolve(future, None, error)
            else:
                _resolve(future, result, None)


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    def settle() -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    try:
        future.get_loop().call_soon_threadsafe(settle)
    except RuntimeError:
        pass  # The loop is closed: nobody waits for this result any more.


def _discard_outcome(task: asyncio.Future[Any]) -> None:
    # Retrieve the exception of an abandoned task so that asyncio does not log
    # "exception was never retrieved"; its timeout is already counted and logged.
    if not task.cancelled():
        task.exception()


class _TimeoutRecorded(Exception):
    """A sync hook timed out and the timeout is already counted and logged."""


class _Lane:
    """One plugin's queue, worker and counters."""

    def __init__(self, name: str, settings: LaneSettings, success: HookCall | None,
                 failure: HookCall | None, flush: HookCall | None, backlog: int) -> None:
        self.name = name
        self.settings = settings
        self.success = success
        self.failure = failure
        self.flush = flush
        self.queue: asyncio.Queue[CallEvent] = asyncio.Queue(maxsize=backlog)
        self.stats = PluginStats(name)
        self.errors = _ErrorLog()
        self.drops = _ErrorLog()
        self.in_flight = 0
        self.task: asyncio.Task[None] | None = None
        self._runner: _SyncRunner | None = None

    def runner(self) -> _SyncRunner:
        if self._runner is None:
            self._runner = _SyncRunner(self.name)
        return self._runner

    def stop_runner(self) -> None:
        if self._runner is not None:
            self._runner.stop()


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
        self._lanes: dict[str, _Lane] = {}
        self._success_lanes: tuple[_Lane, ...] = ()
        self._failure_lanes: tuple[_Lane, ...] = ()
        self._closing = False

    # Lifecycle

    async def start(self) -> None:
        """Create each active plugin's lane and worker on the running loop."""
        for name in sorted(self._settings):
            record = self.registry.record(name)
            if record is None or record.status is not PluginStatus.ACTIVE:
                continue
            settings = self._settings[name]
            success = self.registry.hook_call(name, "log_success") if settings.success else None
            failure = self.registry.hook_call(name, "log_failure") if settings.failure else None
            flush = self.registry.hook_call(name, "logger_flush")
            lane = _Lane(name, settings, success, failure, flush, self._backlog)
            lane.task = asyncio.create_task(self._work(lane), name=f"hookgate-lane-{name}")
            self._lanes[name] = lane

        self._success_lanes = tuple(lane for lane in self._lanes.values() if lane.success)
        self._failure_lanes = tuple(lane for lane in self._lanes.values() if lane.failure)
        logger.info("dispatch started for %d plugins: %s", len(self._lanes),
                    ", ".join(self._lanes) or "none")

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until every queued event has been handed to its plugin.

        Returns False if `timeout` seconds passed first.
        """
        joins = [lane.queue.join() for lane in self._lanes.values()]
        if not joins:
            return True
        try:
            await asyncio.wait_for(asyncio.gather(*joins), timeout)
        except asyncio.TimeoutError:
            return False
        return True

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

        for lane in self._lanes.values():
            if lane.task is not None:
                lane.task.cancel()
            left = lane.queue.qsize() + lane.in_flight
            if left:
                report.undelivered[lane.name] = left
                logger.error("plugin %s: %d events not delivered before the shutdown deadline",
                             lane.name, left)
        await asyncio.gather(*(lane.task for lane in self._lanes.values() if lane.task),
                             return_exceptions=True)
        for lane in self._lanes.values():
            lane.stop_runner()
        logger.info("dispatch stopped: %s", "all events delivered" if report.complete
                    else f"undelivered {report.undelivered}, flush failed {report.flush_failed}")
        return report

    async def _close_lane(self, lane: _Lane, deadline: float) -> tuple[str, bool]:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(lane.queue.join(), max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            pass
        if lane.flush is None:
            return lane.name, True
        remaining = max(0.0, deadline - loop.time())
        flushed = await self._call(lane, lane.flush, {"timeout": remaining}, remaining, None,
                                   wait_for_thread=False)
        return lane.name, flushed

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
                self._drop(lane, event, "shutting down")
                continue
            try:
                lane.queue.put_nowait(event)
            except asyncio.QueueFull:
                self._drop(lane, event, f"backlog full ({self._backlog} events)")

    def _drop(self, lane: _Lane, event: CallEvent, reason: str) -> None:
        lane.stats.dropped += 1
        lane.drops.error("plugin %s: event %s dropped: %s", lane.name, event.call_id, reason)

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

    def stats(self) -> dict[str, PluginStats]:
        """Return a snapshot of every active plugin's counters, as copies that stay unchanged."""
        snapshot = {}
        for name, lane in self._lanes.items():
            lane.stats.backlog = lane.queue.qsize() + lane.in_flight
            snapshot[name] = dataclasses.replace(lane.stats)
        return snapshot

    # Workers

    async def _work(self, lane: _Lane) -> None:
        while True:
            event = await lane.queue.get()
            lane.in_flight = 1
            try:
                await self._deliver(lane, event)
            finally:
                lane.in_flight = 0
                lane.queue.task_done()

    async def _deliver(self, lane: _Lane, event: CallEvent) -> None:
        call = lane.success if event.status == "success" else lane.failure
        if call is None:
            return
        if not lane.settings.log_content:
            event = event.without_content()

        ok = await self._call(lane, call, {"event": event}, self.hook_timeout, event.call_id)
        if ok:
            lane.stats.delivered += 1
            lane.stats.last_success_time = time.time()

    async def _call(self, lane: _Lane, call: HookCall, arguments: Mapping[str, Any],
                    timeout: float, call_id: str | None, *, wait_for_thread: bool = True) -> bool:
        """Run one hook implementation in isolation. Returns True if it succeeded."""
        kwargs = call.bind(arguments)
        try:
            if call.is_async:
                await self._run_async(lane, call, kwargs, timeout, call_id)
            else:
                await self._run_sync(lane, call, kwargs, timeout, call_id, wait_for_thread)
        except _TimeoutRecorded:
            return False
        except Exception as error:  # a plugin's error must not escape
            self._record_error(lane, call, call_id, f"{type(error).__name__}: {error}", error)
            return False
        return True

    async def _run_async(self, lane: _Lane, call: HookCall, kwargs: dict[str, Any],
                         timeout: float, call_id: str | None) -> None:
        # asyncio.wait rather than asyncio.wait_for: since Python 3.11 a TimeoutError
        # raised by the plugin itself (aiohttp's and socket timeouts are subclasses)
        # looks the same as wait_for's own, and it must count as the plugin's error,
        # not as a hook timeout. wait_for would also wait without limit for a
        # coroutine that ignores its cancellation.
        task = asyncio.ensure_future(call.function(**kwargs))
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if done:
            task.result()
            return

        task.cancel()
        task.add_done_callback(_discard_outcome)
        self._record_timeout(lane, call, call_id, timeout)
        raise _TimeoutRecorded

    async def _run_sync(self, lane: _Lane, call: HookCall, kwargs: dict[str, Any],
                        timeout: float, call_id: str | None, wait_for_thread: bool) -> None:
        future = lane.runner().run(lambda: call.function(**kwargs))
        done, _ = await asyncio.wait({future}, timeout=timeout)
        if done:
            future.result()
            return

        # A thread cannot be interrupted. Report the timeout now, then wait for the
        # thread before handing it the next event, so that work never piles up behind
        # a stuck call: the lane's bounded queue fills and drops instead. At shutdown
        # there is no next event, so nothing waits past the deadline.
        self._record_timeout(lane, call, call_id, timeout)
        if wait_for_thread:
            await asyncio.wait({future})
            if not future.cancelled() and future.exception() is not None:
                logger.info("plugin %s: %s for call %s finished late with %r", lane.name,
                            call.hook_name, call_id or "-", future.exception())
        raise _TimeoutRecorded

    def _record_timeout(self, lane: _Lane, call: HookCall, call_id: str | None,
                        timeout: float) -> None:
        lane.stats.timed_out += 1
        self._record_error(lane, call, call_id, f"timed out after {timeout:.1f} s", None)

    def _record_error(self, lane: _Lane, call: HookCall, call_id: str | None, message: str,
                      error: BaseException | None) -> None:
        lane.stats.failed += 1
        lane.stats.last_error = f"{call.hook_name}: {message}"
        lane.stats.last_error_time = time.time()
        lane.errors.error("plugin %s: %s failed for call %s: %s", lane.name, call.hook_name,
                          call_id or "-", message, exc_info=error)

