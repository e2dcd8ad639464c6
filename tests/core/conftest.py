"""Fixtures for the hookgate-core tests: throwaway plugin distributions in a real venv.

Discovery, conflicts and the "same distribution seen twice" rule all work on the
metadata that an installer writes, so these tests install real distributions into a
virtual environment made for the session. Each distribution is written directly as
a wheel (a zip file with its `.dist-info` folder and RECORD) and installed with the
real pip in one call. Measured on the 2-core development machine: the venv takes
0.05 s (`--without-pip`, the parent's pip is visible through the `.pth` below) and
installing 8 wheels 0.4 s. Building from source with `pip install --no-deps
--no-build-isolation` would need the packages' build backend (hatchling) in every
test environment, and the dev venv has none; writing `.dist-info` folders by hand
would skip the installer, which is part of what is tested.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest


@dataclass
class Distribution:
    """A throwaway distribution: its name, modules and `hookgate.callbacks` entry points."""

    name: str
    modules: Mapping[str, str]
    """Source per file path inside site-packages, e.g. `{"audit_one.py": "..."}`."""
    entry_points: Mapping[str, str]
    """Entry-point name to value, in the `hookgate.callbacks` group."""
    version: str = "1.0.0"
    requires: Sequence[str] = field(default_factory=tuple)

    @property
    def project(self) -> str:
        return self.name.replace("-", "_")

    def dist_info(self) -> dict[str, str]:
        """Return the `.dist-info` files a wheel installer would write, except RECORD."""
        metadata = [
            "Metadata-Version: 2.1",
            f"Name: {self.name}",
            f"Version: {self.version}",
            *(f"Requires-Dist: {requirement}" for requirement in self.requires),
        ]
        entry_points = ["[hookgate.callbacks]"]
        entry_points += [f"{name} = {value}" for name, value in self.entry_points.items()]
        folder = f"{self.project}-{self.version}.dist-info"
        return {
            f"{folder}/METADATA": "\n".join(metadata) + "\n",
            f"{folder}/WHEEL": ("Wheel-Version: 1.0\nGenerator: hookgate-tests\n"
                                "Root-Is-Purelib: true\nTag: py3-none-any\n"),
            f"{folder}/entry_points.txt": "\n".join(entry_points) + "\n",
        }

    def build_wheel(self, directory: Path) -> Path:
        """Write this distribution as a wheel file in `directory` and return its path."""
        files = {path: textwrap.dedent(source) for path, source in self.modules.items()}
        files.update(self.dist_info())
        record_path = f"{self.project}-{self.version}.dist-info/RECORD"
        record_lines = [f"{path},{_hash(data)},{len(data.encode())}"
                        for path, data in files.items()]
        record_lines.append(f"{record_path},,")

        wheel = directory / f"{self.project}-{self.version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            for path, data in files.items():
                archive.writestr(path, data)
            archive.writestr(record_path, "\n".join(record_lines) + "\n")
        return wheel


def _hash(data: str) -> str:
    digest = hashlib.sha256(data.encode()).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass
class VirtualEnvironment:
    """A virtual environment that can also import the running interpreter's packages."""

    root: Path

    @property
    def python(self) -> Path:
        scripts = "Scripts" if os.name == "nt" else "bin"
        return self.root / scripts / ("python.exe" if os.name == "nt" else "python")

    @property
    def site_packages(self) -> Path:
        output = subprocess.run(
            [self.python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout
        return Path(output.strip())

    @classmethod
    def create(cls, root: Path) -> VirtualEnvironment:
        """Create the environment and make the running interpreter's packages visible.

        `venv --system-site-packages` would expose the base interpreter's packages,
        not those of the virtualenv pytest runs in (nox's), so pluggy, pydantic and
        hookgate-core would be missing. A `.pth` file that calls `site.addsitedir`
        on the running interpreter's site-packages makes them visible and also runs
        that folder's own `.pth` files, which editable installs rely on. The new
        environment's site-packages stays first on `sys.path`.
        """
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", root], check=True)
        environment = cls(root)
        parent = sysconfig.get_paths()["purelib"]
        (environment.site_packages / "_hookgate_tests_parent.pth").write_text(
            f"import site; site.addsitedir({parent!r})\n"
        )
        return environment

    def install(self, wheels: Sequence[Path]) -> None:
        """Install `wheels` with pip, without dependencies and without an index."""
        subprocess.run(
            [self.python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
             "--no-compile", "--disable-pip-version-check", *map(str, wheels)],
            check=True, capture_output=True, text=True,
        )

    def run(self, script: str, *arguments: str, env: Mapping[str, str] | None = None,
            timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run a Python script in this environment; `env` is added to a clean environment."""
        environ = {key: value for key, value in os.environ.items()
                   if not key.startswith("HOOKGATE_") and key not in ("PYTHONPATH", "VIRTUAL_ENV")}
        environ.update(env or {})
        return subprocess.run(
            [self.python, "-c", script, *arguments],
            capture_output=True, text=True, env=environ, timeout=timeout,
        )

    def load_plugins(self, *, load: Sequence[str] = (), enable: Sequence[str] = (),
                     blocked: Sequence[str] = (), env: Mapping[str, str] | None = None,
                     ) -> dict[str, Any]:
        """Run LOAD_SCRIPT here and return its JSON output; AssertionError if it failed."""
        request = json.dumps({"load": list(load), "enable": list(enable),
                              "blocked": list(blocked)})
        process = self.run(LOAD_SCRIPT, request, env=env)
        assert process.returncode == 0, f"load script failed:\n{process.stderr}"
        result: dict[str, Any] = json.loads(process.stdout)
        result["log"] = process.stderr
        return result


GOOD_LOGGER = """
from hookgate import hookimpl


class GoodLogger:
    @hookimpl
    def log_success(self, event):
        pass
"""

DISTRIBUTIONS = {
    "good": Distribution(
        "hookgate-good", {"hookgate_good.py": GOOD_LOGGER}, {"good": "hookgate_good:GoodLogger"},
    ),
    "broken-import": Distribution(
        "hookgate-broken-import",
        {"hookgate_broken_import.py": "from json import no_such_function\n"},
        {"broken-import": "hookgate_broken_import"},
    ),
    "needs-dep": Distribution(
        "hookgate-needs-dep",
        {"hookgate_needs_dep.py": "import hookgate_missing_backend\n" + GOOD_LOGGER},
        {"needs-dep": "hookgate_needs_dep:GoodLogger"},
        requires=("hookgate-missing-backend>=2.1",),
    ),
    "unknown-hook": Distribution(
        "hookgate-unknown-hook",
        {"hookgate_unknown_hook.py": GOOD_LOGGER.replace("log_success", "log_sucess")},
        {"unknown-hook": "hookgate_unknown_hook:GoodLogger"},
    ),
    "unknown-param": Distribution(
        "hookgate-unknown-param",
        {"hookgate_unknown_param.py": GOOD_LOGGER.replace("(self, event)",
                                                          "(self, event, request)")},
        {"unknown-param": "hookgate_unknown_param:GoodLogger"},
    ),
    "async-health": Distribution(
        "hookgate-async-health",
        {"hookgate_async_health.py": GOOD_LOGGER.replace(
            "def log_success(self, event):", "async def logger_health(self):")},
        {"async-health": "hookgate_async_health:GoodLogger"},
    ),
    "bomb": Distribution(
        "hookgate-bomb",
        {"hookgate_bomb.py": "raise RuntimeError('hookgate_bomb was imported')\n"},
        {"bomb": "hookgate_bomb"},
    ),
    "module-style": Distribution(
        "hookgate-module-style",
        {"hookgate_module_style.py": "from hookgate import hookimpl\n\n\n"
                                     "@hookimpl\ndef log_failure(event):\n    pass\n"},
        {"module-style": "hookgate_module_style"},
    ),
    "bad-init": Distribution(
        "hookgate-bad-init",
        {"hookgate_bad_init.py": GOOD_LOGGER + (
            "\n    def __init__(self):\n"
            "        raise KeyError('DD_SITE')\n")},
        {"bad-init": "hookgate_bad_init:GoodLogger"},
    ),
    "twice": Distribution(
        "hookgate-twice", {"hookgate_twice.py": GOOD_LOGGER},
        {"twice": "hookgate_twice:GoodLogger"},
    ),
}

# Two different distributions that both declare the plugin name `audit`.
CONFLICTING = (
    Distribution("hookgate-audit-one", {"audit_one.py": GOOD_LOGGER},
                 {"audit": "audit_one:GoodLogger"}, version="1.2.0"),
    Distribution("hookgate-audit-two", {"audit_two.py": GOOD_LOGGER},
                 {"audit": "audit_two:GoodLogger"}, version="0.3.0"),
)

# Loads the plugins named in argv[1] (JSON) in a fresh registry, sends three success
# events through the real dispatcher to the ones it enables, and prints the outcome.
LOAD_SCRIPT = """
import json, logging, sys

from hookgate import PluginRegistry
from hookgate.testing import DispatchHarness, make_event

logging.basicConfig(level=logging.INFO, stream=sys.stderr)
request = json.loads(sys.argv[1])
registry = PluginRegistry(blocked=request.get("blocked", ()))
registry.discover()
for name in request.get("load", ()):
    registry.load(name)

harness = DispatchHarness(registry)
for name in request.get("enable", ()):
    harness.enable(name)
for _ in range(3):
    harness.send(make_event())
harness.drain()
delivered = {name: stats.delivered for name, stats in harness.stats().items()}
harness.close()

print(json.dumps({
    "records": {record.name: record.as_dict() for record in registry.records},
    "imported": sorted(name for name in sys.modules if name.startswith(("hookgate_", "audit_"))),
    "delivered": delivered,
}))
"""


@pytest.fixture(scope="session")
def wheel_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wheels")


@pytest.fixture(scope="session")
def plugin_env(tmp_path_factory: pytest.TempPathFactory, wheel_directory: Path,
               ) -> VirtualEnvironment:
    """A venv with every throwaway distribution except the conflicting pair installed."""
    environment = VirtualEnvironment.create(tmp_path_factory.mktemp("plugin-env") / "venv")
    environment.install([dist.build_wheel(wheel_directory) for dist in DISTRIBUTIONS.values()])
    return environment


@pytest.fixture(scope="session")
def conflict_env(tmp_path_factory: pytest.TempPathFactory, wheel_directory: Path,
                 ) -> VirtualEnvironment:
    """A venv with the two distributions that claim `audit`, plus `good` and `twice`."""
    environment = VirtualEnvironment.create(tmp_path_factory.mktemp("conflict-env") / "venv")
    wheels = [dist.build_wheel(wheel_directory) for dist in CONFLICTING]
    wheels += [DISTRIBUTIONS[name].build_wheel(wheel_directory) for name in ("good", "twice")]
    environment.install(wheels)
    return environment


@pytest.fixture(scope="session")
def packaging_tools() -> SimpleNamespace:
    """`Distribution` and `VirtualEnvironment`, for a test that installs its own package."""
    return SimpleNamespace(Distribution=Distribution, VirtualEnvironment=VirtualEnvironment)
