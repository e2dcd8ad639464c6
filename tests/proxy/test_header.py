"""The `x-litellm-disable-callbacks` header and `/callbacks/list`, end to end.

One proxy serves the module, twice: with the loggers in its own process, then in a
logger process (`hookgate_settings.logger_process`). Its callbacks cover each category: recorders in
`callbacks` (both lanes), in `success_callback` and `failure_callback` only, a
plugin that implements only `log_success`, a required audit log, an in-house
plugin registered from Python (`team_audit`) and one found by its entry point
(`recorder`).
"""

from __future__ import annotations

import json
import os
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from hookgate_proxy.header import parse_disable_header
from hookgate_proxy.testing import FakeOpenAIServer, RunningProxy, read_records, running_proxy

MASTER_KEY = "sk-master-7c41"
UPSTREAM_KEY = "sk-upstream-90ad"
BOTH = ("audit", "datadog", "langfuse", "team_audit")
SUCCESS_ONLY_MODULE = '''
import json
from hookgate import hookimpl


class SuccessHooksOnly:
    """Implements log_success only, so it belongs in the "success" category."""

    @hookimpl
    def logger_setup(self, name, settings):
        self.path = settings["path"]

    @hookimpl
    def log_success(self, event):
        with open(self.path, "a") as file:
            file.write(json.dumps({"hook": "log_success",
                                   "event": event.model_dump(mode="json")}) + "\\n")
'''


@pytest.fixture(scope="module")
def recorders(make_recorders: Any) -> Any:
    return make_recorders((*BOTH, "success_lane", "failure_lane"),
                          entry_point_names=("recorder",))


@pytest.fixture(scope="module", params=[False, True],
                ids=["loggers-in-proxy", "logger-process"])
def proxy(request: pytest.FixtureRequest, upstream: FakeOpenAIServer,
          recorders: Any) -> Iterator[RunningProxy]:
    """The module's proxy, once with the loggers in its process and once in a logger process.

    Each header rule must hold either way. Both proxies share the recorder files;
    the tests tell their events apart by call id.
    """
    module_dir = recorders.directory / "modules"
    module_dir.mkdir(exist_ok=True)
    (module_dir / "success_hooks_only.py").write_text(textwrap.dedent(SUCCESS_ONLY_MODULE))
    config = recorders.config()
    config["hookgate_settings"]["plugins"]["only_success_hooks"] = (
        "success_hooks_only:SuccessHooksOnly")
    config["callback_settings"]["only_success_hooks"] = {
        "path": str(recorders.path("only_success_hooks"))}
    config["callback_settings"]["audit"]["required"] = True
    config.update({
        "model_list": [{"model_name": "gpt-test", "litellm_params": {
            "model": "openai/fake-model", "api_base": upstream.base_url,
            "api_key": UPSTREAM_KEY}}],
        "litellm_settings": {
            "callbacks": [*BOTH, "recorder", "only_success_hooks"],
            "success_callback": ["success_lane"],
            "failure_callback": ["failure_lane"],
        },
        "general_settings": {"master_key": MASTER_KEY},
    })
    config["hookgate_settings"]["logger_process"] = request.param
    env = recorders.env()
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(module_dir)])
    with running_proxy(config, env=env) as server:
        yield server


@pytest.fixture(scope="module")
def client(proxy: RunningProxy) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=proxy.base_url, timeout=30,
                      headers={"authorization": f"Bearer {MASTER_KEY}"}) as http:
        yield http


def chat(client: httpx.Client, headers: list[tuple[str, str]] = (),  # type: ignore[assignment]
         model: str = "gpt-test", **fields: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}], **fields}
    return client.post("/chat/completions", json=body, headers=headers)


def wait_for_call(recorders: Any, call_id: str, witness: str = "recorder") -> None:
    """Wait until the `witness` logger has the call's event, then a little longer.

    Every logger runs on its own worker, so the extra moment lets a logger that
    should not get the event show it if it did.
    """
    recorders.wait(witness, call_id)
    time.sleep(0.2)


# Parsing rules


@pytest.mark.parametrize(("lines", "expected"), [
    (["langfuse"], ("langfuse",)),
    (["langfuse,datadog"], ("langfuse", "datadog")),
    (["LANGFUSE , datadog,,"], ("langfuse", "datadog")),
    (["  Langfuse\t"], ("langfuse",)),
    (["langfuse", "datadog"], ("langfuse", "datadog")),
    (["langfuse", "LangFuse,langfuse"], ("langfuse",)),
    ([",", " , ,"], ()),
    ([""], ()),
    ([], ()),
])
def test_header_parsing(lines: list[str], expected: tuple[str, ...]) -> None:
    assert parse_disable_header(lines) == expected


# /callbacks/list


def test_callbacks_list_categories(client: httpx.Client) -> None:
    response = client.get("/callbacks/list")

    assert response.status_code == 200
    assert response.json() == {
        "success": ["only_success_hooks", "success_lane"],
        "failure": ["failure_lane"],
        "success_and_failure": ["audit", "datadog", "langfuse", "recorder", "team_audit"],
    }


def test_callbacks_list_needs_master_key(proxy: RunningProxy) -> None:
    response = httpx.get(proxy.base_url + "/callbacks/list")

    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_listed_names_round_trip(client: httpx.Client, recorders: Any) -> None:
    categories = client.get("/callbacks/list").json()
    names = sorted(name for group in categories.values() for name in group)

    for name in names:
        response = chat(client, [("x-litellm-disable-callbacks", name)])
        if name == "audit":
            assert response.headers["x-hookgate-callbacks-ignored"] == "audit"
            assert response.headers["x-hookgate-callbacks-required"] == "audit"
            assert response.headers["x-hookgate-callbacks-disabled"] == ""
        else:
            assert response.headers["x-hookgate-callbacks-disabled"] == name, name
            assert response.headers["x-hookgate-callbacks-ignored"] == "", name
        call_id = response.headers["x-hookgate-call-id"]
        wait_for_call(recorders, call_id, witness="audit")
        if name != "audit":
            assert _events(recorders, name, call_id) == [], name


