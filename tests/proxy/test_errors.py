"""Authentication, error responses and their failure events, end to end."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from hookgate_proxy.testing import FakeOpenAIServer, RunningProxy, free_port, running_proxy

MASTER_KEY = "sk-errors-31d0"
LOGGERS = ("langfuse", "datadog", "recorder")


@pytest.fixture(scope="module")
def recorders(make_recorders: Any) -> Any:
    return make_recorders(("langfuse", "datadog"), entry_point_names=("recorder",))


@pytest.fixture(scope="module")
def proxy(upstream: FakeOpenAIServer, recorders: Any) -> Iterator[RunningProxy]:
    def openai_model(name: str, api_base: str, **params: Any) -> dict[str, Any]:
        return {"model_name": name, "litellm_params": {
            "model": "openai/fake-model", "api_base": api_base, "api_key": "sk-up", **params}}

    config = {
        "model_list": [
            openai_model("gpt-test", upstream.base_url),
            openai_model("gpt-slow", upstream.base_url, timeout=1),
            # Nothing listens on this loopback port, so connecting is refused.
            openai_model("gpt-down", f"http://127.0.0.1:{free_port()}/v1"),
            {"model_name": "mock-503", "litellm_params": {"model": "mock/error-503"}},
            {"model_name": "text-embedding", "litellm_params": {
                "model": "openai/fake-embedding", "api_base": upstream.base_url}},
        ],
        "litellm_settings": {"callbacks": list(LOGGERS)},
        "general_settings": {"master_key": MASTER_KEY},
        **recorders.config(),
    }
    with running_proxy(config, env=recorders.env()) as server:
        yield server


@pytest.fixture(scope="module")
def client(proxy: RunningProxy) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=proxy.base_url, timeout=30,
                      headers={"authorization": f"Bearer {MASTER_KEY}"}) as http:
        yield http


MESSAGES = [{"role": "user", "content": "hello"}]


def events_for(recorders: Any, call_id: str) -> dict[str, list[str]]:
    """Wait for every logger's event for `call_id`; return the hooks each received."""
    for name in LOGGERS:
        recorders.wait(name, call_id)
    time.sleep(0.1)  # room for a wrong second event to show
    return {name: [record["hook"] for record in recorders.events(name, call_id)]
            for name in LOGGERS}


# Authentication


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 401),
    ({"authorization": "Bearer sk-wrong"}, 401),
    ({"x-litellm-api-key": "sk-wrong"}, 401),
    ({"authorization": MASTER_KEY}, 200),
    ({"authorization": f"Bearer {MASTER_KEY}"}, 200),
    ({"x-litellm-api-key": MASTER_KEY}, 200),
    ({"x-litellm-api-key": f"Bearer {MASTER_KEY}"}, 200),
    ({"authorization": "Bearer sk-wrong", "x-litellm-api-key": MASTER_KEY}, 200),
], ids=["none", "wrong-bearer", "wrong-litellm-key", "bare-key", "bearer", "litellm-key",
        "litellm-key-bearer", "sdk-default-plus-litellm-key"])
def test_auth(proxy: RunningProxy, headers: dict[str, str], status: int) -> None:
    response = httpx.post(proxy.base_url + "/v1/chat/completions", headers=headers,
                          json={"model": "gpt-test", "messages": MESSAGES})

    assert response.status_code == status
    if status == 401:
        assert response.json()["error"]["type"] == "authentication_error"


def test_auth_failure_logs_no_event(proxy: RunningProxy, recorders: Any) -> None:
    httpx.post(proxy.base_url + "/chat/completions",
               json={"model": "auth-probe", "messages": MESSAGES})
    response = httpx.post(proxy.base_url + "/chat/completions",
                          headers={"x-litellm-api-key": MASTER_KEY},
                          json={"model": "gpt-test", "messages": MESSAGES})
    recorders.wait("recorder", response.headers["x-hookgate-call-id"])
    time.sleep(0.1)

    models = [record["event"]["model"] for record in recorders.events("recorder")]
    assert "auth-probe" not in models


