"""A real Prometheus server scrapes the proxy's `/metrics` and returns the count on a query.

Prometheus comes from the Debian package `prometheus`. When it is missing and this
process runs as root on a machine with apt-get, the test installs it. Otherwise the
test is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

openai = pytest.importorskip("openai")
proxy_testing = pytest.importorskip("hookgate_proxy.testing")

MASTER_KEY = "sk-test-master"
INSTALL_TIMEOUT = 900
QUERY_TIMEOUT = 60.0


def prometheus_binary() -> str:
    """Return the path of the prometheus binary, installing the Debian package if needed."""
    found = shutil.which("prometheus")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("the prometheus binary is missing and cannot be installed here: run "
                    "`apt-get install prometheus` as root (Debian package)")

    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"],
                    ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"]):
        try:
            result = subprocess.run(command, capture_output=True, text=True, env=environment,
                                    timeout=INSTALL_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            pytest.skip(f"`{' '.join(command)}` did not finish within {INSTALL_TIMEOUT} s")
        if result.returncode != 0:
            pytest.skip(f"`{' '.join(command)}` failed with exit code {result.returncode}: "
                        f"{result.stderr.strip()[-500:]}")
    found = shutil.which("prometheus")
    if not found:
        pytest.skip("apt-get installed the prometheus package but no prometheus binary is "
                    "on PATH")
    return found


class PrometheusServer:
    """A Prometheus process on a free loopback port, started once its config is written."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.config_path = directory / "prometheus.yml"
        self.port = proxy_testing.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.directory / "prometheus.log").open("wb") as log:
            self.process = subprocess.Popen(
                [self.binary, f"--config.file={self.config_path}",
                 f"--storage.tsdb.path={self.directory / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def log(self) -> str:
        path = self.directory / "prometheus.log"
        return path.read_text("utf-8", "replace") if path.exists() else ""


@pytest.fixture
def prometheus_server(tmp_path: Path) -> Iterator[PrometheusServer]:
    """A Prometheus server, not yet started; stopped after the test."""
    server = PrometheusServer(prometheus_binary(), tmp_path)
    yield server
    server.stop()


def query(base_url: str, expression: str) -> list[dict[str, object]]:
    url = f"{base_url}/api/v1/query?{urllib.parse.urlencode({'query': expression})}"
    with urllib.request.urlopen(url, timeout=5) as response:
        payload = json.loads(response.read())
    assert payload["status"] == "success", payload
    return payload["data"]["result"]  # type: ignore[no-any-return]


@pytest.mark.slow
def test_prometheus_scrapes_counter(prometheus_server: PrometheusServer) -> None:
    proxy_config = {
        "model_list": [{"model_name": "m1", "litellm_params": {"model": "mock/m1"}}],
        "litellm_settings": {"callbacks": ["prometheus"]},
        "callback_settings": {"prometheus": {"token": "scrape-token"}},
        "general_settings": {"master_key": MASTER_KEY},
    }

    with proxy_testing.running_proxy(proxy_config) as proxy:
        client = openai.OpenAI(api_key=MASTER_KEY, base_url=proxy.base_url, max_retries=0)
        for _ in range(7):
            client.chat.completions.create(model="m1",
                                           messages=[{"role": "user", "content": "hi"}])

        prometheus_server.config_path.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  scrape_timeout: 1s\n"
            "scrape_configs:\n"
            "  - job_name: hookgate\n"
            "    authorization:\n"
            "      credentials: scrape-token\n"
            "    static_configs:\n"
            f"      - targets: ['127.0.0.1:{proxy.port}']\n", "utf-8")
        prometheus_server.start()

        expression = 'hookgate_requests_total{job="hookgate",model="m1",status="success"}'
        deadline = time.monotonic() + QUERY_TIMEOUT
        result: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            try:
                result = query(prometheus_server.url, expression)
            except OSError:
                result = []  # Prometheus is still starting.
            if result:
                break
            time.sleep(0.5)
        targets_url = f"{prometheus_server.url}/api/v1/targets"
        with urllib.request.urlopen(targets_url, timeout=5) as response:
            targets = json.loads(response.read())["data"]["activeTargets"]

    assert result, (f"Prometheus had no sample within {QUERY_TIMEOUT} s; targets: {targets}; "
                    f"log:\n{prometheus_server.log()}")
    assert float(result[0]["value"][1]) == 7  # type: ignore[index]
    assert targets[0]["health"] == "up"
