"""Settings of the Langfuse logger: server, keys and batching."""

from __future__ import annotations

import dataclasses
import os
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
    "DEFAULT_HOST",
    "INGESTION_PATH",
    "MAX_BATCH_BYTES",
    "LangfuseSettings",
    "parse_settings",
]

DEFAULT_HOST = "https://cloud.langfuse.com"
INGESTION_PATH = "/api/public/ingestion"

# Langfuse's API reference limits one ingestion request to 3.5 MB in total. MB is
# taken as 10**6 bytes, the smaller reading.
MAX_BATCH_BYTES = 3_500_000

OWN_KEYS = frozenset({"host", "public_key", "secret_key", "environment", "release"})

# The same names as the official Langfuse SDK. LANGFUSE_BASE_URL is the newer name
# of LANGFUSE_HOST in SDK 3.x and later, and wins when both are set, as there.
HOST_ENVS = ("LANGFUSE_BASE_URL", "LANGFUSE_HOST")
PUBLIC_KEY_ENV = "LANGFUSE_PUBLIC_KEY"
SECRET_KEY_ENV = "LANGFUSE_SECRET_KEY"
ENVIRONMENT_ENV = "LANGFUSE_TRACING_ENVIRONMENT"
RELEASE_ENV = "LANGFUSE_RELEASE"


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

    check_setting_keys(settings, OWN_KEYS, prefix, "langfuse")

    public_key = text_setting(settings, "public_key", prefix) or env.get(PUBLIC_KEY_ENV, "").strip()
    secret_key = text_setting(settings, "secret_key", prefix) or env.get(SECRET_KEY_ENV, "").strip()
    missing = []
    if not public_key:
        missing.append(f"{PUBLIC_KEY_ENV} (set {prefix}.public_key or {PUBLIC_KEY_ENV})")
    if not secret_key:
        missing.append(f"{SECRET_KEY_ENV} (set {prefix}.secret_key or {SECRET_KEY_ENV})")
    if missing:
        raise NotConfigured("missing " + " and ".join(missing))

    host = _host(settings, prefix, env)
    environment = text_setting(settings, "environment", prefix) or env.get(ENVIRONMENT_ENV) or None
    release = text_setting(settings, "release", prefix) or env.get(RELEASE_ENV) or None

    options: dict[str, Any] = {"max_batch_bytes": MAX_BATCH_BYTES}
    options.update(sender_options(settings, prefix))
    return LangfuseSettings(host=host, public_key=public_key, secret_key=secret_key,
                            environment=environment, release=release, sender=options)


def _host(settings: Mapping[str, Any], prefix: str, env: Mapping[str, str]) -> str:
    source = f"{prefix}.host"
    raw = text_setting(settings, "host", prefix)
    for variable in HOST_ENVS:
        if raw:
            break
        raw = env.get(variable, "").strip() or None
        source = variable
    if not raw:
        return DEFAULT_HOST

    check_backend_url(raw, source, expected="such as https://cloud.langfuse.com",
                      credentials="public_key and secret_key")
    return raw.rstrip("/")