@pytest.mark.parametrize("path", ["/health/liveliness", "/health/readiness"])
def test_health_routes_open(proxy: RunningProxy, path: str) -> None:
    assert httpx.get(proxy.base_url + path).status_code == 200


@pytest.mark.parametrize("path", ["/models", "/callbacks/list", "/callbacks/status"])
def test_admin_routes_need_key(proxy: RunningProxy, path: str) -> None:
    assert httpx.get(proxy.base_url + path).status_code == 401


def test_sdk_wrong_key(proxy: RunningProxy) -> None:
    client = openai.OpenAI(api_key="sk-wrong", base_url=proxy.base_url, max_retries=0)

    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-test", messages=MESSAGES)


# Errors after authentication: each gives an OpenAI error body and one failure event


@pytest.mark.parametrize(("content", "status", "kind"), [
    (b"{not json", 400, "InvalidJSON"),
    (b"[1, 2]", 400, "InvalidRequest"),
    (b'{"messages": [{"role": "user", "content": "hi"}]}', 400, "InvalidRequest"),
    (b'{"model": "gpt-test"}', 400, "InvalidRequest"),
    (b'{"model": "gpt-test", "messages": []}', 400, "InvalidRequest"),
    (b'{"model": "does-not-exist", "messages": [{"role": "user", "content": "hi"}]}', 404,
     "ModelNotFound"),
    (b'{"model": "mock-503", "messages": [{"role": "user", "content": "hi"}]}', 503,
     "ProviderError"),
    (b'{"model": "gpt-down", "messages": [{"role": "user", "content": "hi"}]}', 502,
     "ProviderUnavailable"),
], ids=["invalid-json", "not-object", "missing-model", "missing-messages", "empty-messages",
        "unknown-model", "provider-status", "connection-refused"])
def test_error_cases(client: httpx.Client, recorders: Any, content: bytes, status: int,
                     kind: str) -> None:
    response = client.post("/chat/completions", content=content,
                           headers={"content-type": "application/json"})
    call_id = response.headers["x-hookgate-call-id"]
    hooks = events_for(recorders, call_id)
    event = recorders.events("recorder", call_id)[0]["event"]

    assert response.status_code == status
    assert set(response.json()) == {"error"}
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert hooks == {name: ["log_failure"] for name in LOGGERS}
    assert event["error"]["type"] == kind
    assert event["error"]["status_code"] == status
    assert event["error"]["message"] == response.json()["error"]["message"]


def test_unknown_model_lists_served(client: httpx.Client, recorders: Any) -> None:
    response = client.post("/chat/completions",
                           json={"model": "does-not-exist", "messages": MESSAGES})
    message = response.json()["error"]["message"]

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
    for name in ("gpt-test", "gpt-slow", "mock-503"):
        assert name in message


@pytest.mark.parametrize("status", [500, 429, 400])
def test_upstream_status_passed_on(client: httpx.Client, recorders: Any,
                                   fresh_upstream: FakeOpenAIServer, status: int) -> None:
    fresh_upstream.fail_status = status
    response = client.post("/chat/completions", json={"model": "gpt-test", "messages": MESSAGES})
    call_id = response.headers["x-hookgate-call-id"]
    hooks = events_for(recorders, call_id)
    event = recorders.events("recorder", call_id)[0]["event"]

    assert response.status_code == status
    assert fresh_upstream.fail_message in response.json()["error"]["message"]
    assert hooks == {name: ["log_failure"] for name in LOGGERS}
    assert event["error"]["provider"] == "openai"


def test_upstream_timeout_is_504(client: httpx.Client, recorders: Any,
                                 fresh_upstream: FakeOpenAIServer) -> None:
    fresh_upstream.hang = 2.5
    response = client.post("/chat/completions", json={"model": "gpt-slow", "messages": MESSAGES})
    call_id = response.headers["x-hookgate-call-id"]
    hooks = events_for(recorders, call_id)
    event = recorders.events("recorder", call_id)[0]["event"]

    assert response.status_code == 504
    assert response.json()["error"]["type"] == "timeout"
    assert hooks == {name: ["log_failure"] for name in LOGGERS}
    assert event["error"]["type"] == "ProviderTimeout"


