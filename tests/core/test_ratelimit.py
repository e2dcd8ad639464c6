"""The rate-limited log line that every lane and batching sender uses."""

from __future__ import annotations

import logging
import time

import pytest

from hookgate.ratelimit import RateLimitedLog


def test_repeats_within_interval_suppressed(caplog: pytest.LogCaptureFixture) -> None:
    log = RateLimitedLog(logging.getLogger("hookgate.test"), logging.ERROR, interval=60)

    with caplog.at_level(logging.ERROR, logger="hookgate.test"):
        for attempt in range(5):
            log.log("plugin %s failed", f"p{attempt}")

    assert [record.getMessage() for record in caplog.records] == ["plugin p0 failed"]


def test_next_line_counts_suppressed(caplog: pytest.LogCaptureFixture) -> None:
    log = RateLimitedLog(logging.getLogger("hookgate.test"), logging.WARNING, interval=0.05)

    with caplog.at_level(logging.WARNING, logger="hookgate.test"):
        log.log("dropped %d", 1)
        log.log("dropped %d", 2)
        log.log("dropped %d", 3)
        time.sleep(0.06)
        log.log("dropped %d", 4)

    messages = [record.getMessage() for record in caplog.records]
    assert messages[0] == "dropped 1"
    assert messages[1] == "dropped 4 (2 similar messages suppressed in the last 0 s)"
    assert len(messages) == 2
