"""The Datadog logger inside a real `hookgate serve` on loopback, called with the OpenAI SDK."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest

openai = pytest.importorskip("openai")
proxy_testing = pytest.importorskip(
    "hookgate_proxy.testing", reason="hookgate-proxy is not installed; these tests run the "
    "datadog logger inside the real proxy")

CLIENT_KEY = "sk-client-canary-8b2c"
MESSAGES = [{"role": "user", "content": "canary prompt: name a mountain"}]


def config_for(intake: Any, **settings: Any) -> dict[str, Any]:
    return {
        "model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}],
        "litellm_settings": {"callbacks": ["datadog"]},
        "callback_settings": {"datadog": {"url": intake.url, "service": "gw", **settings}},
        "hookgate_settings": {"shutdown_timeout": 5},
    }


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_calls_delivered_at_sigterm(intake: Any) -> None:
    """Case: a long flush interval, 50 calls, then SIGTERM: all 50 delivered."""
    config = config_for(intake, flush_interval=3600)

    with proxy_testing.running_proxy(config, env={"DD_API_KEY": intake.api_key}) as proxy:
        client = openai.OpenAI(api_key=CLIENT_KEY, base_url=proxy.base_url, max_retries=0)
        call_ids = []
        for _ in range(50):
            raw = client.chat.completions.with_raw_response.create(model="m",
                                                                   messages=MESSAGES)
            call_ids.append(raw.headers["x-hookgate-call-id"])
        skipped = client.chat.completions.with_raw_response.create(
            model="m", messages=MESSAGES,
            extra_headers={"x-litellm-disable-callbacks": "datadog"})
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(model="does-not-exist", messages=MESSAGES)
        listing = get_json(proxy.base_url + "/callbacks/list")
        received_before_stop = len(intake.logs())
        exit_code = proxy.stop()
        logs = proxy.logs()

    received = intake.call_ids()
    statuses = [log["status"] for log in intake.logs()]
    assert exit_code == 0, logs
    assert listing["success_and_failure"] == ["datadog"]
    assert received_before_stop == 0
    assert set(call_ids) <= set(received)
    assert len(received) == 51
    assert len(set(received)) == 51
    assert skipped.headers["x-hookgate-call-id"] not in received
    assert statuses.count("error") == 1
    assert all("service:gw" in log["ddtags"].split(",") for log in intake.logs())
    for payload in intake.raw_payloads:
        assert CLIENT_KEY.encode() not in payload
        assert intake.api_key.encode() not in payload
    assert intake.api_key not in logs
    assert CLIENT_KEY not in logs


def test_wrong_key_shown_in_status(intake: Any) -> None:
    config = config_for(intake, flush_interval=0.05)

    with proxy_testing.running_proxy(config, env={"DD_API_KEY": "wrong-key-1234"}) as proxy:
        client = openai.OpenAI(api_key=CLIENT_KEY, base_url=proxy.base_url, max_retries=0)
        client.chat.completions.create(model="m", messages=MESSAGES)
        rejected = None
        for _ in range(100):
            status = get_json(proxy.base_url + "/callbacks/status")
            datadog = next(plugin for plugin in status["plugins"]
                           if plugin["name"] == "datadog")
            if datadog["health"]["failed"]:
                rejected = datadog
                break
            time.sleep(0.05)
        exit_code = proxy.stop()
        logs = proxy.logs()

    assert exit_code == 0, logs
    assert rejected is not None, logs
    assert rejected["health"]["backend"] == "credentials rejected"
    assert rejected["health"]["last_status"] == 403
    assert intake.statuses == [403]
    assert "wrong-key-1234" not in logs
