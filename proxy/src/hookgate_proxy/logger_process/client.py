"""The proxy's side of the logger process: start it, feed it events, read its counters.

`send` is the only call on the request path. It appends an encoded event's frame
to a buffer and returns. The buffer goes to the socket every 2 ms, so under load
many events share one system call. If the logger process falls behind by more
than `buffer_limit` bytes, or has exited, `send` refuses the event and the caller
counts the drop, exactly like a full lane in the proxy's own dispatcher.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from hookgate_proxy.logger_process.protocol import (
    CONTROL,
    FRAME_HEADER,
    MAX_FRAME,
    FrameError,
    control_frame,
    event_frame,
    read_frame,
)

__all__ = ["LoggerProcess", "LoggerProcessError", "PluginSpec"]

logger = logging.getLogger(__name__)

DEFAULT_BUFFER_LIMIT = 64 * 1024 * 1024
"""Bytes of events written to the socket but not yet read by the logger process."""
RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
"""Seconds before each restart after the logger process died; the last one repeats."""
STABLE_SECONDS = 60.0
"""A logger process that ran this long before it died restarts after the first delay."""
SILENCE_LIMIT = 10.0
"""Seconds without a counter report (sent every 0.5 s) after which the logger process
counts as hung: it is killed and started again."""
EXIT_GRACE = 0.5
"""Seconds at shutdown between the logger process's deadline and the proxy's."""
COUNTERS = ("delivered", "failed", "timed_out", "dropped")
WRITE_INTERVAL = 0.002
"""Seconds events wait in the proxy's buffer before one write sends them all.

