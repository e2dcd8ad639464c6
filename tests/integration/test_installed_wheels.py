"""Install and uninstall each plugin's built wheel in a fresh virtual environment.

The environment gets hookgate's third-party dependencies from the running
interpreter: a `.pth` file adds a mirror of this interpreter's site-packages that
leaves out every hookgate entry, because the development environment has
hookgate's own packages installed editable and they must not leak in. Core and
proxy are installed into the new environment from their wheels, then each plugin
wheel is installed, checked in `hookgate plugins --json` and in `/callbacks/list`
of a real `hookgate serve` from that environment, and uninstalled again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sysconfig
import time
import urllib.error
import urllib.request
import venv
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from hookgate_proxy.testing import RunningProxy, free_port

pytestmark = pytest.mark.slow

PLUGINS = ("jsonl", "langfuse", "datadog", "otel", "prometheus")
ENTRY_POINT_GROUP = "hookgate.callbacks"
ISOLATED_PREFIXES = ("LANGFUSE_", "DD_", "OTEL_", "HOOKGATE_", "PROMETHEUS_")
"""Prefixes of the variables that plugins read, removed so that the machine's settings
cannot leak in."""

PROBE = """
import importlib, importlib.metadata, json, sys
group, names = sys.argv[1], sys.argv[2:]
modules = {}
for name in names:
    try:
        modules[name] = importlib.import_module(name).__file__
    except ImportError:
        modules[name] = None
entry_points = sorted(ep.name for ep in importlib.metadata.entry_points(group=group))
print(json.dumps({"modules": modules, "entry_points": entry_points}))
"""


def clean_environment(**variables: str) -> dict[str, str]:
    """Return this process's environment without Python path and plugin settings."""
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
                   and not key.startswith(ISOLATED_PREFIXES)}
    environment.update(variables)
    return environment


@dataclass
class Environment:
    """The fresh virtual environment and how to run its programs."""

    root: Path
    site_packages: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def hookgate(self) -> Path:
        return self.root / "bin" / "hookgate"

    def run(self, *command: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(part) for part in command], capture_output=True, text=True,
                              env=clean_environment(), timeout=timeout, cwd=self.root)

    def pip(self, *arguments: str | Path) -> subprocess.CompletedProcess[str]:
        # pip itself comes from the parent's site-packages. Run by this interpreter, it
        # installs into and uninstalls from this environment only.
        return self.run(self.python, "-m", "pip", "--disable-pip-version-check",
                        "--no-input", *arguments)

    def probe(self, *modules: str) -> dict[str, Any]:
        """Return where each module imports from (None if it does not) and the entry points."""
        result = self.run(self.python, "-c", PROBE, ENTRY_POINT_GROUP, *modules)
        assert result.returncode == 0, f"probe failed:\n{result.stderr}"
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    def plugins_listing(self) -> dict[str, dict[str, Any]]:
        """Return `hookgate plugins --json` by plugin name."""
        result = self.run(self.hookgate, "plugins", "--json")
        assert result.returncode == 0, f"hookgate plugins --json failed:\n{result.stderr}"
        return {record["name"]: record for record in json.loads(result.stdout)}


