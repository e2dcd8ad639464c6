"""Settings of the Datadog logger: intake URL, API key, tags and batching."""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from collections.abc import Mapping
from typing import Any

from hookgate import NotConfigured
from hookgate.batching import (
    check_backend_url,
    check_setting_keys,
    sender_options,
    text_setting,
)

__all__ = [
    "DEFAULT_SITE",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_ENTRIES",
    "MAX_ENTRY_BYTES",
    "DatadogSettings",
    "intake_url",
    "parse_settings",
]

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

API_KEY_ENV = "DD_API_KEY"
SITE_ENV = "DD_SITE"
SERVICE_ENV = "DD_SERVICE"
ENV_ENV = "DD_ENV"

SITE_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")


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

    check_setting_keys(settings, OWN_KEYS, prefix, "datadog")

    api_key = text_setting(settings, "api_key", prefix) or env.get(API_KEY_ENV, "").strip()
    if not api_key:
        raise NotConfigured(f"missing {API_KEY_ENV}: set {prefix}.api_key or {API_KEY_ENV}")

    url = _url(settings, prefix, env)
    service = text_setting(settings, "service", prefix) or env.get(SERVICE_ENV, "").strip() \
        or DEFAULT_SERVICE
    source = text_setting(settings, "source", prefix) or DEFAULT_SOURCE
    hostname = text_setting(settings, "hostname", prefix) or socket.gethostname()
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


def _url(settings: Mapping[str, Any], prefix: str, env: Mapping[str, str]) -> str:
    raw = text_setting(settings, "url", prefix)
    if raw is None:
        site = (text_setting(settings, "site", prefix) or env.get(SITE_ENV, "").strip()
                or DEFAULT_SITE)
        source = f"{prefix}.site" if settings.get("site") else SITE_ENV
        if not SITE_PATTERN.match(site):
            raise ValueError(f"{source}: invalid value {site!r}: expected a Datadog site "
                             "such as datadoghq.com or datadoghq.eu")
        return intake_url(site)

    check_backend_url(raw, f"{prefix}.url", expected="of a Logs intake v2 endpoint",
                      credentials="api_key")
    return raw


def _tags(settings: Mapping[str, Any], prefix: str) -> tuple[str, ...]:
    value = settings.get("tags", ())
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)) or not all(isinstance(tag, str) for tag in value):
        raise ValueError(f"{prefix}.tags: invalid value of type {type(value).__name__}: "
                         "expected a list of key:value strings")
    return tuple(tag.strip() for tag in value if tag.strip())
