"""The test kit: its pytest plugin entry point, fixtures, harness and reference logger."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap

import pytest

from hookgate import CallEvent, PluginRegistry
from hookgate.testing import DispatchHarness, RecordingLogger


def test_pytest11_entry_point_declared():
    [entry_point] = [ep for ep in importlib.metadata.entry_points(group="pytest11")
                     if ep.name == "hookgate"]
    assert entry_point.value == "hookgate.testing.pytest_plugin"
    assert entry_point.dist.metadata["Name"] == "hookgate-core"


def test_pytest_plugin_registered(pytestconfig):
    plugin = pytestconfig.pluginmanager.get_plugin("hookgate")
    assert plugin is not None
    assert plugin.__name__ == "hookgate.testing.pytest_plugin"


def test_registry_fixture_is_empty(hookgate_registry):
    assert isinstance(hookgate_registry, PluginRegistry)
    assert hookgate_registry.records == []
    assert hookgate_registry.strict is False


def test_harness_fixture_uses_registry(hookgate_harness, hookgate_registry):
    assert isinstance(hookgate_harness, DispatchHarness)
    assert hookgate_harness.registry is hookgate_registry


def test_make_event_fixture(make_event):
    success, failure = make_event(), make_event("failure", model="other")
    assert isinstance(success, CallEvent)
    assert (success.status, success.error) == ("success", None)
    assert success.usage.total_tokens == 30
    assert (failure.status, failure.model) == ("failure", "other")
    assert failure.error.status_code == 502
    assert failure.response is None


def test_recording_logger_fixture(recording_logger, hookgate_harness, make_event):
    assert isinstance(recording_logger, RecordingLogger)
    hookgate_harness.add(recording_logger, "recorder", settings={"level": "info"})

    hookgate_harness.send(make_event())
    hookgate_harness.send(make_event("failure"))
    events = recording_logger.wait_for(2)

    assert [event.status for event in events] == ["success", "failure"]
    assert recording_logger.hooks() == ["log_success", "log_failure"]
    assert recording_logger.settings == {"level": "info"}


def test_wait_for_times_out_with_message(recording_logger):
    with pytest.raises(AssertionError, match=r"received 0 events within 0\.05 s, expected"):
        recording_logger.wait_for(1, timeout=0.05)


def test_harness_rejects_late_add(hookgate_harness, make_event):
    hookgate_harness.add(RecordingLogger(), "first")
    hookgate_harness.send(make_event())
    with pytest.raises(RuntimeError, match="before the first send"):
        hookgate_harness.add(RecordingLogger(), "second")


def test_fixtures_work_in_fresh_pytest_run(tmp_path):
    # A plugin author's test suite: no conftest, only the installed hookgate-core.
    test_file = tmp_path / "test_author.py"
    test_file.write_text(textwrap.dedent("""
        from hookgate import hookimpl

        class AuditLog:
            def __init__(self):
                self.models = []

            @hookimpl
            def log_success(self, event):
                self.models.append(event.model)

        def test_audit_log(hookgate_harness, make_event):
            audit = AuditLog()
            hookgate_harness.add(audit, "audit")
            hookgate_harness.send(make_event(model="m1"))
            hookgate_harness.drain()
            assert audit.models == ["m1"]
    """))

    process = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_file.name],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )

    assert process.returncode == 0, process.stdout + process.stderr
    assert "1 passed" in process.stdout
