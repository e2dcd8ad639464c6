"""Fixtures for the end-to-end proxy tests.

Each test module starts one `hookgate serve` subprocess (module scope) with recorder
plugins: `FileRecorder` instances registered from Python under the names the test
needs (`hookgate_settings.plugins`), and one registered through an installed
entry point (`recorder`, from a throwaway `.dist-info` on PYTHONPATH). Each writes
what it receives to its own JSON Lines file, which the test reads.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hookgate_proxy.testing import (
    FakeOpenAIServer,
    read_records,
    write_plugin_distribution,
)

RECORDER = "hookgate_proxy.testing:FileRecorder"


@dataclass
class Recorders:
    """The recorder files of one proxy: one JSON Lines file per plugin name."""

    directory: Path
    names: tuple[str, ...]
    entry_point_names: tuple[str, ...] = ()

    def path(self, name: str) -> Path:
        return self.directory / f"{name}.jsonl"

    def config(self) -> dict[str, Any]:
        """Return the config sections that register and configure every recorder."""
        return {
            "hookgate_settings": {"plugins": {name: RECORDER for name in self.names}},
            "callback_settings": {name: {"path": str(self.path(name))}
                                  for name in (*self.names, *self.entry_point_names)},
        }

    def env(self) -> dict[str, str]:
        """Return the environment that makes the entry-point recorders discoverable."""
        if not self.entry_point_names:
            return {}
        site = self.directory / "site"
        write_plugin_distribution(site, {name: RECORDER for name in self.entry_point_names})
        return {"PYTHONPATH": str(site)}

    def events(self, name: str, call_id: str | None = None) -> list[dict[str, Any]]:
        """Return the log_success and log_failure records of `name`, optionally for one call."""
        records = [record for record in read_records(self.path(name))
                   if record["hook"] in ("log_success", "log_failure")]
        if call_id is not None:
            records = [record for record in records if record["event"]["call_id"] == call_id]
        return records

    def wait(self, name: str, call_id: str, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until `name` has an event for `call_id`, then return its events for it."""
        deadline = time.monotonic() + timeout
        while not self.events(name, call_id):
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} received no event for call {call_id} "
                                     f"within {timeout} s")
            time.sleep(0.02)
        return self.events(name, call_id)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAIServer]:
    """A loopback OpenAI-format server, shared by a module; reset before each test."""
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _reset_upstream(request: pytest.FixtureRequest) -> None:
    # Tests that use the module's upstream (directly or through the proxy fixture)
    # start with normal responses and an empty request record.
    if "upstream" in request.fixturenames:
        request.getfixturevalue("upstream").reset()


@pytest.fixture
def fresh_upstream(upstream: FakeOpenAIServer) -> FakeOpenAIServer:
    """The module's upstream, reset for this test (named for clarity where it matters)."""
    return upstream


@pytest.fixture(scope="module")
def make_recorders(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A factory: `make_recorders(("langfuse", "datadog"), entry_point_names=("recorder",))`."""
    def make(names: Iterable[str], entry_point_names: Iterable[str] = ()) -> Recorders:
        return Recorders(tmp_path_factory.mktemp("recorders"), tuple(names),
                         tuple(entry_point_names))

    return make
