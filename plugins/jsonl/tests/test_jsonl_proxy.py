"""The jsonl logger inside a real `hookgate serve` on loopback, called with the OpenAI SDK."""

from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

openai = pytest.importorskip("openai")
proxy_testing = pytest.importorskip(
    "hookgate_proxy.testing", reason="hookgate-proxy is not installed; these tests run the "
    "jsonl logger inside the real proxy")

API_KEY = "sk-hookgate-canary-7f3a"
MESSAGES = [{"role": "user", "content": "canary prompt: where do penguins live"}]


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def config_with(settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}],
        "litellm_settings": {"callbacks": ["jsonl"]},
        "callback_settings": {"jsonl": settings},
    }


def test_default_config_logs_each_call(tmp_path):
    path = tmp_path / "events.jsonl"

    with proxy_testing.running_proxy(env={"HOOKGATE_JSONL_PATH": str(path)}) as proxy:
        client = openai.OpenAI(api_key=API_KEY, base_url=proxy.base_url, max_retries=0)
        client.chat.completions.create(model="gpt-test", messages=MESSAGES)
        chunks = client.chat.completions.create(
            model="gpt-test", messages=MESSAGES, stream=True,
            stream_options={"include_usage": True})
        answer = "".join(chunk.choices[0].delta.content or "" for chunk in chunks
                         if chunk.choices)
        exit_code = proxy.stop()
        logs = proxy.logs()

    assert exit_code == 0, logs
    assert str(path) in logs
    lines = read_lines(path)
    assert [line["hook"] for line in lines] == ["log_success", "log_success"]
    assert [line["stream"] for line in lines] == [False, True]
    assert all(line["model"] == "gpt-test" for line in lines)
    assert lines[1]["response"]["choices"][0]["message"]["content"] == answer
    assert lines[1]["usage"]["total_tokens"] > 0
    text = path.read_text("utf-8")
    assert API_KEY not in text
    assert "authorization" not in text.lower()


def test_config_settings_and_header(tmp_path):
    path = tmp_path / "events.jsonl"
    config = config_with({"path": str(path), "log_content": False, "max_bytes": 1_000_000,
                          "backups": 2})

    with proxy_testing.running_proxy(config) as proxy:
        client = openai.OpenAI(api_key=API_KEY, base_url=proxy.base_url, max_retries=0)
        kept = client.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
        client.chat.completions.create(
            model="m", messages=MESSAGES,
            extra_headers={"x-litellm-disable-callbacks": "jsonl"})
        with pytest.raises(openai.APIStatusError) as failure:
            client.chat.completions.create(model="does-not-exist", messages=MESSAGES)
        exit_code = proxy.stop()
        logs = proxy.logs()

    assert exit_code == 0, logs
    lines = read_lines(path)
    assert [line["hook"] for line in lines] == ["log_success", "log_failure"]
    assert lines[0]["call_id"] == kept.headers["x-hookgate-call-id"]
    assert lines[1]["model"] == "does-not-exist"
    assert lines[1]["error"]["status_code"] == failure.value.status_code
    assert all(line["messages"] == [] for line in lines)
    assert "canary prompt" not in path.read_text("utf-8")
    assert API_KEY not in path.read_text("utf-8")


def test_invalid_path_fails_plugin_only(tmp_path):
    path = tmp_path / "missing-dir" / "events.jsonl"

    with proxy_testing.running_proxy(config_with({"path": str(path)})) as proxy:
        with urllib.request.urlopen(proxy.base_url + "/callbacks/list", timeout=10) as reply:
            listing = json.load(reply)
        client = openai.OpenAI(api_key=API_KEY, base_url=proxy.base_url, max_retries=0)
        completion = client.chat.completions.create(model="m", messages=MESSAGES)
        proxy.stop()
        logs = proxy.logs()

    assert listing == {"success": [], "failure": [], "success_and_failure": []}
    assert completion.choices[0].message.content
    assert "callback_settings.jsonl.path" in logs
    assert not path.parent.exists()


def test_workers_share_one_file(tmp_path):
    path = tmp_path / "events.jsonl"
    config = config_with({"path": str(path), "max_bytes": 4_000, "backups": 100})
    count = 24

    def call(_: int) -> str:
        # A client per call opens a new connection, so the calls spread over the
        # workers instead of following one keep-alive connection to one worker.
        with openai.OpenAI(api_key=API_KEY, base_url=proxy.base_url, max_retries=0) as client:
            reply = client.chat.completions.with_raw_response.create(model="m",
                                                                     messages=MESSAGES)
            return reply.headers["x-hookgate-call-id"]

    with proxy_testing.running_proxy(config, args=["--workers", "2"]) as proxy:
        with ThreadPoolExecutor(4) as pool:
            call_ids = list(pool.map(call, range(count)))
        exit_code = proxy.stop()
        logs = proxy.logs()

    assert exit_code == 0, logs
    files = [path, *tmp_path.glob("events.jsonl.*")]
    lines = [line for file in files for line in read_lines(file)]
    assert sorted(line["call_id"] for line in lines) == sorted(call_ids)
    assert all(file.stat().st_size <= 4_000 for file in files)
