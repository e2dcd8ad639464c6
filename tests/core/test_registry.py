"""PluginRegistry used from Python: registration, setup, health and routes."""

from __future__ import annotations

import asyncio
import logging

import pytest

from hookgate import NotConfigured, PluginLoadError, PluginRegistry, PluginStatus, hookimpl
from hookgate.testing import DispatchHarness, RecordingLogger, make_event


class NeedsKey:
    @hookimpl
    def logger_setup(self, name, settings):
        if "api_key" not in settings:
            raise NotConfigured(f"missing api_key: set callback_settings.{name}.api_key")

    @hookimpl
    def log_success(self, event):
        pass


class BadSetting:
    @hookimpl
    def logger_setup(self, settings):
        raise ValueError(f"flush_interval must be positive, got {settings['flush_interval']}")


class SlowSetup:
    @hookimpl
    async def logger_setup(self):
        await asyncio.sleep(30)


class Health:
    def __init__(self, result):
        self.result = result

    @hookimpl
    def logger_health(self):
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def run(coroutine):
    return asyncio.run(coroutine)


@pytest.mark.parametrize("name", ["Audit", "9lives", "", "team audit", "a" * 65, "audit!"])
def test_register_invalid_name_raises(hookgate_registry, name):
    with pytest.raises(PluginLoadError, match="invalid plugin name"):
        hookgate_registry.register(RecordingLogger(), name)


@pytest.mark.parametrize("name", ["audit", "team_audit", "audit-2", "a" * 64])
def test_register_valid_name(hookgate_registry, name):
    record = hookgate_registry.register(RecordingLogger(), name)
    assert record.status is PluginStatus.LOADED


def test_register_taken_name_raises(hookgate_registry):
    hookgate_registry.register(RecordingLogger(), "audit")
    with pytest.raises(PluginLoadError, match="already taken by a Python registration"):
        hookgate_registry.register(RecordingLogger(), "audit")


def test_register_class_raises(hookgate_registry):
    with pytest.raises(PluginLoadError, match=r"register an instance of RecordingLogger"):
        hookgate_registry.register(RecordingLogger, "recorder")
    assert hookgate_registry.record("recorder") is None


def test_register_without_hooks_raises(hookgate_registry):
    with pytest.raises(PluginLoadError, match="implements no hookgate hook"):
        hookgate_registry.register(object(), "empty")
    assert hookgate_registry.manager.get_plugin("empty") is None


def test_register_wrapper_raises(hookgate_registry):
    class Wrapper:
        @hookimpl(wrapper=True)
        def log_success(self, event):
            return (yield)

    with pytest.raises(PluginLoadError, match="hook wrapper"):
        hookgate_registry.register(Wrapper(), "wrapper")


def test_unknown_hook_error_names_plugin(hookgate_registry):
    class Typo:
        @hookimpl
        def log_sucess(self, event):
            pass

    with pytest.raises(PluginLoadError) as caught:
        hookgate_registry.register(Typo(), "typo")
    message = str(caught.value)
    assert "typo" in message
    assert "'log_sucess'" in message
    assert "log_success" in message


def test_register_rolls_back_on_invalid_hook(hookgate_registry):
    class HalfValid:
        @hookimpl
        def log_success(self, event):
            pass

        @hookimpl
        def log_failure(self, event, response):
            pass

    with pytest.raises(PluginLoadError, match="'response'"):
        hookgate_registry.register(HalfValid(), "half")
    assert hookgate_registry.manager.get_plugin("half") is None
    assert hookgate_registry.hook_call("half", "log_success") is None


def test_register_blocked_name(monkeypatch):
    monkeypatch.setenv("HOOKGATE_BLOCKED_PLUGINS", "team_audit")
    registry = PluginRegistry()
    recorder = RecordingLogger()

    record = registry.register(recorder, "team_audit")
    run(registry.setup("team_audit"))

    assert record.status is PluginStatus.BLOCKED
    assert registry.manager.get_plugin("team_audit") is None
    assert recorder.name is None


def test_load_unknown_name_fails(hookgate_registry):
    record = hookgate_registry.load("no-such-plugin")
    assert record.status is PluginStatus.FAILED
    assert "pip install ./plugins/no-such-plugin" in record.error


def test_setup_not_configured(hookgate_registry):
    hookgate_registry.register(NeedsKey(), "needs-key")

    record = run(hookgate_registry.setup("needs-key", {}))

    assert record.status is PluginStatus.NOT_CONFIGURED
    assert record.error == (
        "not configured: missing api_key: set callback_settings.needs-key.api_key")
    assert hookgate_registry.hook_call("needs-key", "log_success") is None


