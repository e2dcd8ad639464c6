"""Settings of the prometheus logger: the scrape path, access token, buckets and limits."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["PrometheusSettings", "parse_settings"]

TOKEN_ENV = "HOOKGATE_METRICS_TOKEN"

# Seconds. LLM calls take from tens of milliseconds (cached, tiny) to minutes (long
# generations), so the buckets reach further than prometheus_client's defaults.
DEFAULT_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
DEFAULT_FIRST_TOKEN_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
DEFAULT_MAX_MODELS = 200
DEFAULT_SYNC_INTERVAL = 1.0

OWN_KEYS = frozenset({
    "path",
    "token",
    "duration_buckets",
    "first_token_buckets",
    "max_models",
    "sync_interval",
})

# The proxy passes these keys on in every callback's settings and hookgate-core acts
# on them (no request may disable a required plugin, and content is stripped before
# the plugin receives the event), so the plugin ignores them. `success` and
# `failure` are not accepted: the proxy takes those from the callback lists.
CORE_KEYS = frozenset({"required", "log_content"})


@dataclasses.dataclass(frozen=True)
class PrometheusSettings:
    """Validated settings of one prometheus logger."""

    path: str
    """URL path of the scrape page on the proxy's own port."""
    token: str | None = dataclasses.field(repr=False)
    """Bearer token a scrape must send, or None for an open page."""
    duration_buckets: tuple[float, ...]
    first_token_buckets: tuple[float, ...]
    max_models: int
    """Distinct `model` label values kept; later ones are counted under `other`."""
    sync_interval: float
    """Seconds between copies of the per-callback counters in multiprocess mode."""


def parse_settings(name: str, settings: Mapping[str, Any]) -> PrometheusSettings:
    """Validate `callback_settings.<name>` and fill in the defaults.

    Raises ValueError naming the key and the invalid value; the token's value is
    never part of a message.
    """
    prefix = f"callback_settings.{name}"

    unknown = sorted(set(settings) - OWN_KEYS - CORE_KEYS)
    if unknown:
        known = ", ".join(sorted(OWN_KEYS | CORE_KEYS))
        raise ValueError(f"{prefix}: unknown keys {', '.join(map(repr, unknown))}; "
                         f"the prometheus logger accepts {known}")

    path = settings.get("path", "/metrics")
    if not isinstance(path, str) or not path.startswith("/") or len(path) < 2:
        raise ValueError(f"{prefix}.path: invalid value {path!r}: expected a URL path such as "
                         "/metrics")

    token = settings.get("token", os.environ.get(TOKEN_ENV) or None)
    if token is not None and (not isinstance(token, str) or not token.strip()):
        raise ValueError(f"{prefix}.token: invalid value: expected a non-empty string (the "
                         "value is not shown because it is a secret)")

    max_models = settings.get("max_models", DEFAULT_MAX_MODELS)
    if isinstance(max_models, bool) or not isinstance(max_models, int) or max_models < 1:
        raise ValueError(f"{prefix}.max_models: invalid value {max_models!r}: expected a whole "
                         "number, at least 1")

    interval = settings.get("sync_interval", DEFAULT_SYNC_INTERVAL)
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0:
        raise ValueError(f"{prefix}.sync_interval: invalid value {interval!r}: expected a "
                         "positive number of seconds")

    return PrometheusSettings(
        path=path,
        token=token,
        duration_buckets=_buckets(settings, "duration_buckets", DEFAULT_DURATION_BUCKETS, prefix),
        first_token_buckets=_buckets(settings, "first_token_buckets",
                                     DEFAULT_FIRST_TOKEN_BUCKETS, prefix),
        max_models=max_models,
        sync_interval=float(interval),
    )


def _buckets(settings: Mapping[str, Any], key: str, default: tuple[float, ...],
             prefix: str) -> tuple[float, ...]:
    raw = settings.get(key)
    if raw is None:
        return default
    valid = (isinstance(raw, Sequence) and not isinstance(raw, str) and raw
             and all(isinstance(value, (int, float)) and not isinstance(value, bool)
                     and math.isfinite(value) and value > 0 for value in raw))
    if not valid or list(raw) != sorted(set(raw)):
        raise ValueError(f"{prefix}.{key}: invalid value {raw!r}: expected a non-empty list of "
                         "increasing positive numbers of seconds")
    return tuple(float(value) for value in raw)
