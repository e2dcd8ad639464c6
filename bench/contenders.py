"""The servers under test: the minimal FastAPI proxy, hookgate and the LiteLLM proxy.

Every contender reads the same `model_list` and `general_settings` from a
LiteLLM-format config file. Only the callbacks section differs: hookgate names
its plugins, and LiteLLM loads one no-op `CustomLogger` from a Python file next
to its config. Every server listens on 127.0.0.1 only, runs in its own process
group (so that stopping it stops its workers too) and writes its output to a log
file in its own temporary directory.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from mock_provider import MODEL, MockProvider
from procutil import free_port, stop_process, wait_for_port

logger = logging.getLogger(__name__)

BENCH_DIR = Path(__file__).resolve().parent
MASTER_KEY = "sk-bench-master"
UPSTREAM_KEY = "sk-bench-upstream"
STREAM_MODEL = "bench-stream"

SERVER_CPUS: set[int] | None = None
"""CPUs that single-worker servers are pinned to, or None. `run.py` sets it unless --no-pin."""
LOAD_SIDE_CPUS: set[int] | None = None
"""CPUs of the mock, the receivers and the load drivers, or None when nothing is pinned."""

LITELLM_VERSION = "1.100.5"
LITELLM_REQUIREMENT = f"litellm[proxy]=={LITELLM_VERSION}"
DEFAULT_CACHE = BENCH_DIR / ".cache"


@dataclass
class Server:
    """One running contender."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    workdir: Path
    description: str
    notes: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        path = self.workdir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        stop_process(self.process)
        shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass
class Target:
    """One contender as the load driver addresses it: a server plus request headers."""

    name: str
    label: str
    server: str
    """Key of the running server (in `Bench.servers`) that serves this contender."""
    headers: dict[str, str] = field(default_factory=dict)
    loggers: tuple[str, ...] = ()
    """Loggers that must receive every successful request of this contender."""


def base_config(mock: MockProvider) -> dict[str, Any]:
    """Return the config part that every contender shares: models and the master key."""
    return {
        "model_list": [
            {"model_name": MODEL, "litellm_params": {
                "model": f"openai/{MODEL}", "api_base": mock.api_base, "api_key": UPSTREAM_KEY}},
            {"model_name": STREAM_MODEL, "litellm_params": {
                "model": f"openai/{MODEL}", "api_base": mock.stream_api_base,
                "api_key": UPSTREAM_KEY}},
        ],
        "general_settings": {"master_key": MASTER_KEY},
    }


def _write_config(workdir: Path, config: dict[str, Any]) -> Path:
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _launch(name: str, command: list[str], workdir: Path, port: int, description: str,
            env: dict[str, str] | None = None, ready_path: str | None = None,
            timeout: float = 60.0, pin: bool = True) -> Server:
    log = (workdir / "server.log").open("wb")
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    # The harness itself may be pinned to the load-side CPU, so a server that is not
    # pinned to SERVER_CPUS gets every CPU back.
    cpus = SERVER_CPUS if pin and SERVER_CPUS else set(range(os.cpu_count() or 1))
    process = subprocess.Popen(command, cwd=workdir, env=environment, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True,
                               preexec_fn=lambda: os.sched_setaffinity(0, cpus))
    log.close()
    server = Server(name, port, process, workdir, description)
    try:
        wait_for_port(port, process, timeout)
        if ready_path:
            _wait_http_ok(server.base_url + ready_path, process, timeout)
    except RuntimeError as error:
        output = server.log_text()
        server.stop()
        raise RuntimeError(f"{name} failed to start: {error}\n{output[-3000:]}") from None
    logger.info("%s listening on %s", name, server.base_url)
    return server


def _wait_http_ok(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    import time

    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as error:
            last_error = str(error)
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f} s: {last_error}")


# The minimal FastAPI proxy

def start_minimal(mock: MockProvider, client: str = "aiohttp", name: str = "minimal") -> Server:
    """Start `minimal_proxy.py` with uvicorn's uvloop and httptools where installed."""
    workdir = Path(tempfile.mkdtemp(prefix=f"hookgate-bench-{name}-"))
    config = _write_config(workdir, base_config(mock))
    port = free_port()
    loop, http = server_options()
    command = [sys.executable, str(BENCH_DIR / "minimal_proxy.py"), "--config", str(config),
               "--port", str(port), "--client", client, "--loop", loop, "--http", http]
    return _launch(name, command, workdir, port,
                   f"minimal FastAPI proxy, upstream client {client}, uvicorn --loop {loop} "
                   f"--http {http}, no logging")


def server_options() -> tuple[str, str]:
    """Return uvicorn's `--loop` and `--http` choices: the fast ones if installed."""
    import importlib.util

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return loop, http


# hookgate

def hookgate_available() -> str | None:
    """Return None if `hookgate serve` can run, else the reason it cannot."""
    import importlib.util

    if importlib.util.find_spec("hookgate_proxy") is None:
        return "hookgate-proxy is not installed (pip install -e proxy)"
    if importlib.util.find_spec("hookgate_proxy.cli") is None:
        return "hookgate_proxy.cli does not exist yet, so `hookgate serve` cannot run"
    return None


