"""Settings of the otel logger: precedence of config over environment, and validation."""

from __future__ import annotations

import pytest

from hookgate_otel.settings import export_options, parse_settings, redact_url

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ENDPOINT_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


@pytest.mark.parametrize(("settings", "environment", "expected"), [
    ({}, {}, "http://localhost:4318/v1/traces"),
    ({}, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"},
     "http://collector:4318/v1/traces"),
    ({}, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://base:4318",
          "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:4318/custom"},
     "http://traces:4318/custom"),
    ({"endpoint": "https://config:4318"},
     {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:4318/custom"},
     "https://config:4318/v1/traces"),
    ({"endpoint": "http://base:1", "traces_endpoint": "http://exact:2/x"}, {},
     "http://exact:2/x"),
])
def test_endpoint_precedence(monkeypatch: pytest.MonkeyPatch, settings: dict[str, str],
                             environment: dict[str, str], expected: str) -> None:
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    assert parse_settings("otel", settings).traces_endpoint == expected


@pytest.mark.parametrize(("settings", "expected"), [
    ({"headers": {"Authorization": "Bearer abc"}}, {"authorization": "Bearer abc"}),
    ({"headers": "x-api-key=abc, x-team = a=b"}, {"x-api-key": "abc", "x-team": "a=b"}),
    ({}, None),
])
def test_headers_forms(settings: dict[str, object], expected: dict[str, str] | None) -> None:
    assert parse_settings("otel", settings).headers == expected


@pytest.mark.parametrize(("settings", "message"), [
    ({"endpoint": "collector:4318"}, "callback_settings.otel.endpoint: invalid value"),
    ({"endpoint": 4318}, "expected a URL"),
    ({"compression": "brotli"}, "expected one of none, gzip, deflate"),
    ({"timeout": 0}, "callback_settings.otel.timeout"),
    ({"max_queue_size": 10, "max_export_batch_size": 20}, "must not exceed max_queue_size"),
    ({"max_queue_size": True}, "callback_settings.otel.max_queue_size"),
    ({"sample_rate": 0.5}, "unknown keys 'sample_rate'"),
    ({"success": False}, "unknown keys 'success'"),
    ({"service_name": ""}, "callback_settings.otel.service_name"),
    ({"max_request_bytes": 0}, "callback_settings.otel.max_request_bytes"),
])
def test_invalid_settings(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_settings("otel", settings)


def test_core_keys_accepted() -> None:
    parsed = parse_settings("otel", {"required": True, "log_content": False})
    assert parsed.traces_endpoint == "http://localhost:4318/v1/traces"


def test_invalid_headers_hide_value() -> None:
    with pytest.raises(ValueError) as raised:
        parse_settings("otel", {"headers": "authorization: Bearer s3cret-token"})
    assert "s3cret-token" not in str(raised.value)


def test_invalid_endpoint_hides_credentials() -> None:
    with pytest.raises(ValueError) as raised:
        parse_settings("otel", {"endpoint": "ftp://user:s3cret@collector:21/"})
    assert "s3cret" not in str(raised.value)


def test_redact_url_strips_userinfo_and_query() -> None:
    assert redact_url("https://user:pw@host:4318/v1/traces?key=k#f") == \
        "https://host:4318/v1/traces"


EXPORT_VARIABLES = tuple(f"OTEL_EXPORTER_OTLP_{scope}{suffix}" for scope in ("", "TRACES_")
                         for suffix in ("HEADERS", "TIMEOUT", "COMPRESSION", "CERTIFICATE",
                                        "CLIENT_CERTIFICATE", "CLIENT_KEY"))


@pytest.fixture
def clean_export_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for variable in EXPORT_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


def test_export_defaults(clean_export_environment: pytest.MonkeyPatch) -> None:
    options = export_options(parse_settings("otel", {}), "hookgate-otel/test")

    assert options.headers == {"content-type": "application/x-protobuf",
                               "user-agent": "hookgate-otel/test"}
    assert options.timeout == 10.0
    assert options.compression == "none"
    assert options.verify is True
    assert options.client_certificate is None


def test_export_headers_precedence(clean_export_environment: pytest.MonkeyPatch) -> None:
    clean_export_environment.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-shared=base")
    clean_export_environment.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                                    "Authorization=Bearer%20env,x-env=1")
    parsed = parse_settings("otel", {"headers": {"X-Env": "config"}})

    headers = export_options(parsed, "ua").headers

    # The traces variable replaces the general one, as in the OpenTelemetry exporter.
    assert "x-shared" not in headers
    assert headers["authorization"] == "Bearer env"
    assert headers["x-env"] == "config"


@pytest.mark.parametrize(("environment", "settings", "expected"), [
    ({"OTEL_EXPORTER_OTLP_TIMEOUT": "2.5"}, {}, 2.5),
    ({"OTEL_EXPORTER_OTLP_TIMEOUT": "2", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "3"}, {}, 3.0),
    ({"OTEL_EXPORTER_OTLP_TIMEOUT": "2"}, {"timeout": 7}, 7.0),
    ({"OTEL_EXPORTER_OTLP_TIMEOUT": "soon"}, {}, 10.0),
    ({"OTEL_EXPORTER_OTLP_TIMEOUT": "-1"}, {}, 10.0),
])
def test_export_timeout(clean_export_environment: pytest.MonkeyPatch,
                        environment: dict[str, str], settings: dict[str, object],
                        expected: float) -> None:
    for variable, value in environment.items():
        clean_export_environment.setenv(variable, value)

    assert export_options(parse_settings("otel", settings), "ua").timeout == expected


@pytest.mark.parametrize(("environment", "settings", "expected"), [
    ({"OTEL_EXPORTER_OTLP_COMPRESSION": "GZIP"}, {}, "gzip"),
    ({"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "deflate"}, {}, "deflate"),
    ({"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}, {"compression": "none"}, "none"),
    ({"OTEL_EXPORTER_OTLP_COMPRESSION": "brotli"}, {}, "none"),
])
def test_export_compression(clean_export_environment: pytest.MonkeyPatch,
                            environment: dict[str, str], settings: dict[str, object],
                            expected: str) -> None:
    for variable, value in environment.items():
        clean_export_environment.setenv(variable, value)

    assert export_options(parse_settings("otel", settings), "ua").compression == expected


def test_export_tls_files(clean_export_environment: pytest.MonkeyPatch) -> None:
    clean_export_environment.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem")
    clean_export_environment.setenv("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
                                    "/etc/client.pem")
    clean_export_environment.setenv("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/etc/client.key")

    options = export_options(parse_settings("otel", {}), "ua")

    assert options.verify == "/etc/ca.pem"
    assert options.client_certificate == ("/etc/client.pem", "/etc/client.key")
