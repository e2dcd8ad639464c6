"""Dispatch through the test kit's harness: per-request disabling, isolation, backlog, shutdown."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from hookgate import LaneSettings, PluginStatus, hookimpl
from hookgate.testing import DispatchHarness, RecordingLogger, make_event


class Raising:
    @hookimpl
    def log_success(self, event):
        raise RuntimeError(f"backend rejected {event.call_id}")


class SleepsThirtySeconds:
    @hookimpl
    def log_success(self, event):
        time.sleep(30)


class NeverReturns:
    @hookimpl
    async def log_success(self, event):
        await asyncio.Future()


class Gate:
    """A sync logger that blocks in its hooks until the test opens the gate."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.received = 0

    @hookimpl
    def log_success(self, event):
        self.entered.set()
        self.opened.wait(30)
        self.received += 1

    @hookimpl
    def logger_flush(self, timeout):
        self.opened.wait(timeout)


@pytest.fixture
def quick_harness():
    """A harness with a short hook timeout and backlog, closed with a short deadline."""
    harness = DispatchHarness(backlog=5, hook_timeout=0.2)
    yield harness
    harness.close(timeout=0.5)


def error_records(caplog, name):
    return [record for record in caplog.records
            if record.name == "hookgate.dispatch" and record.levelno >= logging.ERROR
            and f"plugin {name}:" in record.getMessage()]


# Per-request disabling


def test_disabled_plugin_gets_nothing(hookgate_harness):
    skipped, enabled = RecordingLogger(), RecordingLogger()
    hookgate_harness.add(skipped, "skipped")
    hookgate_harness.add(enabled, "enabled")

    for _ in range(3):
        hookgate_harness.send(make_event(), disable=["skipped"])
        hookgate_harness.send(make_event("failure"), disable=["skipped"])
    hookgate_harness.drain()

    assert skipped.calls == []
    assert enabled.hooks() == ["log_success", "log_failure"] * 3


def test_disable_applies_per_request(hookgate_harness):
    first, second = RecordingLogger(), RecordingLogger()
    hookgate_harness.add(first, "first")
    hookgate_harness.add(second, "second")

    events = [make_event() for _ in range(4)]
    for index, event in enumerate(events):
        hookgate_harness.send(event, disable=["first"] if index % 2 else [])
    hookgate_harness.drain()

    assert first.events == [events[0], events[2]]
    assert second.events == events


def test_resolve_splits_unknown_and_required(hookgate_harness):
    hookgate_harness.add(RecordingLogger(), "langfuse")
    hookgate_harness.add(RecordingLogger(), "audit", lane=LaneSettings(required=True))

    result = hookgate_harness.send(make_event(), disable=["langfuse", "nosuch", "audit"])

    assert result.disabled == frozenset({"langfuse"})
    assert result.unknown == ("nosuch",)
    assert result.required == ("audit",)


def test_required_plugin_cannot_be_disabled(hookgate_harness):
    audit = RecordingLogger()
    hookgate_harness.add(audit, "audit", lane=LaneSettings(required=True))

    hookgate_harness.send(make_event(), disable=["audit"])
    hookgate_harness.drain()

    assert len(audit.events) == 1


def test_resolve_reports_each_ignored_name_once(hookgate_harness):
    hookgate_harness.add(RecordingLogger(), "kept")

    result = hookgate_harness.send(make_event(), disable=["nosuch", "nosuch", "kept", "kept"])

    assert result.disabled == frozenset({"kept"})
    assert result.unknown == ("nosuch",)


# Two names backed by one class, or by one object


def test_two_instances_of_one_class(hookgate_harness):
    eu, us = RecordingLogger(), RecordingLogger()
    hookgate_harness.add(eu, "audit-eu", settings={"region": "eu"})
    hookgate_harness.add(us, "audit-us", settings={"region": "us"})

    hookgate_harness.send(make_event())
    hookgate_harness.send(make_event(), disable=["audit-eu"])
    hookgate_harness.send(make_event(), disable=["audit-us"])
    hookgate_harness.drain()

    assert (eu.name, eu.settings) == ("audit-eu", {"region": "eu"})
    assert (us.name, us.settings) == ("audit-us", {"region": "us"})
    assert len(eu.events) == 2
    assert len(us.events) == 2
    assert hookgate_harness.dispatcher.categories()["success_and_failure"] == [
        "audit-eu", "audit-us"]


def test_one_instance_under_two_names(hookgate_harness):
    shared = RecordingLogger()
    hookgate_harness.add(shared, "copy-a")
    hookgate_harness.add(shared, "copy-b")

    hookgate_harness.send(make_event())
    hookgate_harness.send(make_event(), disable=["copy-a"])
    hookgate_harness.send(make_event(), disable=["copy-b"])
    hookgate_harness.drain()

    stats = hookgate_harness.stats()
    assert stats["copy-a"].delivered == 2
    assert stats["copy-b"].delivered == 2
    assert len(shared.events) == 4
    assert hookgate_harness.dispatcher.categories()["success_and_failure"] == [
        "copy-a", "copy-b"]
    assert [record.name for record in hookgate_harness.registry.records] == ["copy-a", "copy-b"]