def test_setup_passes_settings_read_only(hookgate_registry):
    recorder = RecordingLogger()
    hookgate_registry.register(recorder, "recorder")
    settings = {"path": "/tmp/x", "log_content": False}

    record = run(hookgate_registry.setup("recorder", settings))

    assert record.status is PluginStatus.ACTIVE
    assert recorder.name == "recorder"
    assert recorder.settings == settings


def test_setup_invalid_setting_fails(hookgate_registry, caplog):
    hookgate_registry.register(BadSetting(), "bad")

    record = run(hookgate_registry.setup("bad", {"flush_interval": -1}))

    assert record.status is PluginStatus.FAILED
    assert "ValueError: flush_interval must be positive, got -1" in record.error
    assert "callback_settings.bad" in record.error
    assert any("plugin bad failed" in r.getMessage() for r in caplog.records)


def test_setup_failure_in_strict_mode_raises():
    registry = PluginRegistry(strict=True)
    registry.register(BadSetting(), "bad")
    with pytest.raises(PluginLoadError, match="plugin 'bad' failed"):
        run(registry.setup("bad", {"flush_interval": -1}))


def test_setup_timeout_fails(hookgate_registry):
    hookgate_registry.register(SlowSetup(), "slow")

    record = run(hookgate_registry.setup("slow", timeout=0.05))

    assert record.status is PluginStatus.FAILED
    assert "did not finish within 0.05 s" in record.error


def test_failed_setup_gets_no_events():
    harness = DispatchHarness()
    harness.add(NeedsKey(), "needs-key")
    recorder = RecordingLogger()
    harness.add(recorder, "recorder")
    try:
        harness.send(make_event())
        harness.drain()
        assert list(harness.stats()) == ["recorder"]
        assert len(recorder.events) == 1
    finally:
        harness.close()


@pytest.mark.parametrize(("result", "expected"), [
    ({"backend": "ok", "queued": 3}, {"backend": "ok", "queued": 3}),
    (None, None),
    (RuntimeError("no socket"), {"error": "logger_health raised RuntimeError: no socket"}),
    (5, {"error": "logger_health raised TypeError: 'int' object is not iterable"}),
])
def test_health_results(hookgate_registry, result, expected):
    hookgate_registry.register(Health(result), "health")
    assert hookgate_registry.health("health") == expected


def test_health_without_hook_is_none(hookgate_registry):
    hookgate_registry.register(RecordingLogger(), "recorder")
    assert hookgate_registry.health("recorder") is None


def test_routes_receive_app(hookgate_registry):
    class Routes:
        @hookimpl
        def logger_routes(self, app):
            app.append("/metrics")

    app: list[str] = []
    hookgate_registry.register(Routes(), "routes")
    hookgate_registry.add_routes("routes", app)
    assert app == ["/metrics"]


def test_routes_error_fails_plugin(hookgate_registry):
    class BrokenRoutes:
        @hookimpl
        def logger_routes(self, app):
            raise KeyError("metrics")

    hookgate_registry.register(BrokenRoutes(), "routes")
    hookgate_registry.add_routes("routes", object())
    record = hookgate_registry.record("routes")
    assert record.status is PluginStatus.FAILED
    assert record.error == "logger_routes raised KeyError: 'metrics'"


def test_records_sorted_by_name(hookgate_registry):
    for name in ("zeta", "alpha", "mid"):
        hookgate_registry.register(RecordingLogger(), name)
    assert [record.name for record in hookgate_registry.records] == ["alpha", "mid", "zeta"]


def test_record_as_dict_is_json_ready(hookgate_registry):
    record = hookgate_registry.register(RecordingLogger(), "recorder")
    assert record.as_dict() == {
        "name": "recorder",
        "distribution": None,
        "version": None,
        "module": "hookgate.testing.recorder",
        "hooks": ["log_failure", "log_success", "logger_flush", "logger_setup"],
        "status": "loaded",
        "error": None,
        "import_ms": None,
    }


def test_load_failure_log_names_no_origin_when_unknown(caplog: pytest.LogCaptureFixture) -> None:
    registry = PluginRegistry(strict=False)

    with caplog.at_level(logging.ERROR, logger="hookgate.plugins"):
        record = registry.load("nosuch-installed")

    assert record.status is PluginStatus.FAILED
    line = caplog.records[-1].getMessage()
    assert line.startswith("plugin nosuch-installed failed: no installed distribution")
    assert "Python" not in line
    assert "None" not in line
