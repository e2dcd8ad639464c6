"""The curl requests and OpenAI SDK snippets users copy from the LiteLLM documentation.

Each runs as written, against a proxy with master key `sk-1234` and recorder plugins
named `langfuse`, `datadog` and `prometheus`. Only the address changes: the examples
target `http://0.0.0.0:4000` or `http://localhost:4000`, and these tests point them at
the test proxy's loopback port. The curl commands run with the real `curl` when it is
installed; otherwise an equivalent raw HTTP request is built from the same command
line (see `run_curl`). The `/callbacks/list` example runs both ways (test ids `curl`
and `raw-http`), so the fallback is tested too.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import shlex
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from hookgate_proxy.testing import FakeOpenAIServer, RunningProxy, running_proxy

CURL_DISABLE_ONE = """curl --location 'http://0.0.0.0:4000/chat/completions' \\
    --header 'Content-Type: application/json' \\
    --header 'Authorization: Bearer sk-1234' \\
    --header 'x-litellm-disable-callbacks: langfuse' \\
    --data '{
    "model": "claude-sonnet-4-20250514",
    "messages": [
        {
        "role": "user",
        "content": "what llm are you"
        }
    ]
}'"""

CURL_DISABLE_TWO = CURL_DISABLE_ONE.replace("disable-callbacks: langfuse'",
                                            "disable-callbacks: langfuse,datadog'")
CURL_DISABLE_THREE = CURL_DISABLE_ONE.replace("disable-callbacks: langfuse'",
                                              "disable-callbacks: langfuse,datadog,prometheus'")

CURL_LIST = """curl -X 'GET' \\
  'http://localhost:4000/callbacks/list' \\
  -H 'accept: application/json' \\
  -H 'x-litellm-api-key: sk-1234'"""

SDK_SNIPPET = """import openai

client = openai.OpenAI(
    api_key="sk-1234",
    base_url="http://0.0.0.0:4000"
)

response = client.chat.completions.create(
    model="claude-sonnet-4-20250514",
    messages=[
        {
            "role": "user",
            "content": "what llm are you"
        }
    ],
    extra_headers={
        "x-litellm-disable-callbacks": "DISABLED"
    }
)

print(response)
"""

RECORDED = ("langfuse", "datadog", "prometheus")
ALL_CALLBACKS = [*RECORDED, "recorder"]
UPSTREAM_KEY = "sk-upstream-secret-5b1f"


@pytest.fixture(scope="module")
def recorders(make_recorders: Any) -> Any:
    return make_recorders(RECORDED, entry_point_names=("recorder",))


@pytest.fixture(scope="module")
def proxy(upstream: FakeOpenAIServer, recorders: Any) -> Iterator[RunningProxy]:
    config = {
        "model_list": [{
            "model_name": "claude-sonnet-4-20250514",
            "litellm_params": {"model": "openai/fake-model", "api_base": upstream.base_url,
                               "api_key": UPSTREAM_KEY},
        }],
        "litellm_settings": {"callbacks": ALL_CALLBACKS},
        "general_settings": {"master_key": "sk-1234"},
        **recorders.config(),
    }
    with running_proxy(config, env=recorders.env()) as server:
        yield server


def localize(text: str, proxy: RunningProxy) -> str:
    """Point an example at the test proxy instead of port 4000."""
    for address in ("http://0.0.0.0:4000", "http://localhost:4000"):
        text = text.replace(address, proxy.base_url)
    return text


CURL = shutil.which("curl")