# A logger must not hurt the others


def test_raising_plugin_does_not_stop_others(hookgate_harness, caplog):
    caplog.set_level(logging.ERROR, logger="hookgate.dispatch")
    healthy = RecordingLogger()
    hookgate_harness.add(Raising(), "raising")
    hookgate_harness.add(healthy, "healthy")

    for _ in range(20):
        hookgate_harness.send(make_event())
    hookgate_harness.drain()

    stats = hookgate_harness.stats()["raising"]
    assert len(healthy.events) == 20
    assert stats.failed == 20
    assert stats.delivered == 0
    assert stats.last_error.startswith("log_success: RuntimeError: backend rejected")
    assert len(error_records(caplog, "raising")) == 1


def test_raising_plugin_log_names_call(hookgate_harness, caplog):
    caplog.set_level(logging.ERROR, logger="hookgate.dispatch")
    hookgate_harness.add(Raising(), "raising")
    event = make_event()

    hookgate_harness.send(event)
    hookgate_harness.drain()

    [record] = error_records(caplog, "raising")
    assert event.call_id in record.getMessage()
    assert record.exc_info is not None


def test_hanging_plugins_do_not_delay_others():
    # The backlog fits the first batch, so the healthy plugin never drops; the
    # second batch skips it and overflows the hanging plugins' queues.
    healthy = RecordingLogger()
    harness = DispatchHarness(backlog=20, hook_timeout=0.2)
    harness.add(SleepsThirtySeconds(), "sleeper")
    harness.add(NeverReturns(), "hanger")
    harness.add(healthy, "healthy")
    try:
        for _ in range(20):
            harness.send(make_event())
        healthy.wait_for(20, timeout=10)
        for _ in range(40):
            harness.send(make_event(), disable=["healthy"])
        time.sleep(0.5)  # let the async hanger time out a few events
        stats = harness.stats()
    finally:
        harness.close(timeout=0.5)

    assert stats["healthy"].delivered == 20
    assert stats["healthy"].dropped == 0
    for name in ("sleeper", "hanger"):
        # At most one event in flight plus a full queue of 20.
        assert stats[name].backlog <= 21, name
        assert stats[name].dropped >= 60 - 21 - stats[name].failed, name
        assert stats[name].delivered == 0, name
    # The sleeper's one timed-out event is still in flight, so it is in the backlog.
    assert stats["sleeper"].timed_out == 1
    assert stats["sleeper"].backlog + stats["sleeper"].dropped == 60
    # Each of the hanger's events is dropped, queued or in flight, or timed out.
    assert stats["hanger"].timed_out >= 2
    hanger = stats["hanger"]
    assert hanger.timed_out + hanger.backlog + hanger.dropped == 60


def test_hanging_plugin_does_not_block_submit(quick_harness):
    quick_harness.add(SleepsThirtySeconds(), "sleeper")
    quick_harness.send(make_event())

    started = time.monotonic()
    for _ in range(200):
        quick_harness.send(make_event())
    elapsed = time.monotonic() - started

    # Generous on purpose: it only proves that no send waited for the 30 s sleep.
    assert elapsed < 10
    assert quick_harness.stats()["sleeper"].dropped >= 190


def test_own_timeout_error_counts_as_error(hookgate_harness):
    class SocketTimeout:
        @hookimpl
        async def log_success(self, event):
            raise TimeoutError("read timed out")

    hookgate_harness.add(SocketTimeout(), "socket")
    hookgate_harness.send(make_event())
    hookgate_harness.drain()

    stats = hookgate_harness.stats()["socket"]
    assert stats.failed == 1
    assert stats.timed_out == 0
    assert stats.last_error == "log_success: TimeoutError: read timed out"


def test_thread_start_failure_fails_only_that_plugin(hookgate_harness, monkeypatch):
    first, second = RecordingLogger(), RecordingLogger()
    hookgate_harness.add(first, "first")
    hookgate_harness.add(second, "second")
    real_start = threading.Thread.start
    failures = iter([RuntimeError("can't start new thread")])

    def flaky_start(thread):
        for error in failures:
            raise error
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", flaky_start)
    hookgate_harness.send(make_event())
    hookgate_harness.drain()

    record = hookgate_harness.registry.record("first")
    assert record.status is PluginStatus.FAILED
    assert record.error == "could not start its worker: can't start new thread"
    assert "first" not in hookgate_harness.stats()
    assert len(second.events) == 1


# Backlog and shutdown


