"""The logger process: runs logger plugins outside the proxy's process.

`hookgate serve` starts it when `hookgate_settings.logger_process` is true, with one
end of a Unix socket pair (see `protocol`). Here the plugins are loaded, set up and
fed by hookgate-core's own `Dispatcher`, exactly as they would be in the proxy, so
each one keeps its own lane, backlog, timeouts and counters. What moves is their
CPU time and their share of the GIL: the proxy's event loop no longer competes with
the loggers' threads, and the operating system can run this process on another core.

The process ends when the proxy sends `close`. If the proxy dies first, the socket
reaches end of stream and the process ends then. Either way it first drains and
flushes within the shutdown deadline. It ignores SIGINT and SIGTERM, which a terminal or a
process manager sends to the whole process group: the proxy's own shutdown decides
when the loggers stop, so that no event queued here is lost to the signal.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping
from typing import Any

import orjson

from hookgate import Dispatcher, LaneSettings, PluginRegistry, PluginStatus
from hookgate.ratelimit import RateLimitedLog
from hookgate_proxy.gc_tuning import tune_for_serving
from hookgate_proxy.logger_process.protocol import (
    CONTROL,
    EVENT,
    FrameBuffer,
    FrameError,
    control_frame,
    parse_event,
    read_frame,
)

__all__ = ["main", "serve"]

logger = logging.getLogger(__name__)

STATS_INTERVAL = 0.5
"""Seconds between two reports of the counters and health to the proxy."""
READ_SIZE = 1024 * 1024
"""Bytes read from the socket at most at once."""


def import_target(target: str) -> object:
    """Import `module:attribute` and return it, creating an instance if it is a class."""
    module_name, _, attribute = target.partition(":")
    value: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        value = getattr(value, part)
    return value() if inspect.isclass(value) else value


class LoggerWorker:
    """The logger process's state: the registry, the dispatcher and the socket's writer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.registry = PluginRegistry(strict=False)
        self.dispatcher: Dispatcher | None = None
        self.shutdown_timeout = 10.0
        self.invalid = 0
        self.invalid_log = RateLimitedLog(logger, logging.ERROR, 60.0)
        self._disabled: dict[bytes, frozenset[str]] = {}

    async def setup(self, message: Mapping[str, Any]) -> None:
        """Load and set up the plugins the proxy sent, and start their lanes."""
        cpus = message.get("cpus") or ()
        if cpus:
            os.sched_setaffinity(0, cpus)
        for entry in message.get("sys_path") or ():
            if entry not in sys.path:
                sys.path.append(entry)
        self.shutdown_timeout = float(message["shutdown_timeout"])

        lanes = {}
        unregistered: dict[str, str] = {}
        for plugin in message["plugins"]:
            name = plugin["name"]
            lanes[name] = LaneSettings(**plugin["lanes"])
            if plugin.get("target"):
                try:
                    self.registry.register(import_target(plugin["target"]), name)
                except Exception as error:  # an import error or the plugin's own code
                    unregistered[name] = (f"registering {plugin['target']} failed: "
                                          f"{type(error).__name__}: {error}")
                    logger.error("plugin %s: %s", name, unregistered[name])
                    continue
            await self.registry.setup(name, plugin["settings"])

        self.dispatcher = Dispatcher(self.registry, lanes, backlog=int(message["backlog"]),
                                     hook_timeout=float(message["hook_timeout"]))
        await self.dispatcher.start()
        records: dict[str, dict[str, str | None]] = {}
        for name in lanes:
            record = self.registry.record(name)
            if record is None or name in unregistered:
                records[name] = {"status": PluginStatus.FAILED.value,
                                 "error": unregistered.get(name, "not found")}
            else:
                records[name] = {"status": record.status.value, "error": record.error}
        if message.get("gc_tuning", True):
            tune_for_serving()
        self.send({"op": "ready", "pid": os.getpid(), "records": records,
                   "categories": self.dispatcher.categories()})

    def send(self, message: dict[str, Any]) -> None:
        self.writer.write(control_frame(message))

    def report(self) -> None:
        """Send every plugin's counters and health to the proxy."""
        if self.dispatcher is None:
            return
        stats = {name: value.as_dict() for name, value in self.dispatcher.stats().items()}
        health = {name: self.registry.health(name) for name in stats
                  if self.registry.hook_call(name, "logger_health") is not None}
        self.send({"op": "stats", "stats": stats, "health": health, "invalid": self.invalid})

    async def report_periodically(self) -> None:
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            self.report()

    def deliver(self, body: bytes) -> None:
        assert self.dispatcher is not None
        try:
            names, event = parse_event(body)
        except (FrameError, ValueError) as error:
            # The proxy encodes fields it parsed from JSON or set itself, so a rejected
            # event is a hookgate bug: count it and keep going.
            self.invalid += 1
            self.invalid_log.log("event frame rejected: %s", error)
            return
        head = body[:body.index(b"\n")]
        disabled = self._disabled.get(head)
        if disabled is None:
            # Few distinct sets occur (subsets of the active plugins), so this cache stays small.
            disabled = frozenset(self.dispatcher.active) - frozenset(names)
            self._disabled[head] = disabled
        self.dispatcher.submit(event, disabled)

    async def control(self, message: Mapping[str, Any]) -> bool:
        """Handle one control message. Returns False when the process should stop."""
        assert self.dispatcher is not None
        op = message.get("op")
        if op == "drain":
            done = await self.dispatcher.drain(float(message["timeout"]))
            self.report()
            self.send({"op": "reply", "id": message["id"], "ok": done})
            await self.writer.drain()
            return True
        if op == "close":
            shutdown = await self.dispatcher.close(float(message["timeout"]))
            self.report()
            self.send({"op": "reply", "id": message["id"], "ok": shutdown.complete,
                       "undelivered": shutdown.undelivered,
                       "flush_failed": shutdown.flush_failed})
            await self.writer.drain()
            return False
        logger.error("unknown control message %r from the proxy; ignored", op)
        return True

    async def run(self) -> int:
        frame = await read_frame(self.reader)
        if frame is None or frame[0] != CONTROL:
            logger.error("the proxy closed the socket before sending the setup")
            return 1
        await self.setup(orjson.loads(frame[1]))
        reporter = asyncio.create_task(self.report_periodically())
        buffer = FrameBuffer()
        try:
            while True:
                chunk = await self.reader.read(READ_SIZE)
                try:
                    buffer.feed(chunk)
                    frames = buffer.frames()
                except FrameError as error:
                    logger.critical("protocol error from the proxy: %s; stopping", error)
                    chunk, frames = b"", []
                for kind, body in frames:
                    if kind == EVENT:
                        self.deliver(body)
                    elif not await self.control(orjson.loads(body)):
                        return 0
                if not chunk:
                    # The proxy is gone without a close: deliver what is queued, then stop.
                    logger.error("the proxy's socket closed without a shutdown request%s (was "
                                 "the proxy killed?); delivering queued events, then stopping",
                                 ", inside a frame" if buffer.partial else "")
                    assert self.dispatcher is not None
                    await self.dispatcher.close(self.shutdown_timeout)
                    return 1
        finally:
            reporter.cancel()


async def serve(fd: int) -> int:
    """Run the logger process on the inherited socket `fd` until the proxy stops it."""
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    try:
        return await LoggerWorker(reader, writer).run()
    finally:
        writer.close()


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if len(arguments) != 2:
        print("usage: python -m hookgate_proxy.logger_process SOCKET_FD LOG_LEVEL",
              file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=arguments[1].upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s [logger process] %(name)s: "
                               "%(message)s")
    try:
        import uvloop
    except ImportError:
        return asyncio.run(serve(int(arguments[0])))
    return uvloop.run(serve(int(arguments[0])))
