"""A generated plugin package, installed into a fresh virtual environment.

The package is built and installed offline: the build backend (hatchling) and
hookgate itself come from the environment running these tests, so no package index
is needed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import urllib.request
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest

from hookgate_proxy.scaffold import create_plugin_package
from hookgate_proxy.testing import running_proxy

openai = pytest.importorskip("openai")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("hatchling") is None,
                       reason="hatchling is not installed; the generated package is built "
                              "offline with --no-build-isolation, so hatchling must be a "
                              "test dependency"),
]

NAME = "team-audit"


@dataclass(frozen=True)
class Installation:
    """A generated package and the fresh environment it is installed in."""

    package: Path
    python: Path
    purelib: Path
    """The new environment's site-packages, which contains the installed package."""


def fresh_environment(root: Path) -> tuple[Path, Path]:
    """Create a virtual environment that can also import the running environment's packages.

    `venv --system-site-packages` would expose the base interpreter's packages, not
    those of the virtual environment running the tests, so a `.pth` file adds the
    running environment's site-packages instead. `addsitedir` also processes the
    `.pth` files there, so editable installs of hookgate stay visible, and packages
    installed into the new environment still come first on sys.path.

    Returns the new interpreter and the new environment's site-packages.
    """
    venv.EnvBuilder(with_pip=False).create(root)
    python = root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip())
    parent_purelib = sysconfig.get_paths()["purelib"]
    (purelib / "_hookgate_parent.pth").write_text(
        f"import site; site.addsitedir({parent_purelib!r})\n")
    return python, purelib


def clean_environ() -> dict[str, str]:
    environ = dict(os.environ)
    for variable in ("PYTHONPATH", "PYTEST_ADDOPTS", "PIP_REQUIRE_VIRTUALENV"):
        environ.pop(variable, None)
    return environ


def pip(installation: Installation, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(installation.python),
         "--disable-pip-version-check", *arguments],
        capture_output=True, text=True, env=clean_environ(), timeout=300,
    )


def run_python(installation: Installation, *arguments: str,
               cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(installation.python), *arguments], capture_output=True,
                          text=True, env=clean_environ(), cwd=cwd, timeout=300)


def install_generated(root: Path) -> Installation:
    package = create_plugin_package(NAME, root / "src")
    python, purelib = fresh_environment(root / "venv")
    installation = Installation(package, python, purelib)

    result = pip(installation, "install", "--no-index", "--no-build-isolation", str(package))

    assert result.returncode == 0, result.stdout + result.stderr
    return installation


def listed_plugins(installation: Installation) -> dict[str, dict]:
    result = run_python(installation, "-m", "hookgate_proxy", "plugins", "--json")
    assert result.returncode == 0, result.stderr
    return {record["name"]: record for record in json.loads(result.stdout)}


@pytest.fixture(scope="module")
def installation(tmp_path_factory) -> Installation:
    return install_generated(tmp_path_factory.mktemp("generated"))


def test_imported_from_new_environment(installation):
    result = run_python(installation, "-c",
                        "import hookgate_team_audit; print(hookgate_team_audit.__file__)")

    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(installation.purelib)


def test_own_tests_pass(installation):
    result = run_python(installation, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        cwd=installation.package)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout


def test_listed_by_plugins_command(installation):
    record = listed_plugins(installation)[NAME]

    assert record["distribution"] == "hookgate-team-audit"
    assert record["status"] == "loaded"
    assert "log_success" in record["hooks"]


def test_proxy_lists_and_calls_plugin(installation):
    config = {
        "model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}],
        "litellm_settings": {"callbacks": [NAME]},
        "callback_settings": {NAME: {"level": "warning"}},
    }

    # PYTHONPATH puts the new environment's site-packages, and with it the installed
    # package's metadata, on the proxy's sys.path, as if it were installed there.
    with running_proxy(config, env={"PYTHONPATH": str(installation.purelib)}) as proxy:
        with urllib.request.urlopen(proxy.base_url + "/callbacks/list", timeout=10) as reply:
            listing = json.load(reply)
        client = openai.OpenAI(api_key="sk-test", base_url=proxy.base_url, max_retries=0)
        messages = [{"role": "user", "content": "hello"}]
        logged = client.chat.completions.with_raw_response.create(model="m", messages=messages)
        skipped = client.chat.completions.with_raw_response.create(
            model="m", messages=messages, extra_headers={"x-litellm-disable-callbacks": NAME})
        exit_code = proxy.stop()
        logs = proxy.logs()

    assert listing == {"success": [], "failure": [], "success_and_failure": [NAME]}
    assert exit_code == 0, logs
    assert f"call {logged.headers['x-hookgate-call-id']} to m succeeded" in logs
    assert f"call {skipped.headers['x-hookgate-call-id']} to m" not in logs
    assert f"{NAME}: stopped after 1 successful and 0 failed calls" in logs


def test_uninstall_removes_plugin(tmp_path):
    installation = install_generated(tmp_path)
    assert NAME in listed_plugins(installation)

    result = pip(installation, "uninstall", "--yes", "hookgate-team-audit")

    assert result.returncode == 0, result.stdout + result.stderr
    assert NAME not in listed_plugins(installation)