def mirror_site_packages(target: Path) -> list[Path]:
    """Link every entry of this interpreter's site-packages into `target`, except hookgate's.

    Returns the mirror directories, one per distinct purelib and platlib directory.
    """
    sources = dict.fromkeys(Path(sysconfig.get_path(key)) for key in ("purelib", "platlib"))
    mirrors = []
    for index, source in enumerate(sources):
        mirror = target / f"parent-site-{index}"
        mirror.mkdir(parents=True)
        for entry in source.iterdir():
            # Dist-info folders, editable-install .pth files and finders all carry the
            # distribution name, so this drops every trace of hookgate's own packages.
            if "hookgate" in entry.name.lower():
                continue
            (mirror / entry.name).symlink_to(entry)
        mirrors.append(mirror)
    return mirrors


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory,
                wheels: dict[str, Path]) -> Environment:
    """A fresh virtual environment with hookgate-core and hookgate-proxy installed from wheels."""
    root = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=False, symlinks=True, clear=True).create(root / "env")
    result = subprocess.run(
        [str(root / "env" / "bin" / "python"), "-c",
         "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, env=clean_environment(), check=True)
    created = Environment(root / "env", Path(result.stdout.strip()))

    lines = [f"import site; site.addsitedir({str(mirror)!r})"
             for mirror in mirror_site_packages(root)]
    (created.site_packages / "hookgate_parent_site.pth").write_text("\n".join(lines) + "\n")

    plugin_modules = [f"hookgate_{plugin}" for plugin in PLUGINS]
    before = created.probe("pip", "hookgate", "hookgate_proxy", *plugin_modules)
    assert before["modules"]["pip"] is not None, "pip is not importable from the parent"
    leaked = {name: path for name, path in before["modules"].items()
              if name != "pip" and path is not None}
    assert leaked == {}, f"hookgate modules visible before any install: {leaked}"
    assert before["entry_points"] == [], (
        f"entry points in {ENTRY_POINT_GROUP} before any install: {before['entry_points']}")

    # hookgate-proxy depends on hookgate-jsonl (its embedded default logger); without
    # --no-deps the jsonl wheel could not be installed and uninstalled on its own here.
    installed = created.pip("install", "--no-index", "--no-deps", wheels["hookgate-core"],
                            wheels["hookgate-proxy"])
    assert installed.returncode == 0, f"installing core and proxy failed:\n{installed.stderr}"
    return created


# What each plugin needs to start and where a delivered call shows up


@dataclass
class Backends:
    """The loopback receivers and files that the plugins of one test send to."""

    tmp_path: Path
    request: pytest.FixtureRequest

    def settings(self, plugin: str) -> tuple[dict[str, Any], dict[str, str]]:
        """Return `callback_settings.<plugin>` and the environment it needs."""
        if plugin == "jsonl":
            return {"path": str(self.tmp_path / "events.jsonl")}, {}
        if plugin == "langfuse":
            receiver = self.request.getfixturevalue("langfuse_receiver")
            return {"host": receiver.host}, {"LANGFUSE_PUBLIC_KEY": receiver.public_key,
                                             "LANGFUSE_SECRET_KEY": receiver.secret_key}
        if plugin == "datadog":
            intake = self.request.getfixturevalue("datadog_intake")
            return {"url": intake.url}, {"DD_API_KEY": intake.api_key}
        if plugin == "otel":
            receiver = self.request.getfixturevalue("otlp_receiver")
            return {"endpoint": receiver.endpoint, "schedule_delay": 0.1}, {}
        return {}, {}

    def delivered_call_ids(self, plugin: str) -> set[str]:
        """Return the call ids that reached the plugin's backend (after the proxy stopped)."""
        if plugin == "jsonl":
            path = self.tmp_path / "events.jsonl"
            lines = path.read_text("utf-8").splitlines() if path.exists() else []
            return {json.loads(line)["call_id"] for line in lines}
        if plugin == "langfuse":
            return set(self.request.getfixturevalue("langfuse_receiver").traces())
        if plugin == "datadog":
            return set(self.request.getfixturevalue("datadog_intake").call_ids())
        if plugin == "otel":
            spans = self.request.getfixturevalue("otlp_receiver").spans
            return {span.trace_id for span in spans}
        raise ValueError(f"{plugin} has no backend to read, so check its /metrics instead")


def config_enabling(plugin: str, settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}],
        "litellm_settings": {"callbacks": [plugin]},
        "callback_settings": {plugin: settings},
        # The logger process runs from the installed wheels too: every plugin but
        # prometheus, which serves /metrics, is fed there.
        "hookgate_settings": {"shutdown_timeout": 5, "logger_process": True},
    }


@contextmanager
def serve_from(environment: Environment, config: dict[str, Any], variables: dict[str, str],
               directory: Path, timeout: float = 30.0) -> Iterator[RunningProxy]:
    """Start the environment's own `hookgate serve` on a free loopback port."""
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), "utf-8")
    port = free_port()
    command = [str(environment.hookgate), "serve", "--config", str(config_path),
               "--host", "127.0.0.1", "--port", str(port)]
    log_path = directory / "server.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                   env=clean_environment(PYTHONUNBUFFERED="1", **variables),
                                   cwd=directory)
    proxy = RunningProxy(process, port, log_path, config_path, directory)
    try:
        wait_ready(proxy, timeout)
        yield proxy
    finally:
        proxy.kill()


