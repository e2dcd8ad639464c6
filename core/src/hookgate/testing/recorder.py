"""The reference in-memory logger: records every hook call it receives."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from hookgate.events import CallEvent
from hookgate.hookspecs import hookimpl


class RecordingLogger:
    """A logger plugin that keeps every event in memory, for tests.

    Thread-safe: hookgate may call it from its worker thread while the test reads.
    Register one instance per name; `name` and `settings` are filled by
    `logger_setup`.
    """

    def __init__(self) -> None:
        self.name: str | None = None
        self.settings: Mapping[str, Any] = {}
        self.calls: list[tuple[str, CallEvent]] = []
        self.flushed = 0
        self._changed = threading.Condition()

    @hookimpl
    def logger_setup(self, name: str, settings: Mapping[str, Any]) -> None:
        self.name = name
        self.settings = dict(settings)

    @hookimpl
    def log_success(self, event: CallEvent) -> None:
        self._record("log_success", event)

    @hookimpl
    def log_failure(self, event: CallEvent) -> None:
        self._record("log_failure", event)

    @hookimpl
    def logger_flush(self, timeout: float) -> None:
        with self._changed:
            self.flushed += 1
            self._changed.notify_all()

    def _record(self, hook_name: str, event: CallEvent) -> None:
        with self._changed:
            self.calls.append((hook_name, event))
            self._changed.notify_all()

    @property
    def events(self) -> list[CallEvent]:
        """Every event received, success and failure, in arrival order."""
        with self._changed:
            return [event for _, event in self.calls]

    def hooks(self) -> list[str]:
        """The hook name of every call received, in arrival order."""
        with self._changed:
            return [hook_name for hook_name, _ in self.calls]

    def wait_for(self, count: int, timeout: float = 5.0) -> list[CallEvent]:
        """Wait until at least `count` events arrived; raise AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.calls) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"logger {self.name!r} received {len(self.calls)} events within "
                        f"{timeout} s, expected at least {count}"
                    )
                self._changed.wait(remaining)
            return [event for _, event in self.calls]