def run_curl(command: str, *, use_curl: bool = CURL is not None
             ) -> tuple[int, dict[str, str], Any]:
    """Run a curl command line; return the status, the headers (lowercased) and the JSON body.

    With `use_curl` (the default when curl is installed), the command runs unchanged
    in bash with `-sS -i` appended. Otherwise the same arguments (`-X`,
    `-H`/`--header`, `--data`, `--location` and the URL) are sent as one raw HTTP
    request.
    """
    if use_curl:
        completed = subprocess.run(["bash", "-c", command + " -sS -i"], capture_output=True,
                                   text=True, timeout=30, check=True)
        head, _, body = completed.stdout.replace("\r\n", "\n").partition("\n\n")
        lines = head.splitlines()
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers, json.loads(body)

    arguments = shlex.split(command.replace("\\\n", " "))
    method, headers, data, url = "GET", {}, None, ""
    index = 1
    while index < len(arguments):
        argument = arguments[index]
        if argument == "-X":
            method = arguments[index + 1]
            index += 1
        elif argument in ("-H", "--header"):
            name, _, value = arguments[index + 1].partition(":")
            headers[name.strip()] = value.strip()
            index += 1
        elif argument == "--data":
            data = arguments[index + 1].encode()
            method = "POST" if method == "GET" else method
            index += 1
        elif not argument.startswith("-"):
            url = argument
        index += 1
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    connection.request(method, parts.path, body=data, headers=headers)
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    return (response.status, {name.lower(): value for name, value in response.getheaders()},
            json.loads(payload))


@pytest.mark.parametrize("use_curl", [
    pytest.param(True, marks=pytest.mark.skipif(CURL is None, reason="curl is not installed")),
    False,
], ids=["curl", "raw-http"])
def test_callbacks_list_curl(proxy: RunningProxy, use_curl: bool) -> None:
    status, _, body = run_curl(localize(CURL_LIST, proxy), use_curl=use_curl)

    assert status == 200
    assert body == {"success": [], "failure": [], "success_and_failure": sorted(ALL_CALLBACKS)}


@pytest.mark.parametrize(("command", "disabled"), [
    (CURL_DISABLE_ONE, ["langfuse"]),
    (CURL_DISABLE_TWO, ["datadog", "langfuse"]),
    (CURL_DISABLE_THREE, ["datadog", "langfuse", "prometheus"]),
])
def test_disable_curl(proxy: RunningProxy, recorders: Any, upstream: FakeOpenAIServer,
                      command: str, disabled: list[str]) -> None:
    status, headers, body = run_curl(localize(command, proxy))
    call_id = headers["x-hookgate-call-id"]
    received = recorders.wait("recorder", call_id)
    time.sleep(0.2)  # time for a disabled logger to receive the event, were it sent

    assert status == 200
    assert body["choices"][0]["message"]["content"] == upstream.reply
    assert headers["x-hookgate-callbacks-disabled"] == ",".join(disabled)
    assert headers["x-hookgate-callbacks-ignored"] == ""
    assert len(received) == 1
    assert received[0]["event"]["disabled_callbacks"] == disabled
    for name in RECORDED:
        expected = 0 if name in disabled else 1
        assert len(recorders.events(name, call_id)) == expected, name


@pytest.mark.parametrize("disabled", ["langfuse", "langfuse,datadog,prometheus"])
def test_sdk_snippet(proxy: RunningProxy, recorders: Any, upstream: FakeOpenAIServer,
                     disabled: str) -> None:
    before = {name: len(recorders.events(name)) for name in ALL_CALLBACKS}
    output = io.StringIO()

    with contextlib.redirect_stdout(output):
        exec(localize(SDK_SNIPPET, proxy).replace("DISABLED", disabled), {})
    deadline = time.monotonic() + 10
    while len(recorders.events("recorder")) == before["recorder"] and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)

    assert "ChatCompletion(" in output.getvalue()
    assert upstream.reply in output.getvalue()
    for name in ALL_CALLBACKS:
        expected = before[name] + (0 if name in disabled.split(",") else 1)
        assert len(recorders.events(name)) == expected, name


def test_examples_send_no_client_secret_upstream(proxy: RunningProxy,
                                                 fresh_upstream: FakeOpenAIServer) -> None:
    run_curl(localize(CURL_DISABLE_TWO, proxy))

    headers = fresh_upstream.requests[-1].headers
    assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert "x-litellm-disable-callbacks" not in headers
    assert "sk-1234" not in json.dumps(headers)
