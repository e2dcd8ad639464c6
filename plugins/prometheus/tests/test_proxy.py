"""The prometheus logger inside a real `hookgate serve`, one worker and two."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

openai = pytest.importorskip("openai")
proxy_testing = pytest.importorskip("hookgate_proxy.testing")

MASTER_KEY = "sk-test-master"


def config(**settings: Any) -> dict[str, Any]:
    return {
        "model_list": [
            {"model_name": "m1", "litellm_params": {"model": "mock/m1"}},
            {"model_name": "broken", "litellm_params": {"model": "mock/error-503"}},
        ],
        "litellm_settings": {"callbacks": ["prometheus"]},
        "callback_settings": {"prometheus": settings},
        "general_settings": {"master_key": MASTER_KEY},
    }


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def wait_for_value(read: Callable[[], float | None], expected: float,
                   timeout: float = 10.0) -> float | None:
    deadline = time.monotonic() + timeout
    value = read()
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.1)
        value = read()
    return value


def worker_pids(directory: Path) -> set[str]:
    """Return the process ids that wrote counter files (`counter_<pid>.db`)."""
    return {path.stem.rsplit("_", 1)[-1] for path in directory.glob("counter_*.db")}


def test_single_worker_counts(parse_metrics: Callable[[str], Any]) -> None:
    with proxy_testing.running_proxy(config()) as proxy:
        client = openai.OpenAI(api_key=MASTER_KEY, base_url=proxy.base_url, max_retries=0)
        messages = [{"role": "user", "content": "count these four words"}]
        for _ in range(3):
            client.chat.completions.create(model="m1", messages=messages)
        chunks = client.chat.completions.create(
            model="m1", messages=messages, stream=True, stream_options={"include_usage": True})
        assert list(chunks)
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(model="broken", messages=messages)
        client.chat.completions.create(
            model="m1", messages=messages,
            extra_headers={"x-litellm-disable-callbacks": "prometheus"})

        def delivered() -> float | None:
            samples = parse_metrics(fetch(proxy.base_url + "/metrics"))
            return samples.value("hookgate_callback_delivered_total", callback="prometheus")

        # Events reach the logger after the responses, in order: once all five (four
        # successes and the failure) are delivered, every counter below is final.
        assert wait_for_value(delivered, 5) == 5
        samples = parse_metrics(fetch(proxy.base_url + "/metrics"))
        assert proxy.stop() == 0

    assert samples.value("hookgate_requests_total", model="broken", status="failure") == 1
    assert samples.value("hookgate_prompt_tokens_total", model="m1") == 16
    assert samples.value("hookgate_time_to_first_token_seconds_count", model="m1") == 1
    assert samples.value("hookgate_request_duration_seconds_count", model="m1",
                         status="success") == 4
    assert samples.value("hookgate_callback_delivered_total", callback="prometheus") == 5


@pytest.mark.slow
@pytest.mark.parametrize("directory_from", ["operator", "proxy"])
def test_two_workers_aggregate(tmp_path: Path, parse_metrics: Callable[[str], Any],
                               directory_from: str) -> None:
    environment = {"PROMETHEUS_MULTIPROC_DIR": ""}
    if directory_from == "operator":
        chosen = tmp_path / "prometheus-multiproc"
        chosen.mkdir()
        (chosen / "counter_999999.db").write_bytes(b"left by an earlier run")
        environment["PROMETHEUS_MULTIPROC_DIR"] = str(chosen)

    with proxy_testing.running_proxy(config(sync_interval=0.2), env=environment,
                                     args=["--workers", "2"], startup_timeout=60) as proxy:
        announced = re.search(r"prometheus multiprocess directory (\S+)", proxy.logs())
        assert announced is not None, f"no multiprocess directory in the log:\n{proxy.logs()}"
        directory = Path(announced.group(1))
        assert not (directory / "counter_999999.db").exists()

        def call(_: int) -> None:
            # A client per call opens a new connection, so either worker may accept it.
            with openai.OpenAI(api_key=MASTER_KEY, base_url=proxy.base_url,
                               max_retries=0) as client:
                client.chat.completions.create(
                    model="m1", messages=[{"role": "user", "content": "hello"}])

        sent = 0
        with ThreadPoolExecutor(max_workers=4) as pool:
            # Both workers must have written counts; keep sending (bounded) until they have.
            while sent < 200:
                list(pool.map(call, range(20)))
                sent += 20
                if len(worker_pids(directory)) >= 2:
                    break

        def total(name: str, **labels: str) -> Callable[[], float | None]:
            return lambda: parse_metrics(fetch(proxy.base_url + "/metrics")).value(name, **labels)

        # Events reach the logger after the responses: wait until every worker has
        # delivered them all before comparing scrapes.
        delivered = wait_for_value(
            total("hookgate_callback_delivered_total", callback="prometheus"), sent)
        pids = worker_pids(directory)
        requests_seen = [total("hookgate_requests_total", model="m1", status="success")()
                         for _ in range(6)]
        assert proxy.stop() == 0

    assert len(pids) == 2
    # Whichever worker serves a scrape, it reports the sum over both workers.
    assert requests_seen == [sent] * 6
    assert delivered == sent
    if directory_from == "proxy":
        assert not directory.exists(), "the proxy should remove the directory it created"