def _events(recorders: Any, name: str, call_id: str) -> list[dict[str, Any]]:
    return [record for record in read_records(recorders.path(name))
            if record.get("event", {}).get("call_id") == call_id]


# Header rules, end to end


@pytest.mark.parametrize(("lines", "disabled", "ignored"), [
    ([("x-litellm-disable-callbacks", "LANGFUSE , datadog,,")], ["datadog", "langfuse"], []),
    ([("x-litellm-disable-callbacks", "langfuse"), ("x-litellm-disable-callbacks", "datadog")],
     ["datadog", "langfuse"], []),
    ([("X-LiteLLM-Disable-Callbacks", "langfuse")], ["langfuse"], []),
    ([("x-litellm-disable-callbacks", "nosuch")], [], ["nosuch"]),
    ([("x-litellm-disable-callbacks", "nosuch,Team_Audit")], ["team_audit"], ["nosuch"]),
    ([("x-litellm-disable-callbacks", "audit,langfuse")], ["langfuse"], ["audit"]),
    ([("x-litellm-disable-callbacks", ", ,,")], [], []),
], ids=["loose-names", "two-lines", "header-name-case", "unknown", "in-house", "required",
        "only-empty"])
def test_header_rules(client: httpx.Client, recorders: Any, lines: list[tuple[str, str]],
                      disabled: list[str], ignored: list[str]) -> None:
    response = chat(client, lines)
    call_id = response.headers["x-hookgate-call-id"]
    wait_for_call(recorders, call_id)

    assert response.status_code == 200
    assert response.headers["x-hookgate-callbacks-disabled"] == ",".join(disabled)
    assert response.headers["x-hookgate-callbacks-ignored"] == ",".join(ignored)
    for name in (*BOTH, "success_lane", "only_success_hooks"):
        expected = 0 if name in disabled else 1
        assert len(_events(recorders, name, call_id)) == expected, name
    event = _events(recorders, "recorder", call_id)[0]["event"]
    assert event["disabled_callbacks"] == disabled


def test_no_header_no_report(client: httpx.Client) -> None:
    response = chat(client)

    assert "x-hookgate-callbacks-disabled" not in response.headers
    assert "x-hookgate-callbacks-ignored" not in response.headers


def test_header_disables_failure_events(client: httpx.Client, recorders: Any) -> None:
    response = chat(client, [("x-litellm-disable-callbacks", "langfuse,failure_lane")],
                    model="no-such-model")
    call_id = response.headers["x-hookgate-call-id"]
    wait_for_call(recorders, call_id)

    assert response.status_code == 404
    assert _events(recorders, "langfuse", call_id) == []
    assert _events(recorders, "failure_lane", call_id) == []
    assert [record["hook"] for record in _events(recorders, "datadog", call_id)] == [
        "log_failure"]


def test_header_disables_stream_events(proxy: RunningProxy, recorders: Any) -> None:
    client = openai.OpenAI(api_key=MASTER_KEY, base_url=proxy.base_url)
    with client.chat.completions.with_streaming_response.create(
            model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True,
            extra_headers={"x-litellm-disable-callbacks": "langfuse"}) as response:
        call_id = response.headers["x-hookgate-call-id"]
        chunks = list(response.parse())
    wait_for_call(recorders, call_id)

    assert len(chunks) > 1
    assert _events(recorders, "langfuse", call_id) == []
    assert len(_events(recorders, "datadog", call_id)) == 1


def test_body_fields_do_not_disable(client: httpx.Client, recorders: Any,
                                    fresh_upstream: FakeOpenAIServer) -> None:
    response = chat(client, litellm_disabled_callbacks=["recorder", "langfuse"],
                    disabled_callbacks=["datadog"])
    call_id = response.headers["x-hookgate-call-id"]
    wait_for_call(recorders, call_id)

    assert response.status_code == 200
    for name in ("recorder", "langfuse", "datadog"):
        assert len(_events(recorders, name, call_id)) == 1, name


def test_no_secret_reaches_provider_or_event(client: httpx.Client, recorders: Any,
                                            fresh_upstream: FakeOpenAIServer) -> None:
    response = chat(client, [("x-litellm-disable-callbacks", "langfuse"),
                             ("x-litellm-api-key", MASTER_KEY)],
                    api_key="sk-client-body-key", api_base="http://127.0.0.1:9/v1")
    call_id = response.headers["x-hookgate-call-id"]
    wait_for_call(recorders, call_id)
    sent = fresh_upstream.requests[-1]
    stored = json.dumps(_events(recorders, "recorder", call_id))

    assert response.status_code == 200
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert "x-litellm-disable-callbacks" not in sent.headers
    assert "x-litellm-api-key" not in sent.headers
    assert MASTER_KEY not in json.dumps(sent.headers)
    assert "api_key" not in sent.body
    assert "api_base" not in sent.body
    for secret in (MASTER_KEY, UPSTREAM_KEY, "sk-client-body-key"):
        assert secret not in stored, secret


def test_no_secret_in_server_log(proxy: RunningProxy) -> None:
    log = proxy.logs()

    assert MASTER_KEY not in log
    assert UPSTREAM_KEY not in log


def test_required_callback_reported_at_startup(proxy: RunningProxy) -> None:
    assert "callback active: audit (success_and_failure, required" in proxy.logs()