Under load this makes one system call, and one wake-up of the logger process, per
few events instead of per event, for at most 2 ms more delay before logging."""
WRITE_THRESHOLD = 256 * 1024
"""Buffered bytes that are written at once, without waiting for the interval."""
"""The cumulative counters, carried over from one logger process to the next."""


class LoggerProcessError(RuntimeError):
    """The logger process failed to start or sent no ready message in time."""


@dataclass(frozen=True)
class PluginSpec:
    """One plugin for the logger process to load and set up."""

    name: str
    settings: Mapping[str, Any]
    success: bool
    failure: bool
    required: bool
    log_content: bool
    target: str | None = None
    """`module:attribute` of a plugin registered from Python; None for an entry point."""

    def as_message(self) -> dict[str, Any]:
        return {"name": self.name, "settings": dict(self.settings), "target": self.target,
                "lanes": {"success": self.success, "failure": self.failure,
                          "required": self.required, "log_content": self.log_content}}


@dataclass
class Ready:
    """The ready message the logger process sends after setting up its plugins."""

    pid: int
    records: dict[str, dict[str, Any]]
    """Plugin name -> {"status": PluginStatus value, "error": str or None}."""
    categories: dict[str, list[str]]


@dataclass
class _Reports:
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    health: dict[str, Any] = field(default_factory=dict)
    invalid: int = 0


class LoggerProcess:
    """One logger process and the socket to it. Use from one event loop."""

    def __init__(self, plugins: Iterable[PluginSpec], *, backlog: int, hook_timeout: float,
                 shutdown_timeout: float, cpus: Iterable[int] = (),
                 sys_path: Iterable[str] = (), gc_tuning: bool = True,
                 buffer_limit: int = DEFAULT_BUFFER_LIMIT) -> None:
        self.plugins = tuple(plugins)
        self.buffer_limit = buffer_limit
        self.cpus = tuple(cpus)
        self._setup = {
            "op": "setup",
            "plugins": [plugin.as_message() for plugin in self.plugins],
            "backlog": backlog, "hook_timeout": hook_timeout,
            "shutdown_timeout": shutdown_timeout, "cpus": list(self.cpus),
            "sys_path": list(sys_path), "gc_tuning": gc_tuning,
        }
        self.reports = _Reports()
        self.exited: str | None = None
        """Why the logger process is gone, once it is."""
        self._process: subprocess.Popen[bytes] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._closing = False
        self._start_timeout = 60.0
        self._restart_task: asyncio.Task[None] | None = None
        self.restarts = 0
        """Count of the times the logger process was started again after it died."""
        self.carried: dict[str, dict[str, int]] = {}
        """Counters of the logger processes that died, per plugin, to add to the live ones."""
        self.exited_at: float | None = None
        """Unix time at which the logger process was found gone, while it is."""
        self.active: list[str] = []
        """Plugins that the running logger process set up successfully."""
        self._failures_in_a_row = 0
        self._started_at = 0.0
        self._last_report = 0.0
        self._watchdog: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    # Lifecycle

    async def start(self, timeout: float) -> Ready:
        """Start the process, send it the plugins and wait for its ready message.

        Raises LoggerProcessError if it exits or sends none within `timeout`.
        """
        self._loop = asyncio.get_running_loop()
        self._start_timeout = timeout
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        try:
            # Blocking, but only at startup, and a fork and exec take milliseconds.
            self._process = subprocess.Popen(  # noqa: ASYNC220
                [sys.executable, "-m", "hookgate_proxy.logger_process", str(theirs.fileno()),
                 str(level)],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        except OSError as error:
            ours.close()
            raise LoggerProcessError(f"cannot start the logger process: {error}") from None
        finally:
            theirs.close()
        reader, self._writer = await asyncio.open_unix_connection(sock=ours)
        self._writer.write(control_frame(self._setup))

        try:
            frame = await asyncio.wait_for(read_frame(reader), timeout)
        except (asyncio.TimeoutError, FrameError) as error:
            self._kill()
            self._writer.close()
            reason = (f"sent no ready message within {timeout:g} s" if isinstance(
                error, asyncio.TimeoutError) else f"sent an invalid frame: {error}")
            raise LoggerProcessError(f"the logger process {reason}") from None
        if frame is None or frame[0] != CONTROL:
            self._writer.close()
            try:
                code: int | None = await asyncio.get_running_loop().run_in_executor(
                    None, self._process.wait, 5.0)
            except subprocess.TimeoutExpired:
                self._kill()
                code = None
            raise LoggerProcessError(f"the logger process exited during setup with code {code}; "
                                     "its log lines above give the reason")
        message = orjson.loads(frame[1])
        ready = Ready(message["pid"], message["records"], message["categories"])
        self.active = sorted(name for name, record in ready.records.items()
                             if record["status"] == "active")
        self._started_at = self._last_report = time.monotonic()
        self._reader_task = asyncio.create_task(self._read(reader),
                                                name="hookgate-logger-process-reader")
        if self._watchdog is None:
            self._watchdog = asyncio.create_task(self._watch(),
                                                 name="hookgate-logger-process-watchdog")
        logger.info("logger process %d running %s%s", ready.pid,
                    ", ".join(self.active) or "no plugin",
                    f" on CPUs {self._setup['cpus']}" if self._setup["cpus"] else "")
        return ready

    async def drain(self, timeout: float) -> bool:
        """Wait until the logger process has handed every event sent so far to its plugins."""
        reply = await self._request({"op": "drain", "timeout": timeout}, timeout + 1.0)
        return bool(reply and reply.get("ok"))

    async def close(self, timeout: float) -> dict[str, Any] | None:
        """Ask the logger process to drain, flush and exit, all within `timeout` seconds.

        The logger process gets `timeout` minus half a second for its own work.
        Returns its shutdown report, or None if it sent none in time (it is then
        killed at most half a second after `timeout`) or was already gone.
        """
        self._closing = True
        for task in (self._restart_task, self._watchdog):
            if task is not None:
                task.cancel()
        started = time.monotonic()
        budget = max(0.1, timeout - EXIT_GRACE)
        reply = await self._request({"op": "close", "timeout": budget}, timeout)
        if self._process is not None:
            # Waited for in a thread: the event loop still serves the last requests.
            remaining = max(0.0, started + timeout - time.monotonic()) + EXIT_GRACE
            try:
                await asyncio.get_running_loop().run_in_executor(
                    None, self._process.wait, remaining)
            except subprocess.TimeoutExpired:
                logger.error("the logger process %d did not exit within its shutdown "
                             "deadline; killing it", self._process.pid)
                self._kill()
        if self._reader_task is not None:
            self._reader_task.cancel()
        if self._writer is not None:
            self._writer.close()
        return reply

    def _kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    # The request path

    def send(self, names: Iterable[str], body: bytes) -> bool:
        """Queue the encoded event `body` for the plugins `names`. Never blocks.

        `body` comes from `protocol.encode_event`. Returns False if the event was not
        queued: the process is gone, it is `buffer_limit` bytes behind, or the event
        alone is larger than a frame may be.
        """
        writer = self._writer
        if writer is None or self.exited is not None or self._closing:
            return False
        frame = event_frame(names, body)
        if len(frame) - FRAME_HEADER > MAX_FRAME:
            return False
        if self._pending_bytes + writer.transport.get_write_buffer_size() + len(frame) \
                > self.buffer_limit:
            return False
        self._pending.append(frame)
        self._pending_bytes += len(frame)
        if self._pending_bytes >= WRITE_THRESHOLD:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            assert self._loop is not None
            self._loop.call_later(WRITE_INTERVAL, self._flush)
        return True

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._writer is None or not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        if self.exited is None:
            self._writer.write(data)

    # Control messages

    async def _request(self, message: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        if self._writer is None or self.exited is not None:
            return None
        self._flush()
        request_id = next(self._ids)
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[request_id] = reply
        try:
            self._writer.write(control_frame({**message, "id": request_id}))
            return await asyncio.wait_for(reply, timeout)
        except (asyncio.TimeoutError, ConnectionError):
            logger.error("the logger process sent no reply to %s within %.1f s", message["op"],
                         timeout)
            return None
        finally:
            self._replies.pop(request_id, None)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                frame = await read_frame(reader)
                if frame is None:
                    break
                message = orjson.loads(frame[1])
                if message.get("op") == "stats":
                    self._last_report = time.monotonic()
                    self.reports = _Reports(message["stats"], message["health"],
                                            message.get("invalid", 0))
                elif message.get("op") == "reply":
                    waiting = self._replies.get(message["id"])
                    if waiting is not None and not waiting.done():
                        waiting.set_result(message)
        except (FrameError, ConnectionError) as error:
            logger.error("logger process connection failed: %s", error)
        code = self._process.poll() if self._process is not None else None
        if code is None and self._process is not None:
            try:
                code = await asyncio.get_running_loop().run_in_executor(
                    None, self._process.wait, 5.0)
            except subprocess.TimeoutExpired:
                code = None
        self.exited = f"exited with code {code}" if code is not None else "closed its socket"
        self.exited_at = time.time()
        for waiting in self._replies.values():
            if not waiting.done():
                waiting.set_result({"ok": False, "error": self.exited})
        if not self._closing:
            if time.monotonic() - self._started_at >= STABLE_SECONDS:
                self._failures_in_a_row = 0
            delay = self._next_delay()
            logger.critical("the logger process %s %s; events for its plugins are dropped "
                            "and counted until it runs again, in %.0f s", self.pid,
                            self.exited, delay)
            self._restart_task = asyncio.create_task(self._restart(delay),
                                                     name="hookgate-logger-process-restart")

    async def _restart(self, delay: float) -> None:
        """Start a new logger process after `delay` seconds, keeping the counters so far."""
        await asyncio.sleep(delay)
        for name, values in self.reports.stats.items():
            carried = self.carried.setdefault(name, dict.fromkeys(COUNTERS, 0))
            for counter in COUNTERS:
                carried[counter] += int(values.get(counter, 0))
        self.reports = _Reports()
        if self._writer is not None:
            self._writer.close()
        self.restarts += 1
        self._failures_in_a_row += 1
        try:
            ready = await self.start(self._start_timeout)
        except LoggerProcessError as error:
            delay = self._next_delay()
            logger.critical("restarting the logger process failed: %s; next attempt in %.0f s",
                            error, delay)
            self._restart_task = asyncio.create_task(self._restart(delay),
                                                     name="hookgate-logger-process-restart")
            return
        self.exited = None
        self.exited_at = None
        inactive = sorted(name for name, record in ready.records.items()
                          if record["status"] != "active")
        logger.warning("logger process restarted as %d (restart %d)%s", ready.pid,
                       self.restarts, f"; not active there now: {', '.join(inactive)}"
                       if inactive else "")

    def _next_delay(self) -> float:
        return RESTART_DELAYS[min(self._failures_in_a_row, len(RESTART_DELAYS) - 1)]

    async def _watch(self) -> None:
        # A process that stops reporting is hung (stopped, or stuck holding its GIL in
        # native code): kill it, and the reader's end of stream starts a new one.
        while True:
            await asyncio.sleep(1.0)
            silent = time.monotonic() - self._last_report
            if self.exited is None and not self._closing and silent > SILENCE_LIMIT:
                logger.critical("the logger process %s sent no report for %.0f s; killing "
                                "it as hung, events it held are lost", self.pid, silent)
                self._kill_without_wait()
                self._last_report = time.monotonic()

    def _kill_without_wait(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