def test_full_backlog_drops_and_counts(caplog):
    caplog.set_level(logging.ERROR, logger="hookgate.dispatch")
    gate = Gate()
    harness = DispatchHarness(backlog=3)
    harness.add(gate, "gate")
    try:
        harness.send(make_event())
        assert gate.entered.wait(5)
        dropped_event = None
        for index in range(9):
            event = make_event()
            dropped_event = dropped_event or (event if index == 3 else None)
            harness.send(event)

        stats = harness.stats()["gate"]
        assert stats.dropped == 6
        assert stats.backlog == 4
        [record] = [r for r in error_records(caplog, "gate") if "dropped" in r.getMessage()]
        assert dropped_event.call_id in record.getMessage()
        assert "backlog full (3 events)" in record.getMessage()

        gate.opened.set()
        harness.drain()
        assert gate.received == 4
        assert harness.stats()["gate"].delivered == 4
    finally:
        gate.opened.set()
        harness.close()


def test_close_drains_and_flushes(hookgate_harness):
    recorder = RecordingLogger()
    hookgate_harness.add(recorder, "recorder")
    for _ in range(25):
        hookgate_harness.send(make_event())

    report = hookgate_harness.close()

    assert report.complete
    assert len(recorder.events) == 25
    assert recorder.flushed == 1


def test_close_reports_undelivered(caplog):
    caplog.set_level(logging.ERROR, logger="hookgate.dispatch")
    gate = Gate()
    harness = DispatchHarness()
    harness.add(gate, "gate")
    harness.add(RecordingLogger(), "recorder")
    try:
        for _ in range(5):
            harness.send(make_event())
        assert gate.entered.wait(5)

        report = harness.close(timeout=0.3)
    finally:
        gate.opened.set()

    assert report.undelivered == {"gate": 5}
    assert report.flush_failed == ["gate"]
    assert not report.complete
    assert any("5 events not delivered" in record.getMessage()
               for record in error_records(caplog, "gate"))


def test_close_ends_worker_threads():
    harness = DispatchHarness()
    harness.add(RecordingLogger(), "threaded")
    harness.send(make_event())
    harness.drain()
    [thread] = [t for t in threading.enumerate() if t.name == "hookgate-threaded"]

    harness.close()
    thread.join(5)

    assert not thread.is_alive()


def test_send_after_close_is_dropped():
    recorder = RecordingLogger()
    harness = DispatchHarness()
    harness.add(recorder, "recorder")
    dispatcher = harness.start()
    harness.close()

    dispatcher.submit(make_event())

    assert dispatcher.stats()["recorder"].dropped == 1
    assert recorder.events == []


# What a plugin receives


def test_mutation_raises_others_see_original(hookgate_harness):
    class Mutator:
        @hookimpl
        def log_success(self, event):
            event.messages[0]["content"] = "changed by another plugin"

    reader = RecordingLogger()
    hookgate_harness.add(Mutator(), "mutator")
    hookgate_harness.add(reader, "reader")
    event = make_event()

    hookgate_harness.send(event)
    hookgate_harness.drain()

    stats = hookgate_harness.stats()["mutator"]
    assert stats.failed == 1
    assert "read-only" in stats.last_error
    assert reader.events[0].messages[0]["content"] == "You are a terse assistant."


def test_no_content_lane_gets_no_content(hookgate_harness):
    private, full = RecordingLogger(), RecordingLogger()
    hookgate_harness.add(private, "private", lane=LaneSettings(log_content=False))
    hookgate_harness.add(full, "full")

    hookgate_harness.send(make_event())
    hookgate_harness.drain()

    [stripped] = private.events
    assert stripped.messages == ()
    assert "choices" not in stripped.response
    assert stripped.usage.total_tokens == 30
    assert stripped.response["id"] == "chatcmpl-test"
    assert len(full.events[0].messages) == 2
    assert "choices" in full.events[0].response


def test_lane_without_failure_gets_no_failures(hookgate_harness):
    recorder = RecordingLogger()
    hookgate_harness.add(recorder, "only-success", lane=LaneSettings(failure=False))

    hookgate_harness.send(make_event("failure"))
    hookgate_harness.send(make_event())
    hookgate_harness.drain()

    assert recorder.hooks() == ["log_success"]
    assert hookgate_harness.dispatcher.categories()["success"] == ["only-success"]


class Positional:
    def __init__(self) -> None:
        self.events = []

    @hookimpl
    def log_success(self, event):
        self.events.append(event)


class KeywordOnly(Positional):
    @hookimpl
    def log_success(self, *, event):
        self.events.append(event)


class AsyncKeywordOnly(Positional):
    @hookimpl
    async def log_success(self, *, event):
        await asyncio.sleep(0)
        self.events.append(event)


@pytest.mark.parametrize("plugin_class", [Positional, KeywordOnly, AsyncKeywordOnly])
def test_implementation_styles_receive_events(hookgate_harness, plugin_class):
    plugin = plugin_class()
    hookgate_harness.add(plugin, "styled")
    event = make_event()

    hookgate_harness.send(event)
    hookgate_harness.drain()

    assert plugin.events == [event]
