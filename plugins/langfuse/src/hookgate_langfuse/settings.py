"""Settings of the Langfuse logger: server, keys and batching."""

from __future__ import annotations

import dataclasses
import logging
import os
import urllib.parse
from collections.abc import Mapping
from typing import Any

from hookgate import LaneSettings, NotConfigured
from hookgate.batching import SENDER_SETTINGS, redact_url, sender_options

__all__ = [
    "DEFAULT_HOST",
    "INGESTION_PATH",
    "MAX_BATCH_BYTES",
    "LangfuseSettings",
    "parse_settings",
]

logger = logging.getLogger(__name__)

DEFAULT_HOST = "https://cloud.langfuse.com"
INGESTION_PATH = "/api/public/ingestion"

# Langfuse's API reference limits one ingestion request to 3.5 MB in total. MB is
# taken as 10**6 bytes, the smaller reading.
MAX_BATCH_BYTES = 3_500_000

OWN_KEYS = frozenset({"host", "public_key", "secret_key", "environment", "release"})

# The proxy and hookgate-core act on these keys themselves (which events reach the
# plugin, whether content is stripped first), so the plugin accepts and ignores them.
CORE_KEYS = frozenset(field.name for field in dataclasses.fields(LaneSettings))

# The same names as the official Langfuse SDK. LANGFUSE_BASE_URL is the newer name
# of LANGFUSE_HOST in SDK 3.x and later, and wins when both are set, as there.
HOST_ENVS = ("LANGFUSE_BASE_URL", "LANGFUSE_HOST")
PUBLIC_KEY_ENV = "LANGFUSE_PUBLIC_KEY"
SECRET_KEY_ENV = "LANGFUSE_SECRET_KEY"
ENVIRONMENT_ENV = "LANGFUSE_TRACING_ENVIRONMENT"
RELEASE_ENV = "LANGFUSE_RELEASE"

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclasses.dataclass(frozen=True)
class LangfuseSettings:
    """Validated settings of one Langfuse logger. The secret key never appears in its repr."""

    host: str
    """Base URL of the Langfuse server, without a trailing slash."""
    public_key: str
    secret_key: str = dataclasses.field(repr=False)
    environment: str | None = None
    """Langfuse `environment` of every trace, or None for the server's default."""
    release: str | None = None
    sender: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """BatchSender arguments set in the config (batch_size, flush_interval, ...)."""

    @property
    def ingestion_url(self) -> str:
        return self.host + INGESTION_PATH


def parse_settings(name: str, settings: Mapping[str, Any],
                   environ: Mapping[str, str] | None = None) -> LangfuseSettings:
    """Validate `callback_settings.<name>`, falling back to the LANGFUSE_* variables.

    Raises NotConfigured naming each missing key and how to set it, and ValueError
    naming the key path of an invalid value. Neither message contains a key's value.
    """
    env = os.environ if environ is None else environ
    prefix = f"callback_settings.{name}"

    unknown = sorted(set(settings) - OWN_KEYS - CORE_KEYS - set(SENDER_SETTINGS))
    if unknown:
        known = ", ".join(sorted(OWN_KEYS | CORE_KEYS | set(SENDER_SETTINGS)))
        raise ValueError(f"{prefix}: unknown keys {', '.join(map(repr, unknown))}; "
                         f"the langfuse logger accepts {known}")

    public_key = _text(settings, "public_key", prefix) or env.get(PUBLIC_KEY_ENV, "").strip()
    secret_key = _text(settings, "secret_key", prefix) or env.get(SECRET_KEY_ENV, "").strip()
    missing = []
    if not public_key:
        missing.append(f"{PUBLIC_KEY_ENV} (set {prefix}.public_key or {PUBLIC_KEY_ENV})")
    if not secret_key:
        missing.append(f"{SECRET_KEY_ENV} (set {prefix}.secret_key or {SECRET_KEY_ENV})")
    if missing:
        raise NotConfigured("missing " + " and ".join(missing))

    host = _host(settings, prefix, env)
    environment = _text(settings, "environment", prefix) or env.get(ENVIRONMENT_ENV) or None
    release = _text(settings, "release", prefix) or env.get(RELEASE_ENV) or None

    options: dict[str, Any] = {"max_batch_bytes": MAX_BATCH_BYTES}
    options.update(sender_options(settings, prefix))
    return LangfuseSettings(host=host, public_key=public_key, secret_key=secret_key,
                            environment=environment, release=release, sender=options)


def _text(settings: Mapping[str, Any], key: str, prefix: str) -> str | None:
    value = settings.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{prefix}.{key}: invalid value of type {type(value).__name__}: "
                         "expected a string")
    return value.strip() or None


def _host(settings: Mapping[str, Any], prefix: str, env: Mapping[str, str]) -> str:
    source = f"{prefix}.host"
    raw = _text(settings, "host", prefix)
    for variable in HOST_ENVS:
        if raw:
            break
        raw = env.get(variable, "").strip() or None
        source = variable
    if not raw:
        return DEFAULT_HOST

    parts = urllib.parse.urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{source}: invalid value {redact_url(raw)!r}: expected an http or "
                         "https URL such as https://cloud.langfuse.com")
    if parts.username or parts.password or parts.query:
        raise ValueError(f"{source}: invalid value {redact_url(raw)!r}: the URL must not "
                         "contain a user, password or query; set the keys on their own")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        logger.warning("%s is plain http to %s: the Langfuse keys travel unencrypted; use "
                       "https", source, parts.hostname)
    return raw.rstrip("/")
