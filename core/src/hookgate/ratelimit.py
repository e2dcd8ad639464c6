"""A log line for a problem that repeats: written at most once per interval."""

from __future__ import annotations

import logging
import threading
import time

DEFAULT_INTERVAL = 60.0


class RateLimitedLog:
    """Logs one kind of repeated problem at most once per interval, with a count of the rest.

    A plugin that fails on every request must not write one line per request; the
    first line says what went wrong, and the next one, an interval later, says how
    many similar lines were left out in between. Thread-safe.
    """

    def __init__(self, logger: logging.Logger, level: int,
                 interval: float = DEFAULT_INTERVAL) -> None:
        self.logger = logger
        self.level = level
        self.interval = interval
        self._next = 0.0
        self._suppressed = 0
        self._lock = threading.Lock()

    def log(self, message: str, *args: object, exc_info: BaseException | None = None) -> None:
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                self._suppressed += 1
                return
            suppressed, self._suppressed = self._suppressed, 0
            self._next = now + self.interval
        if suppressed:
            message += " (%d similar messages suppressed in the last %.0f s)"
            args = (*args, suppressed, self.interval)
        self.logger.log(self.level, message, *args, exc_info=exc_info)
