"""Lanes: one plugin's bounded queue, its worker and its counters.

The dispatcher picks the lane kind from the plugin's delivery hooks:

- `ThreadLane` for a plugin with a sync `log_success` or `log_failure`. The request
  path puts the event on a `queue.SimpleQueue`, and the plugin's own daemon thread
  takes it from there. No asyncio object is created per event and the event loop
  never wakes up for a delivery, so each logger costs the request path one `put`.
  A thread cannot be interrupted, so the dispatcher's watchdog counts a call that
  runs past the hook timeout as timed out while it is still running.
- `AsyncLane` for a plugin whose delivery hooks are all `async def`: an
  `asyncio.Queue` and one task on the event loop, each call under a timeout.

Both kinds drop and count an event when their queue is full, count an exception as
a failure, log errors at most once a minute, and run `logger_flush` at shutdown
within the deadline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hookgate.events import CallEvent
from hookgate.plugins import HookCall
from hookgate.ratelimit import RateLimitedLog

logger = logging.getLogger("hookgate.dispatch")

ERROR_LOG_INTERVAL = 60.0
DRAIN_POLL_INTERVAL = 0.002
# Seconds a lane thread waits after a batch, so that the next events queue up together.
BATCH_LINGER = 0.005


@dataclass(frozen=True)
class LaneSettings:
    """The proxy's settings for one plugin: which events it gets and how."""

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
    """Calls that ran past the hook timeout; also counted in `failed`."""
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


class Lane:
    """The part both lane kinds share: hooks, settings, counters and error records."""

    def __init__(self, name: str, settings: LaneSettings, success: HookCall | None,
                 failure: HookCall | None, flush: HookCall | None, *, capacity: int,
                 hook_timeout: float) -> None:
        self.name = name
        self.settings = settings
        self.success = success
        self.failure = failure
        self.flush_call = flush
        self.capacity = capacity
        self.hook_timeout = hook_timeout
        self.stats = PluginStats(name)
        self.errors = RateLimitedLog(logger, logging.ERROR, ERROR_LOG_INTERVAL)
        self.drops = RateLimitedLog(logger, logging.ERROR, ERROR_LOG_INTERVAL)
        # Counters change on the lane's worker and on the event loop (drops, timeouts).
        self._lock = threading.Lock()

    def offer(self, event: CallEvent) -> bool:
        """Queue `event` without blocking. Returns False if the queue is full."""
        raise NotImplementedError

    def backlog(self) -> int:
        """Return the number of events queued or being delivered."""
        raise NotImplementedError

    async def drain(self, deadline: float) -> bool:
        """Wait until the backlog is empty or the loop clock passes `deadline`."""
        raise NotImplementedError

    async def flush(self, timeout: float) -> bool:
        """Run `logger_flush` within `timeout` seconds. Returns True if it succeeded."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Stop the worker; events still queued stay undelivered."""
        raise NotImplementedError

    def check_timeout(self, now: float) -> None:
        """Count the call in progress as timed out if it started before `now - timeout`."""

    def hook_for(self, event: CallEvent) -> HookCall | None:
        return self.success if event.status == "success" else self.failure

    def prepare(self, event: CallEvent) -> CallEvent:
        return event if self.settings.log_content else event.without_content()

    def snapshot(self) -> PluginStats:
        with self._lock:
            self.stats.backlog = self.backlog()
            return PluginStats(**vars(self.stats))

    def record_drop(self, event: CallEvent, reason: str) -> None:
        with self._lock:
            self.stats.dropped += 1
        self.drops.log("plugin %s: event %s dropped: %s", self.name, event.call_id, reason)

    def record_delivery(self) -> None:
        with self._lock:
            self.stats.delivered += 1
            self.stats.last_success_time = time.time()

    def record_error(self, call: HookCall, call_id: str | None, message: str,
                     error: BaseException | None, *, timed_out: bool = False) -> None:
        with self._lock:
            self.stats.failed += 1
            self.stats.timed_out += timed_out
            self.stats.last_error = f"{call.hook_name}: {message}"
            self.stats.last_error_time = time.time()
        self.errors.log("plugin %s: %s failed for call %s: %s", self.name, call.hook_name,
                          call_id or "-", message, exc_info=error)

    def record_timeout(self, call: HookCall, call_id: str | None, timeout: float) -> None:
        self.record_error(call, call_id, f"timed out after {timeout:.1f} s", None, timed_out=True)


