"""Settings of the Datadog logger: intake URL, API key, tags and batching."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import socket
import urllib.parse
from collections.abc import Mapping
from typing import Any

from hookgate import LaneSettings, NotConfigured
from hookgate.batching import SENDER_SETTINGS, redact_url, sender_options

__all__ = [
    "DEFAULT_SITE",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_ENTRIES",
    "MAX_ENTRY_BYTES",
    "DatadogSettings",
    "intake_url",
    "parse_settings",
]

logger = logging.getLogger(__name__)

DEFAULT_SITE = "datadoghq.com"
DEFAULT_SERVICE = "hookgate"
DEFAULT_SOURCE = "hookgate"

# The documented limits of the Logs intake v2 (POST /api/v2/logs): at most 1,000
# entries per request, 5 MB per request before compression and 1 MB per log. MB is
# taken as 10**6 bytes, the smaller reading.
MAX_BATCH_ENTRIES = 1000
MAX_BATCH_BYTES = 5_000_000
MAX_ENTRY_BYTES = 1_000_000

OWN_KEYS = frozenset({"api_key", "site", "url", "service", "source", "hostname", "tags"})

# The proxy and hookgate-core act on these keys themselves (which events reach the
# plugin, whether content is stripped first), so the plugin accepts and ignores them.
CORE_KEYS = frozenset(field.name for field in dataclasses.fields(LaneSettings))

API_KEY_ENV = "DD_API_KEY"
SITE_ENV = "DD_SITE"
SERVICE_ENV = "DD_SERVICE"
ENV_ENV = "DD_ENV"

SITE_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclasses.dataclass(frozen=True)
class DatadogSettings:
    """Validated settings of one Datadog logger. The API key never appears in its repr."""

    url: str
    """Full URL of the Logs intake v2 endpoint."""
    api_key: str = dataclasses.field(repr=False)
    service: str = DEFAULT_SERVICE
    source: str = DEFAULT_SOURCE
    """The `ddsource` of every log."""
    hostname: str = ""
    tags: tuple[str, ...] = ()
    """Extra `key:value` tags added to every log's `ddtags`."""
    sender: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """BatchSender arguments, the intake's limits included."""


def intake_url(site: str) -> str:
    """Return the Logs intake v2 URL of a Datadog site such as `datadoghq.eu`."""
    return f"https://http-intake.logs.{site}/api/v2/logs"


def parse_settings(name: str, settings: Mapping[str, Any],
                   environ: Mapping[str, str] | None = None) -> DatadogSettings:
    """Validate `callback_settings.<name>`, falling back to the DD_* variables.

    Raises NotConfigured when no API key is set, and ValueError naming the key path
    of an invalid value. Neither message contains the API key.
    """
    env = os.environ if environ is None else environ
    prefix = f"callback_settings.{name}"

    unknown = sorted(set(settings) - OWN_KEYS - CORE_KEYS - set(SENDER_SETTINGS))
    if unknown:
        known = ", ".join(sorted(OWN_KEYS | CORE_KEYS | set(SENDER_SETTINGS)))
        raise ValueError(f"{prefix}: unknown keys {', '.join(map(repr, unknown))}; "
                         f"the datadog logger accepts {known}")

    api_key = _text(settings, "api_key", prefix) or env.get(API_KEY_ENV, "").strip()
    if not api_key:
        raise NotConfigured(f"missing {API_KEY_ENV}: set {prefix}.api_key or {API_KEY_ENV}")

    url = _url(settings, prefix, env)
    service = _text(settings, "service", prefix) or env.get(SERVICE_ENV, "").strip() \
        or DEFAULT_SERVICE
    source = _text(settings, "source", prefix) or DEFAULT_SOURCE
    hostname = _text(settings, "hostname", prefix) or socket.gethostname()
    tags = _tags(settings, prefix)
    if env.get(ENV_ENV, "").strip() and not any(tag.startswith("env:") for tag in tags):
        tags = (*tags, f"env:{env[ENV_ENV].strip()}")

    options: dict[str, Any] = {
        "max_batch_entries": MAX_BATCH_ENTRIES,
        "max_batch_bytes": MAX_BATCH_BYTES,
        "max_entry_bytes": MAX_ENTRY_BYTES,
    }
    options.update(sender_options(settings, prefix))
    if options["max_batch_entries"] > MAX_BATCH_ENTRIES:
        raise ValueError(f"{prefix}.batch_size: invalid value {options['max_batch_entries']}: "
                         f"the Datadog intake takes at most {MAX_BATCH_ENTRIES} logs per request")
    return DatadogSettings(url=url, api_key=api_key, service=service, source=source,
                           hostname=hostname, tags=tags, sender=options)


def _text(settings: Mapping[str, Any], key: str, prefix: str) -> str | None:
    value = settings.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{prefix}.{key}: invalid value of type {type(value).__name__}: "
                         "expected a string")
    return value.strip() or None


def _url(settings: Mapping[str, Any], prefix: str, env: Mapping[str, str]) -> str:
    raw = _text(settings, "url", prefix)
    if raw is None:
        site = _text(settings, "site", prefix) or env.get(SITE_ENV, "").strip() or DEFAULT_SITE
        source = f"{prefix}.site" if settings.get("site") else SITE_ENV
        if not SITE_PATTERN.match(site):
            raise ValueError(f"{source}: invalid value {site!r}: expected a Datadog site "
                             "such as datadoghq.com or datadoghq.eu")
        return intake_url(site)

    parts = urllib.parse.urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{prefix}.url: invalid value {redact_url(raw)!r}: expected an "
                         "http or https URL of a Logs intake v2 endpoint")
    if parts.username or parts.password or parts.query:
        raise ValueError(f"{prefix}.url: invalid value {redact_url(raw)!r}: the URL must not "
                         "contain a user, password or query; set api_key on its own")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        logger.warning("%s.url is plain http to %s: the API key travels unencrypted; use "
                       "https", prefix, parts.hostname)
    return raw


def _tags(settings: Mapping[str, Any], prefix: str) -> tuple[str, ...]:
    value = settings.get("tags", ())
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)) or not all(isinstance(tag, str) for tag in value):
        raise ValueError(f"{prefix}.tags: invalid value of type {type(value).__name__}: "
                         "expected a list of key:value strings")
    return tuple(tag.strip() for tag in value if tag.strip())
