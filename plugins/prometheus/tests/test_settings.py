"""Settings of the prometheus logger: defaults and validation."""

from __future__ import annotations

import pytest

from hookgate_prometheus.settings import (
    DEFAULT_DURATION_BUCKETS,
    TOKEN_ENV,
    parse_settings,
)


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    parsed = parse_settings("prometheus", {"required": False, "log_content": False})

    assert parsed.path == "/metrics"
    assert parsed.token is None
    assert parsed.duration_buckets == DEFAULT_DURATION_BUCKETS
    assert parsed.max_models == 200


def test_token_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "scrape-token")
    assert parse_settings("prometheus", {}).token == "scrape-token"


def test_token_not_in_repr() -> None:
    assert "scrape-token" not in repr(parse_settings("prometheus", {"token": "scrape-token"}))


@pytest.mark.parametrize(("settings", "message"), [
    ({"path": "metrics"}, "callback_settings.prometheus.path: invalid value 'metrics'"),
    ({"path": "/"}, "callback_settings.prometheus.path"),
    ({"token": ""}, "callback_settings.prometheus.token: invalid value"),
    ({"max_models": 0}, "callback_settings.prometheus.max_models"),
    ({"sync_interval": -1}, "callback_settings.prometheus.sync_interval"),
    ({"duration_buckets": [1, 0.5]}, "increasing positive numbers"),
    ({"duration_buckets": []}, "increasing positive numbers"),
    ({"first_token_buckets": ["fast"]}, "callback_settings.prometheus.first_token_buckets"),
    ({"port": 9100}, "unknown keys 'port'"),
    ({"failure": False}, "unknown keys 'failure'"),
])
def test_invalid_settings(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_settings("prometheus", settings)