def start_hookgate(mock: MockProvider, name: str, callbacks: dict[str, dict[str, Any]],
                   workers: int = 1, env: dict[str, str] | None = None,
                   settings: dict[str, Any] | None = None) -> Server:
    """Start `hookgate serve` with the shared config plus the given callbacks and settings.

    `settings` becomes the config's `hookgate_settings`.
    """
    workdir = Path(tempfile.mkdtemp(prefix=f"hookgate-bench-{name}-"))
    config = base_config(mock)
    if callbacks:
        config["litellm_settings"] = {"callbacks": list(callbacks)}
        config["callback_settings"] = {key: value for key, value in callbacks.items() if value}
    if settings:
        config["hookgate_settings"] = settings
    path = _write_config(workdir, config)
    port = free_port()
    command = [sys.executable, "-m", "hookgate_proxy", "serve", "--config", str(path),
               "--host", "127.0.0.1", "--port", str(port)]
    if workers != 1:
        command += ["--workers", str(workers)]
    description = (f"hookgate serve, {workers} worker{'s' if workers != 1 else ''}, "
                   f"callbacks: {', '.join(callbacks) or 'none'}")
    if settings and settings.get("gc_tuning") is False:
        description += ", Python's default garbage-collector settings (`gc_tuning: false`)"
    if settings and settings.get("logger_process"):
        cpus = settings.get("logger_process_cpus")
        description += (", loggers in a logger process" +
                        (f" on CPU {cpus}" if cpus else ""))
    return _launch(name, command, workdir, port, description, env=env,
                   ready_path="/health/readiness", pin=workers == 1)


# The LiteLLM proxy

NOOP_LOGGER = '''"""One no-op custom logger for the LiteLLM proxy benchmark contender."""

from litellm.integrations.custom_logger import CustomLogger


class NoopLogger(CustomLogger):
    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        return None

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        return None


proxy_handler_instance = NoopLogger()
'''


def litellm_venv(cache: Path) -> Path:
    return cache / f"litellm-{LITELLM_VERSION}"


def ensure_litellm(cache: Path, install: bool) -> Path:
    """Return the `litellm` executable, creating its virtual environment if needed.

    Raises RuntimeError with pip's output if the pinned version cannot be installed.
    """
    venv = litellm_venv(cache)
    executable = venv / "bin" / "litellm"
    marker = venv / ".installed"
    if executable.exists() and marker.exists():
        return executable
    if not install:
        raise RuntimeError(f"{LITELLM_REQUIREMENT} is not installed in {venv} and "
                           f"--no-install was given")
    logger.info("installing %s into %s (a few minutes)", LITELLM_REQUIREMENT, venv)
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    result = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet",
                             LITELLM_REQUIREMENT], capture_output=True, text=True)
    if result.returncode != 0 or not executable.exists():
        raise RuntimeError(f"pip install {LITELLM_REQUIREMENT} failed with status "
                           f"{result.returncode}: {result.stderr.strip()[-3000:]}")
    marker.write_text(LITELLM_REQUIREMENT + "\n")
    return executable


def start_litellm(mock: MockProvider, executable: Path) -> Server:
    """Start the LiteLLM proxy, one worker, with one no-op logger and no outside calls."""
    workdir = Path(tempfile.mkdtemp(prefix="hookgate-bench-litellm-"))
    (workdir / "custom_callbacks.py").write_text(NOOP_LOGGER)
    config = base_config(mock)
    config["litellm_settings"] = {"callbacks": "custom_callbacks.proxy_handler_instance"}
    path = _write_config(workdir, config)
    port = free_port()
    env = {
        # Use the model cost map shipped in the package instead of downloading it.
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
    }
    command = [str(executable), "--config", str(path), "--host", "127.0.0.1",
               "--port", str(port), "--num_workers", "1", "--telemetry", "False"]
    return _launch("litellm", command, workdir, port,
                   f"LiteLLM proxy {LITELLM_VERSION}, 1 worker, one no-op CustomLogger",
                   env=env, ready_path="/health/readiness", timeout=180)


def outside_connections(pid: int) -> list[str]:
    """Return the TCP peers of `pid`'s process tree that are not on loopback."""
    from procutil import descendants

    inodes: set[str] = set()
    for member in descendants(pid):
        fd_dir = Path(f"/proc/{member}/fd")
        try:
            for fd in fd_dir.iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    peers = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            remote, inode = fields[2], fields[9]
            if inode not in inodes:
                continue
            address = remote.split(":")[0]
            if set(address) == {"0"}:
                continue  # a listening socket
            if table.endswith("tcp") and address.endswith("7F"):
                continue  # 127.x.x.x in little-endian hex
            if table.endswith("tcp6") and address in ("00000000000000000000000001000000",
                                                      "0000000000000000FFFF00000100007F"):
                continue  # ::1 and ::ffff:127.0.0.1
            peers.append(remote)
    return peers