def wait_ready(proxy: RunningProxy, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proxy.process.poll() is not None:
            raise RuntimeError(f"hookgate serve exited during startup:\n{proxy.logs()}")
        try:
            with urllib.request.urlopen(proxy.base_url + "/health/readiness", timeout=1):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.05)
    raise RuntimeError(f"hookgate serve was not ready within {timeout} s:\n{proxy.logs()}")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def post_chat(base_url: str) -> str:
    """Send one chat completion and return its call id."""
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hello"}]})
    request = urllib.request.Request(base_url + "/v1/chat/completions", data=body.encode(),
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(response.headers["x-hookgate-call-id"])


def wait_for_request_count(base_url: str, parse: Callable[[str], Any], expected: float,
                           timeout: float = 10.0) -> float | None:
    """Scrape `/metrics` until the successful requests of model `m` reach `expected`.

    Returns the last value seen: the counter goes up when the event is dispatched,
    shortly after the response.
    """
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(base_url + "/metrics", timeout=10) as response:
            samples = parse(response.read().decode())
        value = samples.value("hookgate_requests_total", model="m", status="success")
        if value == expected or time.monotonic() > deadline:
            return value  # type: ignore[no-any-return]
        time.sleep(0.05)


def listed(callbacks: dict[str, list[str]]) -> set[str]:
    return {name for names in callbacks.values() for name in names}


def test_parent_site_hides_hookgate(environment: Environment) -> None:
    """Only the wheels installed here provide hookgate: core and proxy, no plugin."""
    probe = environment.probe("hookgate", "hookgate_proxy")
    site_packages = str(environment.site_packages)

    assert probe["modules"]["hookgate"].startswith(site_packages), probe
    assert probe["modules"]["hookgate_proxy"].startswith(site_packages), probe
    assert probe["entry_points"] == [], probe


@pytest.mark.parametrize("plugin", PLUGINS)
def test_wheel_install_cycle(plugin: str, environment: Environment, wheels: dict[str, Path],
                             tmp_path: Path, request: pytest.FixtureRequest,
                             parse_samples: Callable[[str], Any]) -> None:
    distribution = f"hookgate-{plugin}"
    backends = Backends(tmp_path, request)
    settings, variables = backends.settings(plugin)
    config = config_enabling(plugin, settings)

    installed = environment.pip("install", "--no-index", wheels[distribution])
    module = environment.probe(f"hookgate_{plugin}")["modules"][f"hookgate_{plugin}"]
    listing_installed = environment.plugins_listing()
    with serve_from(environment, config, variables, tmp_path / "installed") as proxy:
        callbacks_installed = get_json(proxy.base_url + "/callbacks/list")
        call_id = post_chat(proxy.base_url)
        requests_counted = None
        if plugin == "prometheus":
            requests_counted = wait_for_request_count(proxy.base_url, parse_samples, 1)
        exit_installed = proxy.stop()
        logs_installed = proxy.logs()
    delivered = set() if plugin == "prometheus" else backends.delivered_call_ids(plugin)

    uninstalled = environment.pip("uninstall", "--yes", distribution)
    listing_uninstalled = environment.plugins_listing()
    with serve_from(environment, config, variables, tmp_path / "uninstalled") as proxy:
        callbacks_uninstalled = get_json(proxy.base_url + "/callbacks/list")
        exit_uninstalled = proxy.stop()
        logs_uninstalled = proxy.logs()

    assert installed.returncode == 0, f"pip install {distribution} failed:\n{installed.stderr}"
    assert module is not None, f"hookgate_{plugin} is not importable after pip install"
    assert module.startswith(str(environment.site_packages)), (
        f"hookgate_{plugin} imports from {module}, not from the new environment")
    assert plugin in listing_installed, f"hookgate plugins --json lists {list(listing_installed)}"
    assert listing_installed[plugin]["status"] == "loaded", listing_installed[plugin]
    assert listing_installed[plugin]["distribution"] == distribution, listing_installed[plugin]
    assert exit_installed == 0, logs_installed
    assert listed(callbacks_installed) == {plugin}, (
        f"/callbacks/list with {distribution} installed: {callbacks_installed}\n{logs_installed}")
    if plugin == "prometheus":
        assert requests_counted == 1, f"/metrics counted {requests_counted} requests, sent 1"
        assert "logger process" not in logs_installed, logs_installed
    else:
        assert delivered == {call_id}, f"{plugin} backend received {delivered}, sent {call_id}"
        assert f"running {plugin}\n" in logs_installed, (
            f"{plugin} did not run in the logger process:\n{logs_installed}")

    assert uninstalled.returncode == 0, (
        f"pip uninstall {distribution} failed:\n{uninstalled.stderr}")
    assert plugin not in listing_uninstalled, (
        f"hookgate plugins --json still lists {plugin} after pip uninstall")
    assert exit_uninstalled == 0, logs_uninstalled
    assert listed(callbacks_uninstalled) == set(), (
        f"/callbacks/list after pip uninstall {distribution}: {callbacks_uninstalled}")
    assert f"callback {plugin} not active" in logs_uninstalled, logs_uninstalled
    assert f"entry point named {plugin!r}" in logs_uninstalled, logs_uninstalled

