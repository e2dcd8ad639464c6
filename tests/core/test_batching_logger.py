"""Tests of BatchingLogger and the settings helpers shared by batching logger plugins."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from hookgate import CallEvent, PluginRegistry, PluginStatus, hookimpl
from hookgate.batching import (
    LANE_SETTINGS,
    BatchingLogger,
    BatchSender,
    check_backend_url,
    check_setting_keys,
    text_setting,
)
from hookgate.testing import DispatchHarness, make_event

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "writing-a-logger.md"
GUIDE_SECTION = "## Network loggers: batching and a loopback receiver for tests"
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
ALL_HOOKS = ("log_failure", "log_success", "logger_flush", "logger_health", "logger_setup")


class ListLogger(BatchingLogger):
    """A batching logger whose send function appends each batch to a list."""

    def __init__(self, status: int = 202) -> None:
        super().__init__("list")
        self.status = status
        self.batches: list[list[dict[str, Any]]] = []
        self._lock = threading.Lock()

    @hookimpl
    def logger_setup(self, name: str, settings: Mapping[str, Any]) -> None:
        self.name = name
        self.sender = BatchSender(name, self._send, flush_interval=3600,
                                  max_batch_bytes=settings.get("max_batch_bytes", 10_000))

    def encode_event(self, event: CallEvent, max_bytes: int) -> tuple[bytes, bool]:
        entry = {"call_id": event.call_id, "messages": event.messages}
        data = json.dumps(entry).encode()
        if len(data) <= max_bytes:
            return data, False
        return json.dumps({"call_id": event.call_id}).encode(), True

    def health_details(self) -> Mapping[str, Any]:
        return {"backend_name": "list"}

    def _send(self, entries: Sequence[bytes], timeout: float) -> int:
        with self._lock:
            self.batches.append([json.loads(entry) for entry in entries])
        return self.status

    def call_ids(self) -> list[str]:
        with self._lock:
            return [entry["call_id"] for batch in self.batches for entry in batch]


def start(harness: DispatchHarness, plugin: ListLogger, **settings: Any) -> ListLogger:
    record = harness.add(plugin, "list", settings=settings)
    assert record.status is PluginStatus.ACTIVE, record.error
    return plugin


def test_subclass_hooks_found_by_registry() -> None:
    record = PluginRegistry(strict=False).register(ListLogger(), "list")

    assert record.status is PluginStatus.LOADED
    assert record.hooks == ALL_HOOKS


def test_events_sent_at_flush(hookgate_harness: DispatchHarness) -> None:
    plugin = start(hookgate_harness, ListLogger())
    events = [make_event(), make_event("failure")]

    for event in events:
        hookgate_harness.send(event)
    hookgate_harness.drain()
    report = hookgate_harness.close(10)

    health = plugin.logger_health()
    assert report.complete
    assert plugin.call_ids() == [event.call_id for event in events]
    assert health is not None
    assert health["backend_name"] == "list"
    assert health["sent"] == 2
    assert health["truncated"] == 0


def test_truncated_entry_counted_and_logged(hookgate_harness: DispatchHarness,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hookgate.batching")
    plugin = start(hookgate_harness, ListLogger(), max_batch_bytes=2_000)
    large = [make_event(messages=[{"role": "user", "content": "x" * 5_000}]) for _ in range(3)]

    for event in large:
        hookgate_harness.send(event)
    hookgate_harness.drain()
    hookgate_harness.close(10)

    health = plugin.logger_health()
    warnings = [record for record in caplog.records if "exceeded" in record.getMessage()]
    assert health is not None
    assert health["truncated"] == 3
    assert health["sent"] == 3
    assert len(warnings) == 1
    assert large[0].call_id in warnings[0].getMessage()


def test_flush_failure_raises_flush_incomplete(hookgate_harness: DispatchHarness) -> None:
    plugin = start(hookgate_harness, ListLogger(status=400))

    hookgate_harness.send(make_event())
    hookgate_harness.drain()
    report = hookgate_harness.close(10)

    assert report.flush_failed == ["list"]
    assert plugin.logger_health() is not None


def test_health_none_before_setup() -> None:
    assert ListLogger().logger_health() is None


def test_event_before_setup_raises() -> None:
    with pytest.raises(RuntimeError, match="list: an event arrived before logger_setup"):
        ListLogger().log_success(event=make_event())


def test_encode_event_required() -> None:
    class Incomplete(BatchingLogger):
        pass

    with pytest.raises(NotImplementedError, match="Incomplete must implement encode_event"):
        Incomplete("incomplete").encode_event(make_event(), 100)


# Settings helpers


def test_setting_keys_accepts_own_sender_and_lane_keys() -> None:
    settings = {"host": "x", "batch_size": 5, **{key: True for key in LANE_SETTINGS}}

    check_setting_keys(settings, frozenset({"host"}), "callback_settings.demo", "demo")


@pytest.mark.parametrize("key", ["success", "failure"])
def test_setting_keys_rejects_lane_selection(key: str) -> None:
    # Which events reach a plugin is set by the callback lists, as in every other logger.
    with pytest.raises(ValueError, match=f"unknown keys '{key}'"):
        check_setting_keys({key: True}, frozenset({"host"}), "callback_settings.demo", "demo")


def test_setting_keys_names_unknown_keys() -> None:
    with pytest.raises(ValueError) as raised:
        check_setting_keys({"hots": 1, "host": 2, "zone": 3}, frozenset({"host"}),
                           "callback_settings.demo", "demo")

    message = str(raised.value)
    assert message.startswith("callback_settings.demo: unknown keys 'hots', 'zone'; ")
    assert "the demo logger accepts " in message
    assert "batch_size" in message
    assert "log_content" in message


@pytest.mark.parametrize(("value", "expected"), [
    (" text ", "text"),
    ("   ", None),
    (None, None),
])
def test_text_setting_values(value: object, expected: str | None) -> None:
    assert text_setting({"key": value}, "key", "callback_settings.demo") == expected


def test_text_setting_rejects_non_string() -> None:
    with pytest.raises(ValueError, match=r"callback_settings\.demo\.key: invalid value of "
                                         "type int: expected a string"):
        text_setting({"key": 5}, "key", "callback_settings.demo")


@pytest.mark.parametrize(("url", "message"), [
    ("ftp://backend.test/x", "expected an http or https URL of a demo endpoint"),
    ("https:///path", "expected an http or https URL of a demo endpoint"),
    ("https://user:pw@backend.test/x", "must not contain a user, password or query; "
                                       "set api_key instead"),
    ("https://backend.test/x?token=t0k", "must not contain a user"),
])
def test_backend_url_rejected(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        check_backend_url(url, "callback_settings.demo.url", expected="of a demo endpoint",
                          credentials="api_key")

    assert str(raised.value).startswith("callback_settings.demo.url: invalid value ")
    assert "pw" not in str(raised.value)
    assert "t0k" not in str(raised.value)


@pytest.mark.parametrize(("url", "warned"), [
    ("http://backend.test/x", True),
    ("https://backend.test/x", False),
    ("http://127.0.0.1:9/x", False),
    ("http://localhost:9/x", False),
])
def test_backend_url_plain_http_warning(url: str, warned: bool,
                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hookgate.batching")

    check_backend_url(url, "DEMO_URL", expected="of a demo endpoint", credentials="api_key")

    assert ("DEMO_URL is plain http to backend.test" in caplog.text) is warned


# The guide's example


def test_guide_example_runs(hookgate_harness: DispatchHarness,
                            start_receiver: Callable[..., Any]) -> None:
    section = GUIDE.read_text().split(GUIDE_SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = PYTHON_BLOCK.findall(section)
    namespace: dict[str, Any] = {}

    exec(compile("\n".join(blocks), f"{GUIDE.name}: Network loggers", "exec"), namespace)
    namespace["test_call_arrives_after_429"](hookgate_harness, make_event, start_receiver)

    assert len(blocks) == 2
    record = PluginRegistry(strict=False).register(namespace["AcmeCloud"](), "acme-cloud")
    assert record.hooks == ALL_HOOKS
