"""Fixtures for the tests that run all five first-party logger plugins together.

The loopback receivers come from each network plugin's own `tests/conftest.py`, so
these tests check what the plugin tests check (auth, schema, size limits). Test
folders are not packages, so each conftest is loaded by its file path.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
PLUGINS = ("jsonl", "langfuse", "datadog", "otel", "prometheus")
"""Entry-point names of the first-party logger plugins, one folder each under plugins/."""


def load_plugin_conftest(plugin: str) -> ModuleType:
    """Import `plugins/<plugin>/tests/conftest.py` under a private module name."""
    path = REPOSITORY / "plugins" / plugin / "tests" / "conftest.py"
    module_name = f"_hookgate_integration_{plugin}_receiver"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the {plugin} receiver from {path}")
    module = importlib.util.module_from_spec(spec)
    # The dataclass decorator looks the module up in sys.modules.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


@pytest.fixture
def langfuse_receiver() -> Iterator[Any]:
    """A running stand-in Langfuse ingestion API on a free loopback port."""
    receiver = load_plugin_conftest("langfuse").LangfuseReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def datadog_intake() -> Iterator[Any]:
    """A running stand-in Datadog Logs intake v2 on a free loopback port."""
    intake = load_plugin_conftest("datadog").IntakeReceiver().start()
    yield intake
    intake.stop()


@pytest.fixture
def otlp_receiver() -> Iterator[Any]:
    """A running OTLP/HTTP trace receiver on a free loopback port."""
    receiver = load_plugin_conftest("otel").OtlpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def parse_samples() -> Callable[[str], Any]:
    """The prometheus plugin tests' scrape parser: samples by name and labels."""
    return load_plugin_conftest("prometheus").parse_samples  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Build the wheels of core, proxy and the five plugins, by distribution name."""
    directory = tmp_path_factory.mktemp("wheels")
    sources = [REPOSITORY / "core", REPOSITORY / "proxy"]
    sources += [REPOSITORY / "plugins" / plugin for plugin in PLUGINS]
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
               "--no-index", "--disable-pip-version-check", "--quiet", "--wheel-dir",
               str(directory), *map(str, sources)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"building the wheels failed:\n{result.stdout}{result.stderr}"

    built = {}
    for distribution in ["hookgate-core", "hookgate-proxy"] + [f"hookgate-{p}" for p in PLUGINS]:
        matches = sorted(directory.glob(distribution.replace("-", "_") + "-*.whl"))
        assert len(matches) == 1, f"expected one wheel of {distribution}, found {matches}"
        built[distribution] = matches[0]
    return built
