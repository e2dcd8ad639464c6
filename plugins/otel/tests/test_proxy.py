"""The otel logger inside a real `hookgate serve`, exporting to the loopback receiver."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest

openai = pytest.importorskip("openai")
proxy_testing = pytest.importorskip("hookgate_proxy.testing")

MASTER_KEY = "sk-test-master"
COLLECTOR_TOKEN = "collector-token"


def config(receiver: Any, **settings: Any) -> dict[str, Any]:
    return {
        "model_list": [
            {"model_name": "m1", "litellm_params": {"model": "mock/m1"}},
            {"model_name": "broken", "litellm_params": {"model": "mock/error-503"}},
        ],
        "litellm_settings": {"callbacks": ["otel"]},
        "callback_settings": {"otel": {
            "endpoint": receiver.endpoint,
            "headers": {"authorization": f"Bearer {COLLECTOR_TOKEN}"},
            **settings,
        }},
        "general_settings": {"master_key": MASTER_KEY},
    }


def test_proxy_exports_spans(receiver: Any) -> None:
    receiver.token = COLLECTOR_TOKEN
    with proxy_testing.running_proxy(config(receiver, schedule_delay=0.1,
                                            service_name="gateway-test")) as proxy:
        client = openai.OpenAI(api_key=MASTER_KEY, base_url=proxy.base_url, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="m1", messages=[{"role": "user", "content": "say something"}])
        call_id = raw.headers["x-hookgate-call-id"]
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(model="broken",
                                           messages=[{"role": "user", "content": "fail"}])
        spans = receiver.wait_for_spans(2)
        assert proxy.stop() == 0

    by_status = {span.attributes["hookgate.status"]: span for span in spans}
    success, failure = by_status["success"], by_status["failure"]
    assert success.trace_id == call_id
    assert success.name == "chat m1"
    assert success.resource["service.name"] == "gateway-test"
    assert success.attributes["gen_ai.provider.name"] == "mock"
    assert success.attributes["gen_ai.usage.input_tokens"] == 2
    assert "say something" in success.attributes["gen_ai.input.messages"]
    assert failure.attributes["error.type"]
    assert failure.attributes["http.response.status_code"] == 503
    assert MASTER_KEY not in repr([span.attributes for span in spans])


def otel_health(base_url: str) -> dict[str, Any]:
    request = urllib.request.Request(base_url + "/callbacks/status",
                                     headers={"Authorization": f"Bearer {MASTER_KEY}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        plugins = json.loads(response.read())["plugins"]
    return next(plugin["health"] for plugin in plugins if plugin["name"] == "otel")


def test_proxy_health_shows_rejection(receiver: Any) -> None:
    receiver.token = "another-token"
    with proxy_testing.running_proxy(config(receiver, schedule_delay=0.1)) as proxy:
        client = openai.OpenAI(api_key=MASTER_KEY, base_url=proxy.base_url, max_retries=0)
        client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "hi"}])
        receiver.wait_for_requests(1)
        deadline = time.monotonic() + 10
        health = otel_health(proxy.base_url)
        while health["failed"] < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
            health = otel_health(proxy.base_url)
        assert proxy.stop() == 0

    assert health["backend"] == "credentials rejected"
    assert health["last_status"] == 401
    assert health["failed"] == 1
    assert COLLECTOR_TOKEN not in json.dumps(health)
    assert [request.status for request in receiver.requests] == [401]


def test_proxy_log_content_false(receiver: Any) -> None:
    with proxy_testing.running_proxy(config(receiver, schedule_delay=0.1,
                                            log_content=False)) as proxy:
        client = openai.OpenAI(api_key=MASTER_KEY, base_url=proxy.base_url, max_retries=0)
        client.chat.completions.create(model="m1",
                                       messages=[{"role": "user", "content": "private words"}])
        chunks = client.chat.completions.create(
            model="m1", messages=[{"role": "user", "content": "private stream"}], stream=True)
        assert list(chunks)
        spans = receiver.wait_for_spans(2)
        assert proxy.stop() == 0

    for span in spans:
        assert "gen_ai.input.messages" not in span.attributes
        assert "gen_ai.output.messages" not in span.attributes
        assert "private" not in repr(span.attributes)


def test_sigterm_delivers_queued_spans(receiver: Any) -> None:
    # A schedule delay far beyond the test: only the shutdown flush can send them.
    with proxy_testing.running_proxy(config(receiver, schedule_delay=600)) as proxy:
        client = openai.OpenAI(api_key=MASTER_KEY, base_url=proxy.base_url, max_retries=0)
        call_ids = []
        for index in range(50):
            raw = client.chat.completions.with_raw_response.create(
                model="m1", messages=[{"role": "user", "content": f"request {index}"}])
            call_ids.append(raw.headers["x-hookgate-call-id"])
        assert receiver.spans == []

        assert proxy.stop() == 0
        logs = proxy.logs()

    assert sorted(span.trace_id for span in receiver.spans) == sorted(call_ids)
    assert "no span left unsent (50 exported since startup)" in logs


def test_sigterm_backend_down_reports_unsent(receiver: Any) -> None:
    proxy_config = config(receiver, schedule_delay=600, timeout=30)
    proxy_config["hookgate_settings"] = {"shutdown_timeout": 2}
    with proxy_testing.running_proxy(proxy_config) as proxy:
        client = openai.OpenAI(api_key=MASTER_KEY, base_url=proxy.base_url, max_retries=0)
        for _ in range(5):
            client.chat.completions.create(model="m1",
                                           messages=[{"role": "user", "content": "hello"}])
        receiver.stop()

        assert proxy.stop() == 0
        logs = proxy.logs()

    assert "5 spans not exported before the shutdown deadline" in logs
