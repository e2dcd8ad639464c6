"""Model routing: exact names, wildcards and upstream name substitution."""

from __future__ import annotations

import pytest

from hookgate_proxy.providers.base import Deployment
from hookgate_proxy.routing import ModelRouter

DEPLOYMENTS = [
    Deployment(model_name="gpt-4o", provider="openai", upstream_model="gpt-4o-2024-08-06"),
    Deployment(model_name="openai/*", provider="openai", upstream_model="*"),
    Deployment(model_name="openai/o1-*", provider="openai", upstream_model="o1-*"),
    Deployment(model_name="claude-*", provider="anthropic", upstream_model="claude-*"),
    Deployment(model_name="fixed/*", provider="mock", upstream_model="echo"),
]


@pytest.mark.parametrize(("requested", "provider", "upstream_model"), [
    ("gpt-4o", "openai", "gpt-4o-2024-08-06"),
    ("openai/gpt-4o-mini", "openai", "gpt-4o-mini"),
    ("openai/o1-preview", "openai", "o1-preview"),
    ("claude-sonnet-4-20250514", "anthropic", "claude-sonnet-4-20250514"),
    ("fixed/anything", "mock", "echo"),
], ids=["exact", "prefix", "longer-prefix-wins", "prefix-without-slash", "fixed-upstream"])
def test_resolve(requested: str, provider: str, upstream_model: str) -> None:
    deployment = ModelRouter(DEPLOYMENTS).resolve(requested)

    assert deployment is not None
    assert deployment.provider == provider
    assert deployment.upstream_model == upstream_model


@pytest.mark.parametrize("requested", ["gpt-4", "openai/", "GPT-4O", "other/gpt-4o", ""])
def test_resolve_unknown(requested: str) -> None:
    assert ModelRouter(DEPLOYMENTS).resolve(requested) is None


def test_catch_all() -> None:
    router = ModelRouter([Deployment(model_name="*", provider="mock", upstream_model="*")])

    deployment = router.resolve("anything-at-all")

    assert deployment is not None
    assert deployment.upstream_model == "anything-at-all"


def test_exact_beats_catch_all() -> None:
    router = ModelRouter([
        Deployment(model_name="*", provider="mock", upstream_model="*"),
        Deployment(model_name="gpt-4o", provider="openai", upstream_model="gpt-4o"),
    ])

    deployment = router.resolve("gpt-4o")

    assert deployment is not None
    assert deployment.provider == "openai"


def test_deployments_take_turns() -> None:
    router = ModelRouter([
        Deployment(model_name="m", provider="openai", upstream_model="a"),
        Deployment(model_name="m", provider="openai", upstream_model="b"),
    ])

    chosen = [router.resolve("m").upstream_model for _ in range(4)]  # type: ignore[union-attr]

    assert chosen == ["a", "b", "a", "b"]
    assert router.names == ["m"]