def test_sdk_sees_error_classes(proxy: RunningProxy, fresh_upstream: FakeOpenAIServer) -> None:
    client = openai.OpenAI(api_key=MASTER_KEY, base_url=proxy.base_url, max_retries=0)
    fresh_upstream.fail_status = 500

    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="does-not-exist", messages=MESSAGES)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-test", messages=MESSAGES)


def test_unknown_route_is_openai_error(client: httpx.Client) -> None:
    response = client.get("/v1/nothing-here")

    assert response.status_code == 404
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


# Successful calls: headers, ids, embeddings and models


def test_call_id_matches_event(client: httpx.Client, recorders: Any) -> None:
    response = client.post("/v1/chat/completions",
                           json={"model": "gpt-test", "messages": MESSAGES, "temperature": 0.5})
    call_id = response.headers["x-hookgate-call-id"]
    hooks = events_for(recorders, call_id)
    event = recorders.events("recorder", call_id)[0]["event"]

    assert hooks == {name: ["log_success"] for name in LOGGERS}
    assert float(response.headers["x-hookgate-overhead-ms"]) >= 0
    assert event["route"] == "/v1/chat/completions"
    assert event["model"] == "gpt-test"
    assert event["upstream_model"] == "fake-model"
    assert event["params"] == {"temperature": 0.5}
    assert event["usage"]["total_tokens"] == response.json()["usage"]["total_tokens"]
    assert event["response"] == response.json()
    assert event["metadata"]["key_hash"] is not None


def test_unknown_fields_pass_through(client: httpx.Client,
                                     fresh_upstream: FakeOpenAIServer) -> None:
    client.post("/chat/completions", json={"model": "gpt-test", "messages": MESSAGES,
                                           "vendor_option": {"depth": 3}, "seed": 7})

    sent = fresh_upstream.requests[-1].body
    assert sent["vendor_option"] == {"depth": 3}
    assert sent["seed"] == 7
    assert sent["model"] == "fake-model"


def test_embeddings_sdk(proxy: RunningProxy, recorders: Any) -> None:
    client = openai.OpenAI(api_key=MASTER_KEY, base_url=proxy.base_url, max_retries=0)
    raw = client.embeddings.with_raw_response.create(model="text-embedding",
                                                     input=["one", "two"])
    result = raw.parse()
    call_id = raw.headers["x-hookgate-call-id"]
    hooks = events_for(recorders, call_id)
    event = recorders.events("recorder", call_id)[0]["event"]

    assert len(result.data) == 2
    assert hooks == {name: ["log_success"] for name in LOGGERS}
    assert event["call_type"] == "embedding"
    assert event["messages"] == ["one", "two"]


def test_models_sdk(proxy: RunningProxy) -> None:
    client = openai.OpenAI(api_key=MASTER_KEY, base_url=proxy.base_url, max_retries=0)

    names = [model.id for model in client.models.list()]

    assert names == ["gpt-test", "gpt-slow", "gpt-down", "mock-503", "text-embedding"]


def test_callback_status_counts(client: httpx.Client, recorders: Any) -> None:
    response = client.post("/chat/completions", json={"model": "gpt-test", "messages": MESSAGES})
    events_for(recorders, response.headers["x-hookgate-call-id"])

    status = client.get("/callbacks/status").json()
    plugins = {entry["name"]: entry for entry in status["plugins"]}

    assert plugins["recorder"]["distribution"] == "hookgate-test-recorders"
    assert plugins["langfuse"]["distribution"] is None
    for name in LOGGERS:
        assert plugins[name]["status"] == "active"
        assert plugins[name]["stats"]["delivered"] >= 1
        assert plugins[name]["stats"]["failed"] == 0
        assert plugins[name]["stats"]["dropped"] == 0
        assert plugins[name]["lanes"] == {"success": True, "failure": True}
