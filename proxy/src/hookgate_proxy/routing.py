"""Model routing: map the model name a client requests to a configured deployment.

A `model_name` matches exactly, or as a wildcard when it ends with `*`: `prefix/*`
matches every longer name that starts with `prefix/` (and `claude-*` every one
starting with `claude-`), and `*` matches every name. Exact names win over
wildcards, and a longer prefix over a shorter one. A `*` in the deployment's
upstream model is replaced by the part of the name the wildcard matched, so
`model_name: openai/*` with `model: openai/*` sends `openai/gpt-4o` upstream as
`gpt-4o`. Several deployments under one name take requests in turn.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Iterator

from hookgate_proxy.providers.base import Deployment

__all__ = ["ModelRouter"]

# Resolved wildcard deployments are cached by requested name; clients choose the
# names, so the cache is cleared when it reaches this size.
CACHE_SIZE = 4096


class ModelRouter:
    """Resolves requested model names to deployments."""

    def __init__(self, deployments: Iterable[Deployment]) -> None:
        exact: dict[str, list[Deployment]] = {}
        wildcards: dict[str, list[Deployment]] = {}
        self.names: list[str] = []
        for deployment in deployments:
            name = deployment.model_name
            if name not in self.names:
                self.names.append(name)
            if name.endswith("*"):
                wildcards.setdefault(name[:-1], []).append(deployment)
            else:
                exact.setdefault(name, []).append(deployment)

        self._exact = {name: _rotation(group) for name, group in exact.items()}
        # Longest prefix first, so `openai/gpt-*`-style specific patterns win.
        self._wildcards = [(prefix, _rotation(group)) for prefix, group
                           in sorted(wildcards.items(), key=lambda item: -len(item[0]))]
        self._cache: dict[tuple[str, int], Deployment] = {}

    def resolve(self, model: str) -> Deployment | None:
        """Return the deployment to use for `model`, or None if no entry matches."""
        rotation = self._exact.get(model)
        if rotation is not None:
            return next(rotation)

        for prefix, rotation in self._wildcards:
            if model.startswith(prefix) and len(model) > len(prefix):
                return self._substitute(next(rotation), model[len(prefix):])
        return None

    def _substitute(self, deployment: Deployment, matched: str) -> Deployment:
        if "*" not in deployment.upstream_model:
            return deployment
        key = (matched, id(deployment))
        resolved = self._cache.get(key)
        if resolved is None:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            upstream = deployment.upstream_model.replace("*", matched)
            resolved = dataclasses.replace(deployment, upstream_model=upstream)
            self._cache[key] = resolved
        return resolved


def _rotation(group: list[Deployment]) -> Iterator[Deployment]:
    return itertools.cycle(group) if len(group) > 1 else itertools.repeat(group[0])
