"""Drive the real dispatcher from plain synchronous tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any, TypeVar

from hookgate.dispatch import DisableResult, Dispatcher, LaneSettings, PluginStats, ShutdownReport
from hookgate.events import CallEvent
from hookgate.plugins import PluginRecord, PluginRegistry

T = TypeVar("T")


class DispatchHarness:
    """A registry and a dispatcher running on an event loop in a background thread.

    Tests call plain methods; the harness runs them on its loop, as the proxy does.
    Add plugins first, then `send` events (the dispatcher starts on the first send),
    then `drain` to wait for delivery.
    """

    def __init__(self, registry: PluginRegistry | None = None, *, backlog: int = 1000,
                 hook_timeout: float = 5.0) -> None:
        self.registry = registry if registry is not None else PluginRegistry(strict=False)
        self.backlog = backlog
        self.hook_timeout = hook_timeout
        self.lanes: dict[str, LaneSettings] = {}
        self.dispatcher: Dispatcher | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="hookgate-harness")
        self._thread.start()

    def _run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def add(self, plugin: object, name: str, settings: Mapping[str, Any] | None = None,
            lane: LaneSettings | None = None) -> PluginRecord:
        """Register `plugin` under `name`, set it up with `settings`, and enable it."""
        self.registry.register(plugin, name)
        return self.enable(name, settings, lane)

    def enable(self, name: str, settings: Mapping[str, Any] | None = None,
               lane: LaneSettings | None = None) -> PluginRecord:
        """Set up an already known plugin (for example an installed one) and enable it."""
        if self.dispatcher is not None:
            raise RuntimeError("add or enable every plugin before the first send")
        record = self._run(self.registry.setup(name, settings))
        self.lanes[name] = lane or LaneSettings()
        return record

    def start(self) -> Dispatcher:
        """Start the dispatcher (done by the first `send` if not called)."""
        if self.dispatcher is None:
            dispatcher = Dispatcher(self.registry, self.lanes, backlog=self.backlog,
                                    hook_timeout=self.hook_timeout)
            self._run(dispatcher.start())
            self.dispatcher = dispatcher
        return self.dispatcher

    def send(self, event: CallEvent, disable: Iterable[str] = ()) -> DisableResult:
        """Submit `event` as the proxy does, skipping the plugins named in `disable`."""
        dispatcher = self.start()

        async def submit() -> DisableResult:
            result = dispatcher.resolve(disable)
            dispatcher.submit(event, result.disabled)
            return result

        return self._run(submit())

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until every sent event was handed to its plugins; AssertionError on timeout."""
        if not self._run(self.start().drain(timeout), None):
            raise AssertionError(f"events still queued after {timeout} s: {self.stats()}")

    def stats(self) -> dict[str, PluginStats]:
        return self._run(self._snapshot())

    async def _snapshot(self) -> dict[str, PluginStats]:
        return self.start().stats()

    def close(self, timeout: float = 10.0) -> ShutdownReport:
        """Drain, flush every plugin and stop the loop. Safe to call twice."""
        if self._loop.is_closed():
            return ShutdownReport()
        report = ShutdownReport()
        if self.dispatcher is not None:
            report = self._run(self.dispatcher.close(timeout), None)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
        return report