# Thread lanes


@dataclass
class _Running:
    call: HookCall
    call_id: str | None
    started: float
    timed_out: bool = False
    finished: bool = False


@dataclass
class _FlushJob:
    timeout: float
    result: concurrent.futures.Future[None] = field(default_factory=concurrent.futures.Future)


_STOP = object()


class ThreadLane(Lane):
    """A lane whose worker is a daemon thread of its own.

    A daemon thread, not a ThreadPoolExecutor: the executor's threads are joined at
    interpreter exit, so one hook stuck in `time.sleep(3600)` would keep the proxy
    from exiting.
    """

    def __init__(self, *args: Any, loop: asyncio.AbstractEventLoop, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loop = loop
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._running: _Running | None = None
        self._control_items = 0  # flush jobs and the stop marker in the queue, not events
        self._thread = threading.Thread(target=self._work, name=f"hookgate-{self.name}",
                                        daemon=True)
        self._thread.start()

    def offer(self, event: CallEvent) -> bool:
        if self._queue.qsize() >= self.capacity:
            return False
        self._queue.put(event)
        return True

    def backlog(self) -> int:
        return self._queue.qsize() - self._control_items + (self._running is not None)

    async def drain(self, deadline: float) -> bool:
        # Polling is fine here: drain runs at shutdown and in tests, never per request.
        loop = asyncio.get_running_loop()
        while self.backlog():
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(DRAIN_POLL_INTERVAL)
        return True

    async def flush(self, timeout: float) -> bool:
        if self.flush_call is None:
            return True
        job = _FlushJob(timeout)
        self._put_control(job)
        done, _ = await asyncio.wait({asyncio.wrap_future(job.result)}, timeout=timeout)
        if not done:
            self.record_timeout(self.flush_call, None, timeout)
            return False
        error = job.result.exception()
        if error is not None:
            self.record_error(self.flush_call, None, f"{type(error).__name__}: {error}", error)
            return False
        return True

    async def stop(self) -> None:
        self._put_control(_STOP)

    def _put_control(self, item: object) -> None:
        with self._lock:
            self._control_items += 1
        self._queue.put(item)

    def check_timeout(self, now: float) -> None:
        with self._lock:
            running = self._running
            if (running is None or running.finished or running.timed_out
                    or now - running.started < self.hook_timeout):
                return
            running.timed_out = True
        self.record_timeout(running.call, running.call_id, self.hook_timeout)

    def _work(self) -> None:
        while True:
            # Block while idle; once woken, take everything queued, then linger so that
            # the events of the next few milliseconds arrive as one batch. Under load
            # this wakes the thread (and moves the GIL) once per batch, not per event.
            item = self._queue.get()
            while True:
                if not self._handle(item):
                    return
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            time.sleep(BATCH_LINGER)

    def _handle(self, item: Any) -> bool:
        """Deliver one queued item. Returns False for the stop marker."""
        if item is _STOP or isinstance(item, _FlushJob):
            with self._lock:
                self._control_items -= 1
        if item is _STOP:
            return False
        if isinstance(item, _FlushJob):
            self._run_flush(item)
        else:
            self._deliver(item)
        return True

    def _deliver(self, event: CallEvent) -> None:
        call = self.hook_for(event)
        if call is None:
            return
        running = _Running(call, event.call_id, time.monotonic())
        with self._lock:
            self._running = running

        error: Exception | None = None
        try:
            self._invoke(call, {"event": self.prepare(event)})
        except Exception as raised:  # a plugin's error must not escape
            error = raised

        with self._lock:
            running.finished = True
            late = running.timed_out
        if late:
            # Already counted as a timed-out failure by the watchdog.
            logger.info("plugin %s: %s for call %s finished late after %.1f s%s", self.name,
                        call.hook_name, event.call_id, time.monotonic() - running.started,
                        f" with {error!r}" if error else "")
        elif error is not None:
            self.record_error(call, event.call_id, f"{type(error).__name__}: {error}", error)
        else:
            self.record_delivery()

        # Cleared last, so that a drain that finds the backlog empty also finds the
        # outcome recorded.
        with self._lock:
            self._running = None

    def _run_flush(self, job: _FlushJob) -> None:
        if not job.result.set_running_or_notify_cancel() or self.flush_call is None:
            return
        try:
            self._invoke(self.flush_call, {"timeout": job.timeout})
        except Exception as error:  # handed to the waiting event loop
            job.result.set_exception(error)
        else:
            job.result.set_result(None)

    def _invoke(self, call: HookCall, arguments: Mapping[str, Any]) -> None:
        result = call.function(**call.bind(arguments))
        if call.is_async:
            # A plugin that mixes sync and async delivery hooks: run the coroutine on the
            # event loop and wait for it here, in the lane's thread.
            future = asyncio.run_coroutine_threadsafe(result, self._loop)
            try:
                future.result(self.hook_timeout)
            except concurrent.futures.TimeoutError:
                future.cancel()
                raise


# Async lanes


class AsyncLane(Lane):
    """A lane whose worker is one task on the event loop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queue: asyncio.Queue[CallEvent] = asyncio.Queue(maxsize=self.capacity)
        self._in_flight = 0
        self._task = asyncio.create_task(self._work(), name=f"hookgate-lane-{self.name}")

    def offer(self, event: CallEvent) -> bool:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            return False
        return True

    def backlog(self) -> int:
        return self._queue.qsize() + self._in_flight

    async def drain(self, deadline: float) -> bool:
        remaining = deadline - asyncio.get_running_loop().time()
        joined = asyncio.ensure_future(self._queue.join())
        done, _ = await asyncio.wait({joined}, timeout=max(0.0, remaining))
        if not done:
            joined.cancel()  # or it stays pending until the loop closes
        return bool(done)

    async def flush(self, timeout: float) -> bool:
        call = self.flush_call
        if call is None:
            return True
        try:
            if call.is_async:
                finished = await _await_limited(call.function(**call.bind({"timeout": timeout})),
                                                timeout)
            else:
                future = _run_in_daemon_thread(
                    lambda: call.function(**call.bind({"timeout": timeout})), self.name)
                done, _ = await asyncio.wait({asyncio.wrap_future(future)}, timeout=timeout)
                finished = bool(done)
                if finished:
                    future.result()
        except Exception as error:  # a plugin's error must not escape
            self.record_error(call, None, f"{type(error).__name__}: {error}", error)
            return False
        if not finished:
            self.record_timeout(call, None, timeout)
        return finished

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _work(self) -> None:
        while True:
            event = await self._queue.get()
            self._in_flight = 1
            try:
                await self._deliver(event)
            finally:
                self._in_flight = 0
                self._queue.task_done()

    async def _deliver(self, event: CallEvent) -> None:
        call = self.hook_for(event)
        if call is None:
            return
        try:
            arguments = call.bind({"event": self.prepare(event)})
            finished = await _await_limited(call.function(**arguments), self.hook_timeout)
        except Exception as error:  # a plugin's error must not escape
            self.record_error(call, event.call_id, f"{type(error).__name__}: {error}", error)
            return
        if finished:
            self.record_delivery()
        else:
            self.record_timeout(call, event.call_id, self.hook_timeout)


async def _await_limited(awaitable: Any, timeout: float) -> bool:
    """Await `awaitable` for at most `timeout` seconds. Returns False if time ran out.

    asyncio.wait rather than asyncio.wait_for: since Python 3.11 a TimeoutError
    raised by the plugin itself (aiohttp's and socket timeouts are subclasses) looks
    the same as wait_for's own, and it must count as the plugin's error, not as a
    hook timeout. wait_for would also wait without limit for a coroutine that
    ignores its cancellation.
    """
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if done:
        task.result()
        return True
    task.cancel()
    task.add_done_callback(_discard_outcome)
    return False


def _discard_outcome(task: asyncio.Future[Any]) -> None:
    # Retrieve the exception of an abandoned task so that asyncio does not log
    # "exception was never retrieved"; its timeout is already counted and logged.
    if not task.cancelled():
        task.exception()


def _run_in_daemon_thread(function: Callable[[], Any],
                          name: str) -> concurrent.futures.Future[Any]:
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(function())
        except BaseException as error:  # handed to the waiting event loop
            future.set_exception(error)

    threading.Thread(target=run, name=f"hookgate-{name}-flush", daemon=True).start()
    return future
