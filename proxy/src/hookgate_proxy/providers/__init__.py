"""Upstream providers: `openai/`, `anthropic/` and the built-in `mock/`."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

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
    "provider_class",
]


class ProviderMissing(Exception):
    """A configured provider's module cannot be imported."""


# Provider name -> (module, class). Modules are imported only when a deployment uses
# them, so that a missing or broken provider affects only the configs that need it.
PROVIDER_CLASSES = {
    "mock": ("hookgate_proxy.providers.mock", "MockProvider"),
    "openai": ("hookgate_proxy.providers.openai", "OpenAIProvider"),
    "anthropic": ("hookgate_proxy.providers.anthropic", "AnthropicProvider"),
}


def provider_class(name: str) -> type[Any]:
    """Import and return the class of provider `name`. Raises ProviderMissing."""
    if name not in PROVIDER_CLASSES:
        raise ProviderMissing(f"unknown provider {name!r}; known: "
                              f"{', '.join(sorted(PROVIDER_CLASSES))}")
    module_name, class_name = PROVIDER_CLASSES[name]
    try:
        return getattr(importlib.import_module(module_name), class_name)  # type: ignore[no-any-return]
    except (ImportError, AttributeError) as error:
        raise ProviderMissing(
            f"provider {name!r} is not available ({type(error).__name__}: {error}); "
            f"reinstall hookgate-proxy or remove the {name}/ deployments"
        ) from error


def build_providers(names: Iterable[str], session: aiohttp.ClientSession) -> dict[str, Provider]:
    """Build one instance of each named provider, sharing `session` for upstream calls.

    Raises ProviderMissing when a provider's module is missing or broken.
    """
    providers: dict[str, Provider] = {}
    for name in sorted(set(names)):
        cls = provider_class(name)
        providers[name] = cls() if name == "mock" else cls(session)
    return providers
