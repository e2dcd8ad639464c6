"""Settings of the Langfuse logger: keys, environment fallbacks and errors."""

from __future__ import annotations

import pytest

from hookgate import NotConfigured, PluginRegistry, PluginStatus
from hookgate.testing import DispatchHarness
from hookgate_langfuse import LangfuseLogger, parse_settings
from hookgate_langfuse.settings import DEFAULT_HOST, MAX_BATCH_BYTES

KEYS = {"public_key": "pk-lf-1", "secret_key": "sk-lf-very-secret"}


def test_settings_from_config() -> None:
    parsed = parse_settings("langfuse", {**KEYS, "host": "https://langfuse.example.test/"},
                            environ={})

    assert parsed.host == "https://langfuse.example.test"
    assert parsed.ingestion_url == "https://langfuse.example.test/api/public/ingestion"
    assert parsed.public_key == "pk-lf-1"
    assert parsed.sender == {"max_batch_bytes": MAX_BATCH_BYTES}


def test_settings_fall_back_to_environment() -> None:
    environ = {"LANGFUSE_HOST": "http://127.0.0.1:3000", "LANGFUSE_PUBLIC_KEY": "pk-env",
               "LANGFUSE_SECRET_KEY": "sk-env", "LANGFUSE_TRACING_ENVIRONMENT": "prod",
               "LANGFUSE_RELEASE": "1.2"}

    parsed = parse_settings("langfuse", {}, environ=environ)

    assert parsed.host == "http://127.0.0.1:3000"
    assert parsed.public_key == "pk-env"
    assert parsed.secret_key == "sk-env"
    assert parsed.environment == "prod"
    assert parsed.release == "1.2"


def test_base_url_wins_over_host_variable() -> None:
    environ = {"LANGFUSE_HOST": "https://old.example.test",
               "LANGFUSE_BASE_URL": "https://new.example.test"}

    parsed = parse_settings("langfuse", KEYS, environ=environ)

    assert parsed.host == "https://new.example.test"


def test_default_host_is_langfuse_cloud() -> None:
    assert parse_settings("langfuse", KEYS, environ={}).host == DEFAULT_HOST


def test_config_wins_over_environment() -> None:
    parsed = parse_settings("langfuse", KEYS, environ={"LANGFUSE_PUBLIC_KEY": "pk-env"})

    assert parsed.public_key == "pk-lf-1"


@pytest.mark.parametrize(("settings", "missing"), [
    ({}, ["LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY"]),
    ({"public_key": "pk"}, ["LANGFUSE_SECRET_KEY"]),
    ({"secret_key": "sk", "public_key": "  "}, ["LANGFUSE_PUBLIC_KEY"]),
])
def test_missing_keys_not_configured(settings: dict[str, str], missing: list[str]) -> None:
    with pytest.raises(NotConfigured) as raised:
        parse_settings("langfuse", settings, environ={})

    for name in missing:
        assert name in str(raised.value)
    assert "callback_settings.langfuse" in str(raised.value)


@pytest.mark.parametrize(("extra", "message"), [
    ({"hots": "x"}, "unknown keys 'hots'"),
    ({"host": "ftp://example.test"}, "callback_settings.langfuse.host: invalid value"),
    ({"host": "https://user:pw@example.test"}, "must not contain a user"),
    ({"batch_size": 0}, "callback_settings.langfuse.batch_size: invalid value 0"),
    ({"flush_interval": "soon"}, "flush_interval: invalid value 'soon'"),
    ({"max_queue": 2.5}, "expected a whole number"),
    ({"public_key": 12}, "public_key: invalid value of type int"),
])
def test_invalid_settings_rejected(extra: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        parse_settings("langfuse", {**KEYS, **extra}, environ={})

    assert "very-secret" not in str(raised.value)
    assert "pw" not in str(raised.value)


def test_core_keys_accepted() -> None:
    parsed = parse_settings("langfuse", {**KEYS, "required": True, "log_content": False},
                            environ={})

    assert parsed.public_key == "pk-lf-1"


def test_sender_options_passed_on() -> None:
    parsed = parse_settings("langfuse", {**KEYS, "batch_size": 10, "flush_interval": 0.5,
                                         "max_queue": 50, "max_attempts": 2}, environ={})

    assert parsed.sender["max_batch_entries"] == 10
    assert parsed.sender["flush_interval"] == 0.5
    assert parsed.sender["max_queue_entries"] == 50
    assert parsed.sender["max_attempts"] == 2


def test_secret_not_in_repr() -> None:
    parsed = parse_settings("langfuse", KEYS, environ={})

    assert "very-secret" not in repr(parsed)


def test_plugin_without_keys_listed_not_configured(langfuse_env: None) -> None:
    harness = DispatchHarness(PluginRegistry(strict=False))
    try:
        record = harness.add(LangfuseLogger(), "langfuse", settings={})
    finally:
        harness.close()

    assert record.status is PluginStatus.NOT_CONFIGURED
    assert "LANGFUSE_PUBLIC_KEY" in (record.error or "")


def test_entry_point_loads_plugin(langfuse_env: None) -> None:
    registry = PluginRegistry(strict=False)

    record = registry.load("langfuse")

    assert record.status is PluginStatus.LOADED
    assert record.distribution == "hookgate-langfuse"
    assert "log_success" in record.hooks
    assert "logger_flush" in record.hooks
    assert record.hooks == ("log_failure", "log_success", "logger_flush", "logger_health",
                            "logger_setup")
