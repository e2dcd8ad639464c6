"""The Langfuse logger inside a real `hookgate serve` on loopback, called with the OpenAI SDK."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest

openai = pytest.importorskip("openai")
proxy_testing = pytest.importorskip(
    "hookgate_proxy.testing", reason="hookgate-proxy is not installed; these tests run the "
    "langfuse logger inside the real proxy")

CLIENT_KEY = "sk-client-canary-5d1e"
MESSAGES = [{"role": "user", "content": "canary prompt: name a river"}]


def config_for(receiver: Any, **settings: Any) -> dict[str, Any]:
    return {
        "model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}],
        "litellm_settings": {"callbacks": ["langfuse"]},
        "callback_settings": {"langfuse": {"host": receiver.host, **settings}},
        "hookgate_settings": {"shutdown_timeout": 5},
    }


def keys_env(receiver: Any) -> dict[str, str]:
    return {"LANGFUSE_PUBLIC_KEY": receiver.public_key,
            "LANGFUSE_SECRET_KEY": receiver.secret_key}


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def wait_for_submitted(base_url: str, count: int, timeout: float = 10.0) -> dict[str, Any]:
    """Poll `/callbacks/status` until the langfuse plugin has received `count` calls."""
    deadline = time.monotonic() + timeout
    while True:
        status = get_json(base_url + "/callbacks/status")
        health = next(plugin["health"] for plugin in status["plugins"]
                      if plugin["name"] == "langfuse")
        if health["submitted"] >= count or time.monotonic() > deadline:
            return dict(health)
        time.sleep(0.05)


def test_calls_delivered_at_sigterm(langfuse_receiver: Any) -> None:
    """Case: a long flush interval, 50 calls, then SIGTERM: all 50 delivered."""
    config = config_for(langfuse_receiver, flush_interval=3600)

    with proxy_testing.running_proxy(config, env=keys_env(langfuse_receiver)) as proxy:
        client = openai.OpenAI(api_key=CLIENT_KEY, base_url=proxy.base_url, max_retries=0)
        call_ids = []
        for _ in range(50):
            raw = client.chat.completions.with_raw_response.create(model="m",
                                                                   messages=MESSAGES)
            call_ids.append(raw.headers["x-hookgate-call-id"])
        skipped = client.chat.completions.with_raw_response.create(
            model="m", messages=MESSAGES,
            extra_headers={"x-litellm-disable-callbacks": "langfuse"})
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(model="does-not-exist", messages=MESSAGES)
        listing = get_json(proxy.base_url + "/callbacks/list")
        received_before_stop = len(langfuse_receiver.traces())
        exit_code = proxy.stop()
        logs = proxy.logs()

    traces = langfuse_receiver.traces()
    generations = langfuse_receiver.generations()
    assert exit_code == 0, logs
    assert listing["success_and_failure"] == ["langfuse"]
    assert received_before_stop == 0
    assert set(call_ids) <= set(traces)
    assert len(traces) == 51
    assert skipped.headers["x-hookgate-call-id"] not in traces
    assert sorted(body["level"] for body in generations.values()).count("ERROR") == 1
    assert langfuse_receiver.repeats == 0
    for body in langfuse_receiver.raw_bodies:
        assert CLIENT_KEY.encode() not in body
        assert langfuse_receiver.secret_key.encode() not in body
    assert langfuse_receiver.secret_key not in logs
    assert CLIENT_KEY not in logs


def test_undelivered_calls_logged_at_sigterm(make_receiver: Any) -> None:
    """Case: shutdown with the backend down: each undelivered call is counted and logged."""
    receiver = make_receiver()
    receiver.stop()
    config = config_for(receiver, flush_interval=3600, max_attempts=100, max_retry_delay=0.5)
    config["hookgate_settings"]["shutdown_timeout"] = 2

    with proxy_testing.running_proxy(config, env=keys_env(receiver)) as proxy:
        client = openai.OpenAI(api_key=CLIENT_KEY, base_url=proxy.base_url, max_retries=0)
        call_ids = []
        for _ in range(10):
            raw = client.chat.completions.with_raw_response.create(model="m",
                                                                   messages=MESSAGES)
            call_ids.append(raw.headers["x-hookgate-call-id"])
        health = wait_for_submitted(proxy.base_url, 10)
        exit_code = proxy.stop()
        logs = proxy.logs()

    assert exit_code == 0, logs
    assert health["queued"] == 10
    for call_id in call_ids:
        assert call_id in logs
    assert "10 entries not sent" in logs
    assert "flush failed or not confirmed for: langfuse" in logs
    assert receiver.secret_key not in logs


def test_missing_keys_leave_proxy_running(langfuse_receiver: Any, langfuse_env: None) -> None:
    config = config_for(langfuse_receiver)

    with proxy_testing.running_proxy(config) as proxy:
        client = openai.OpenAI(api_key=CLIENT_KEY, base_url=proxy.base_url, max_retries=0)
        reply = client.chat.completions.create(model="m", messages=MESSAGES)
        status = get_json(proxy.base_url + "/callbacks/status")
        listing = get_json(proxy.base_url + "/callbacks/list")
        exit_code = proxy.stop()
        logs = proxy.logs()

    langfuse = next(plugin for plugin in status["plugins"] if plugin["name"] == "langfuse")
    assert exit_code == 0, logs
    assert reply.choices[0].message.content
    assert langfuse["status"] == "not configured"
    assert "LANGFUSE_PUBLIC_KEY" in langfuse["error"]
    assert "LANGFUSE_SECRET_KEY" in langfuse["error"]
    assert listing["success_and_failure"] == []
    assert langfuse_receiver.requests == 0
