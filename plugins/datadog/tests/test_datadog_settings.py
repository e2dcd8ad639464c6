"""Settings of the Datadog logger: API key, site, URL, tags and errors."""

from __future__ import annotations

import pytest

from hookgate import NotConfigured, PluginRegistry, PluginStatus
from hookgate.testing import DispatchHarness
from hookgate_datadog import DatadogLogger, parse_settings
from hookgate_datadog.settings import MAX_BATCH_BYTES, MAX_BATCH_ENTRIES, MAX_ENTRY_BYTES

KEY = {"api_key": "dd-very-secret-key"}


def test_site_gives_intake_url() -> None:
    parsed = parse_settings("datadog", {**KEY, "site": "datadoghq.eu"}, environ={})

    assert parsed.url == "https://http-intake.logs.datadoghq.eu/api/v2/logs"


def test_default_site_and_service() -> None:
    parsed = parse_settings("datadog", KEY, environ={})

    assert parsed.url == "https://http-intake.logs.datadoghq.com/api/v2/logs"
    assert parsed.service == "hookgate"
    assert parsed.source == "hookgate"
    assert parsed.hostname


def test_settings_fall_back_to_environment() -> None:
    environ = {"DD_API_KEY": "env-key", "DD_SITE": "us5.datadoghq.com",
               "DD_SERVICE": "gateway", "DD_ENV": "prod"}

    parsed = parse_settings("datadog", {}, environ=environ)

    assert parsed.api_key == "env-key"
    assert parsed.url == "https://http-intake.logs.us5.datadoghq.com/api/v2/logs"
    assert parsed.service == "gateway"
    assert parsed.tags == ("env:prod",)


def test_url_overrides_site() -> None:
    parsed = parse_settings("datadog", {**KEY, "url": "http://127.0.0.1:9/api/v2/logs",
                                        "site": "datadoghq.eu"}, environ={})

    assert parsed.url == "http://127.0.0.1:9/api/v2/logs"


def test_intake_limits_are_defaults() -> None:
    parsed = parse_settings("datadog", KEY, environ={})

    assert parsed.sender["max_batch_entries"] == MAX_BATCH_ENTRIES == 1000
    assert parsed.sender["max_batch_bytes"] == MAX_BATCH_BYTES == 5_000_000
    assert parsed.sender["max_entry_bytes"] == MAX_ENTRY_BYTES == 1_000_000


@pytest.mark.parametrize(("tags", "expected"), [
    (["team:a", " env:x "], ("team:a", "env:x")),
    ("team:a,env:x", ("team:a", "env:x")),
    ([], ()),
])
def test_tags_accepted(tags: object, expected: tuple[str, ...]) -> None:
    assert parse_settings("datadog", {**KEY, "tags": tags}, environ={}).tags == expected


def test_missing_api_key_not_configured() -> None:
    with pytest.raises(NotConfigured) as raised:
        parse_settings("datadog", {}, environ={})

    assert "DD_API_KEY" in str(raised.value)
    assert "callback_settings.datadog.api_key" in str(raised.value)


@pytest.mark.parametrize(("extra", "message"), [
    ({"apikey": "x"}, "unknown keys 'apikey'"),
    ({"site": "data dog"}, "callback_settings.datadog.site: invalid value"),
    ({"url": "ftp://intake.test"}, "callback_settings.datadog.url: invalid value"),
    ({"url": "https://user:pw@intake.test/api/v2/logs"}, "must not contain a user"),
    ({"batch_size": 1001}, "at most 1000 logs per request"),
    ({"batch_size": -1}, "batch_size: invalid value -1"),
    ({"tags": 5}, "tags: invalid value of type int"),
    ({"service": ["a"]}, "service: invalid value of type list"),
])
def test_invalid_settings_rejected(extra: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        parse_settings("datadog", {**KEY, **extra}, environ={})

    assert "very-secret" not in str(raised.value)


def test_core_keys_accepted() -> None:
    parsed = parse_settings("datadog", {**KEY, "required": False, "log_content": False},
                            environ={})

    assert parsed.service == "hookgate"


def test_api_key_not_in_repr() -> None:
    assert "very-secret" not in repr(parse_settings("datadog", KEY, environ={}))


def test_plugin_without_key_listed_not_configured(datadog_env: None) -> None:
    harness = DispatchHarness(PluginRegistry(strict=False))
    try:
        record = harness.add(DatadogLogger(), "datadog", settings={})
    finally:
        harness.close()

    assert record.status is PluginStatus.NOT_CONFIGURED
    assert "DD_API_KEY" in (record.error or "")


def test_entry_point_loads_plugin() -> None:
    record = PluginRegistry(strict=False).load("datadog")

    assert record.status is PluginStatus.LOADED
    assert record.distribution == "hookgate-datadog"
    assert "log_failure" in record.hooks
    assert record.hooks == ("log_failure", "log_success", "logger_flush", "logger_health",
                            "logger_setup")
