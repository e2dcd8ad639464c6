"""Fixtures for testing hookgate logger plugins; pytest loads this automatically."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from hookgate.events import CallEvent
from hookgate.plugins import PluginRegistry
from hookgate.testing.events import make_event as build_event
from hookgate.testing.harness import DispatchHarness
from hookgate.testing.receiver import LoopbackReceiver
from hookgate.testing.recorder import RecordingLogger

ReceiverT = TypeVar("ReceiverT", bound=LoopbackReceiver)


@pytest.fixture
def hookgate_registry() -> PluginRegistry:
    """A fresh plugin registry that has loaded nothing."""
    return PluginRegistry(strict=False)


@pytest.fixture
def hookgate_harness(hookgate_registry: PluginRegistry) -> Iterator[DispatchHarness]:
    """A dispatch harness on `hookgate_registry`; closed after the test."""
    harness = DispatchHarness(hookgate_registry)
    yield harness
    harness.close()


@pytest.fixture
def make_event() -> Callable[..., CallEvent]:
    """A factory: `make_event()`, `make_event("failure")`, `make_event(model="x")`."""
    return build_event


@pytest.fixture
def recording_logger() -> RecordingLogger:
    """A fresh in-memory logger that records every hook call."""
    return RecordingLogger()


@pytest.fixture
def start_receiver() -> Iterator[Callable[..., Any]]:
    """A factory: `start_receiver(ReceiverClass, port=0, **options)` returns a started
    receiver, and every receiver it started is stopped after the test. Pass the port
    of a stopped one to bring the backend back."""
    receivers: list[LoopbackReceiver] = []

    def start(receiver_class: type[ReceiverT], port: int = 0, **options: Any) -> ReceiverT:
        receiver = receiver_class(port, **options).start()
        receivers.append(receiver)
        return receiver

    yield start
    for receiver in receivers:
        receiver.stop()


def pytest_report_header(config: Any) -> str:
    from importlib.metadata import version

    return f"hookgate-core {version('hookgate-core')}"
