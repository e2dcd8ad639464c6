"""Master-key authentication, as the LiteLLM proxy does it.

A client sends the key as `Authorization: Bearer <key>` or `x-litellm-api-key: <key>`
(with or without `Bearer `). The key is compared in constant time and never stored
in an event or a log; events carry a SHA-256 prefix of it instead.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.datastructures import Headers

from hookgate_proxy.errors import ProxyError

__all__ = ["Authenticator", "key_hash"]


def key_hash(key: str) -> str:
    """Return the first 16 hex digits of the key's SHA-256, to correlate calls by key."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _strip_bearer(value: str) -> str:
    value = value.strip()
    if value[:7].lower() == "bearer ":
        return value[7:].strip()
    return value


class Authenticator:
    """Checks requests against the master key; with no key set, every request passes."""

    def __init__(self, master_key: str | None) -> None:
        self._key = master_key.encode() if master_key else None
        self._hash = key_hash(master_key) if master_key else None

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def check(self, headers: Headers) -> str | None:
        """Return the key hash of an authorized request, or None when no key is set.

        Raises ProxyError (401) when a key is set and the request lacks it or sends
        another one.
        """
        if self._key is None:
            return None

        supplied = headers.get("authorization") or headers.get("x-litellm-api-key")
        if not supplied:
            raise ProxyError("missing API key: send it as 'Authorization: Bearer <key>' or "
                             "'x-litellm-api-key: <key>'", status_code=401,
                             error_type="authentication_error", code="missing_api_key",
                             kind="AuthenticationError")
        if not hmac.compare_digest(_strip_bearer(supplied).encode(), self._key):
            # A valid key may arrive in the other header while this one carries
            # something else (an SDK that always sets Authorization), so try both.
            other = headers.get("x-litellm-api-key")
            if not other or not hmac.compare_digest(_strip_bearer(other).encode(), self._key):
                raise ProxyError("invalid API key", status_code=401,
                                 error_type="authentication_error", code="invalid_api_key",
                                 kind="AuthenticationError")
        return self._hash
