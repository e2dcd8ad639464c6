"""Settings of the otel logger: the OTLP/HTTP endpoint, headers, service name and batching.

Each value comes from `callback_settings.<name>` first, then from the standard
OpenTelemetry environment variables, then from the OpenTelemetry default.
`parse_settings` validates the config and resolves the endpoint. `export_options`
adds the headers, timeout, compression and TLS files from the environment, read the
way opentelemetry-exporter-otlp-proto-http 1.45.2 reads them, so that a deployment
configured for that exporter keeps working.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from opentelemetry.util.re import parse_env_headers

__all__ = [
    "DEFAULT_ENDPOINT",
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_SERVICE_NAME",
    "DEFAULT_TIMEOUT",
    "ExportOptions",
    "OtelSettings",
    "export_options",
    "parse_settings",
    "redact_url",
]

logger = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "http://localhost:4318"
"""The OTLP/HTTP default of the OpenTelemetry specification (a local collector)."""
TRACES_PATH = "v1/traces"
DEFAULT_SERVICE_NAME = "hookgate"

DEFAULT_MAX_QUEUE_SIZE = 2048
DEFAULT_MAX_EXPORT_BATCH_SIZE = 512
DEFAULT_SCHEDULE_DELAY = 5.0
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024
"""The request size limit of opentelemetry-exporter-otlp-proto-http 1.45.2."""

OWN_KEYS = frozenset({
    "endpoint",
    "traces_endpoint",
    "headers",
    "service_name",
    "timeout",
    "compression",
    "max_queue_size",
    "max_export_batch_size",
    "schedule_delay",
    "max_request_bytes",
})

# The proxy passes these keys on in every callback's settings and hookgate-core acts
# on them (no request may disable a required plugin, and content is stripped before
# the plugin receives the event), so the plugin ignores them. `success` and
# `failure` are not accepted: the proxy takes those from the callback lists.
CORE_KEYS = frozenset({"required", "log_content"})

COMPRESSIONS = ("none", "gzip", "deflate")


@dataclasses.dataclass(frozen=True)
class OtelSettings:
    """Validated settings of one otel logger."""

    traces_endpoint: str
    """Full URL the spans are posted to, including the `/v1/traces` path."""
    headers: Mapping[str, str] | None
    """Headers from the config, or None to use OTEL_EXPORTER_OTLP_(TRACES_)HEADERS only."""
    service_name: str | None
    """`service.name` from the config, or None to use OTEL_SERVICE_NAME or `hookgate`."""
    timeout: float | None
    """Seconds one export may take including retries, or None for the exporter default."""
    compression: str | None
    """`none`, `gzip` or `deflate`, or None for OTEL_EXPORTER_OTLP_(TRACES_)COMPRESSION."""
    max_queue_size: int
    """Spans held at most while waiting for export; more are dropped and counted."""
    max_export_batch_size: int
    """Spans sent at most in one OTLP request."""
    schedule_delay: float
    """Seconds between two exports when fewer than a batch of spans are waiting."""
    max_request_bytes: int | None
    """Largest uncompressed request the exporter sends, or None for its default (64 MiB)."""


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    """How to send the export requests: the settings merged with the environment."""

    headers: Mapping[str, str]
    """Every request header, names in lowercase. Values may be secrets: never log them."""
    timeout: float
    """Seconds one export may take, retries included."""
    compression: str
    """`none`, `gzip` or `deflate`."""
    verify: bool | str
    """True to check the server certificate against the system's CAs, or a CA file."""
    client_certificate: str | tuple[str, str] | None
    """A client certificate file, or certificate and key files, for mutual TLS."""


def export_options(parsed: OtelSettings, user_agent: str) -> ExportOptions:
    """Merge `parsed` with the OTLP exporter environment variables into `ExportOptions`.

    Environment headers are parsed as OTEL_EXPORTER_OTLP_HEADERS specifies (URL-encoded
    `key=value` pairs), and config headers win on the same name. An invalid timeout
    or compression in the environment is logged and replaced by the default, as the
    OpenTelemetry exporter does.
    """
    headers = {"content-type": "application/x-protobuf", "user-agent": user_agent}
    headers.update(parse_env_headers(_environment("HEADERS") or "", liberal=True))
    if parsed.headers:
        headers.update(parsed.headers)

    compression = parsed.compression or _environment_compression()
    client_certificate_file = _environment("CLIENT_CERTIFICATE")
    client_key_file = _environment("CLIENT_KEY")
    client_certificate: str | tuple[str, str] | None = client_certificate_file
    if client_certificate_file and client_key_file:
        client_certificate = (client_certificate_file, client_key_file)

    return ExportOptions(
        headers=headers,
        timeout=parsed.timeout or _environment_timeout(),
        compression=compression,
        verify=_environment("CERTIFICATE") or True,
        client_certificate=client_certificate,
    )


def _environment(suffix: str) -> str | None:
    """Return OTEL_EXPORTER_OTLP_TRACES_<suffix>, else OTEL_EXPORTER_OTLP_<suffix>, if set."""
    return (os.environ.get(f"OTEL_EXPORTER_OTLP_TRACES_{suffix}")
            or os.environ.get(f"OTEL_EXPORTER_OTLP_{suffix}") or None)


def _environment_timeout() -> float:
    raw = _environment("TIMEOUT")
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        logger.warning("OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT: invalid value %r: expected a "
                       "positive number of seconds; using %.0f s", raw, DEFAULT_TIMEOUT)
        return DEFAULT_TIMEOUT
    return value


