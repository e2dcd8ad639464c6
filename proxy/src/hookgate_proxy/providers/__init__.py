"""Upstream providers: `openai/`, `anthropic/` and the built-in `mock/`."""

from __future__ import annotations

import importlib
from collections.abc import Iterable

import aiohttp

from hookgate_proxy.providers.base import (
    Deployment,
    Provider,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
)

__all__ = [
    "Deployment",
    "Provider",
    "ProviderError",
    "ProviderMissing",
    "ProviderTimeout",
    "ProviderUnavailable",
    "build_providers",
]


class ProviderMissing(Exception):
    """A configured provider's module cannot be imported."""


def build_providers(names: Iterable[str], session: aiohttp.ClientSession) -> dict[str, Provider]:
    """Build one instance of each named provider, sharing `session` for upstream calls.

    Raises ProviderMissing when a provider's module is missing or broken.
    """
    providers: dict[str, Provider] = {}
    for name in sorted(set(names)):
        if name == "mock":
            from hookgate_proxy.providers.mock import MockProvider

            providers[name] = MockProvider()
        elif name == "openai":
            from hookgate_proxy.providers.openai import OpenAIProvider

            providers[name] = OpenAIProvider(session)
        elif name == "anthropic":
            # Imported only when a deployment uses it, so that a broken or missing
            # Anthropic module affects only configs that need it.
            try:
                module = importlib.import_module("hookgate_proxy.providers.anthropic")
                providers[name] = module.AnthropicProvider(session)
            except (ImportError, AttributeError) as error:
                raise ProviderMissing(
                    f"provider 'anthropic' is not available ({type(error).__name__}: {error}); "
                    "reinstall hookgate-proxy or remove the anthropic/ deployments"
                ) from error
        else:
            raise ProviderMissing(f"unknown provider {name!r}")
    return providers
