"""Helpers for the prometheus logger tests: parse a scrape with prometheus_client.parser."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.testclient import TestClient

from hookgate import PluginRegistry
from hookgate.testing import DispatchHarness


class Samples(dict[tuple[str, frozenset[tuple[str, str]]], float]):
    """The samples of one scrape, by sample name and labels."""

    def value(self, name: str, **labels: str) -> float | None:
        """Return the value of one sample, or None if the scrape does not contain it."""
        return self.get((name, frozenset(labels.items())))


def parse_samples(text: str) -> Samples:
    """Parse a Prometheus text exposition with prometheus_client's own parser."""
    samples = Samples()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


class MetricsApp:
    """A Starlette app carrying a harness's dispatcher as the proxy does, with a test client."""

    def __init__(self, harness: DispatchHarness) -> None:
        self.harness = harness
        self.app = Starlette()
        self.client = TestClient(self.app)

    def attach(self) -> None:
        """Start the dispatcher and put it on `app.state.hookgate`, then add the routes."""
        dispatcher = self.harness.start()
        self.app.state.hookgate = SimpleNamespace(registry=self.harness.registry,
                                                  dispatcher=dispatcher)
        for name in dispatcher.active:
            self.harness.registry.add_routes(name, self.app)

    def scrape(self, path: str = "/metrics", **headers: str) -> Samples:
        response = self.client.get(path, headers=headers)
        assert response.status_code == 200, response.text
        return parse_samples(response.text)


@pytest.fixture
def metrics_app(hookgate_harness: DispatchHarness) -> Iterator[MetricsApp]:
    """A Starlette app wired to `hookgate_harness`, as the proxy wires its own."""
    yield MetricsApp(hookgate_harness)


@pytest.fixture
def small_backlog_app(hookgate_registry: PluginRegistry) -> Iterator[MetricsApp]:
    """Like `metrics_app`, with a dispatcher backlog of 2 events per callback."""
    harness = DispatchHarness(hookgate_registry, backlog=2)
    yield MetricsApp(harness)
    harness.close()


@pytest.fixture
def parse_metrics() -> Callable[[str], Samples]:
    """The scrape parser, for tests that fetch the page themselves."""
    return parse_samples