def _environment_compression() -> str:
    raw = _environment("COMPRESSION")
    if raw is None:
        return "none"
    value = raw.strip().lower()
    if value not in COMPRESSIONS:
        logger.warning("OTEL_EXPORTER_OTLP_(TRACES_)COMPRESSION: invalid value %r: expected "
                       "one of %s; sending uncompressed", raw, ", ".join(COMPRESSIONS))
        return "none"
    return value


def parse_settings(name: str, settings: Mapping[str, Any]) -> OtelSettings:
    """Validate `callback_settings.<name>`, fall back to the environment and fill in defaults.

    Raises ValueError naming the key and the invalid value. Header values are never
    part of a message, because they usually carry an API key.
    """
    prefix = f"callback_settings.{name}"

    unknown = sorted(set(settings) - OWN_KEYS - CORE_KEYS)
    if unknown:
        known = ", ".join(sorted(OWN_KEYS | CORE_KEYS))
        raise ValueError(f"{prefix}: unknown keys {', '.join(map(repr, unknown))}; "
                         f"the otel logger accepts {known}")

    max_queue_size = _positive_int(settings, "max_queue_size", DEFAULT_MAX_QUEUE_SIZE, prefix)
    max_batch = _positive_int(settings, "max_export_batch_size", DEFAULT_MAX_EXPORT_BATCH_SIZE,
                              prefix)
    if max_batch > max_queue_size:
        raise ValueError(f"{prefix}.max_export_batch_size: invalid value {max_batch}: it must "
                         f"not exceed max_queue_size ({max_queue_size})")

    return OtelSettings(
        traces_endpoint=_traces_endpoint(settings, prefix),
        headers=_headers(settings, prefix),
        service_name=_optional_text(settings, "service_name", prefix),
        timeout=_optional_seconds(settings, "timeout", prefix),
        compression=_compression(settings, prefix),
        max_queue_size=max_queue_size,
        max_export_batch_size=max_batch,
        schedule_delay=_optional_seconds(settings, "schedule_delay", prefix)
        or DEFAULT_SCHEDULE_DELAY,
        max_request_bytes=_optional_bytes(settings, "max_request_bytes", prefix),
    )


def redact_url(url: str) -> str:
    """Return `url` without user info, query and fragment, for logs and health."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _traces_endpoint(settings: Mapping[str, Any], prefix: str) -> str:
    # The order follows the OpenTelemetry exporter specification: a signal-specific
    # URL is used as it is, a base URL gets `/v1/traces` appended. The config wins
    # over the environment because it is the more specific choice of the operator.
    candidates = [
        (f"{prefix}.traces_endpoint", settings.get("traces_endpoint"), False),
        (f"{prefix}.endpoint", settings.get("endpoint"), True),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
         os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), False),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"), True),
    ]
    for source, value, is_base in candidates:
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise ValueError(f"{source}: invalid value {value!r}: expected a URL")
        _check_url(source, value)
        if is_base:
            return f"{value.rstrip('/')}/{TRACES_PATH}"
        return value
    return f"{DEFAULT_ENDPOINT}/{TRACES_PATH}"


def _check_url(source: str, value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{source}: invalid value {redact_url(value)!r}: expected an http:// "
                         "or https:// URL such as http://localhost:4318")


def _headers(settings: Mapping[str, Any], prefix: str) -> dict[str, str] | None:
    raw = settings.get("headers")
    if raw is None:
        return None
    if isinstance(raw, str):
        # The same `key=value,key2=value2` form as OTEL_EXPORTER_OTLP_HEADERS.
        pairs = [item.split("=", 1) for item in raw.split(",") if item.strip()]
        if any(len(pair) != 2 or not pair[0].strip() for pair in pairs):
            raise ValueError(f"{prefix}.headers: invalid value: expected a mapping or "
                             "'key=value,key2=value2' (the value is not shown because it "
                             "may contain a secret)")
        return {key.strip().lower(): value.strip() for key, value in pairs}
    if isinstance(raw, Mapping):
        headers = {}
        for key, value in raw.items():
            if not isinstance(key, str) or not key.strip() or not isinstance(value, str):
                raise ValueError(f"{prefix}.headers: invalid entry for key {key!r}: header "
                                 "names and values must be strings")
            headers[key.strip().lower()] = value
        return headers
    raise ValueError(f"{prefix}.headers: invalid value of type {type(raw).__name__}: expected "
                     "a mapping of header names to values")


def _compression(settings: Mapping[str, Any], prefix: str) -> str | None:
    raw = settings.get("compression")
    if raw is None:
        return None
    if not isinstance(raw, str) or raw.strip().lower() not in COMPRESSIONS:
        raise ValueError(f"{prefix}.compression: invalid value {raw!r}: expected one of "
                         f"{', '.join(COMPRESSIONS)}")
    return raw.strip().lower()


def _optional_text(settings: Mapping[str, Any], key: str, prefix: str) -> str | None:
    raw = settings.get(key)
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError(f"{prefix}.{key}: invalid value {raw!r}: expected a non-empty string")
    return raw.strip()


def _optional_seconds(settings: Mapping[str, Any], key: str, prefix: str) -> float | None:
    raw = settings.get(key)
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw <= 0:
        raise ValueError(f"{prefix}.{key}: invalid value {raw!r}: expected a positive number "
                         "of seconds")
    return float(raw)


def _optional_bytes(settings: Mapping[str, Any], key: str, prefix: str) -> int | None:
    raw = settings.get(key)
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise ValueError(f"{prefix}.{key}: invalid value {raw!r}: expected a whole number of "
                         "bytes, at least 1")
    return raw


def _positive_int(settings: Mapping[str, Any], key: str, default: int, prefix: str) -> int:
    raw = settings.get(key, default)
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise ValueError(f"{prefix}.{key}: invalid value {raw!r}: expected a whole number of "
                         "spans, at least 1")
    return raw
