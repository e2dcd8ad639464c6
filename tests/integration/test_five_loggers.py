"""All five first-party loggers in one real `hookgate serve`, switched off per request.

The proxy runs jsonl (a temporary file), langfuse, datadog and otel (each sending to
its plugin's loopback receiver) and prometheus (`/metrics` on the proxy's port).
Requests come from the OpenAI SDK and from plain HTTP. They carry the header
values of the LiteLLM documentation (`langfuse`, `langfuse,datadog`,
`langfuse,datadog,prometheus`), no header, each logger's own name, loose
spelling, two header lines or an unknown name. Every request's call id (the
`x-hookgate-call-id` response header) must reach exactly the loggers that the
header does not name. The test reads jsonl, langfuse, datadog and otel at their
backends after SIGTERM has flushed them, and prometheus through its counters,
scraped before SIGTERM.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from hookgate_proxy.testing import running_proxy

LOGGERS = ("datadog", "jsonl", "langfuse", "otel", "prometheus")
MASTER_KEY = "sk-integration-master-41c7"
MODEL = "m"
FAILING_MODEL = "broken"
REFERENCE_HEADERS = (None, "langfuse", "langfuse,datadog", "langfuse,datadog,prometheus")
"""The `x-litellm-disable-callbacks` values of the LiteLLM documentation, and no header."""
ISOLATED_PREFIXES = ("LANGFUSE_", "DD_", "OTEL_", "HOOKGATE_", "PROMETHEUS_")
"""Prefixes of the variables that plugins read, removed so that the machine's settings
cannot leak in."""


@dataclass
class SentRequest:
    """One request sent to the proxy and what its response reported."""

    tag: str
    """The request's `user` field, unique per request, used in failure messages."""
    lines: tuple[str, ...]
    """The `x-litellm-disable-callbacks` header lines sent, none for a request without it."""
    status: str
    call_id: str
    disabled: str | None
    """The `x-hookgate-callbacks-disabled` response header, None when absent."""
    ignored: str | None

    @property
    def named(self) -> set[str]:
        """Return the names in the header lines, trimmed and lowercased like the proxy does."""
        return {name.strip().lower() for line in self.lines for name in line.split(",")
                if name.strip()}

    def reaches(self, logger: str) -> bool:
        return logger not in self.named


def proxy_config(tmp_path: Path, langfuse: Any, intake: Any, otlp: Any) -> dict[str, Any]:
    return {
        "model_list": [
            {"model_name": MODEL, "litellm_params": {"model": "mock/m"}},
            {"model_name": FAILING_MODEL, "litellm_params": {"model": "mock/error-503"}},
        ],
        "litellm_settings": {"callbacks": list(LOGGERS)},
        "callback_settings": {
            "jsonl": {"path": str(tmp_path / "events.jsonl")},
            "langfuse": {"host": langfuse.host, "flush_interval": 0.5},
            "datadog": {"url": intake.url, "service": "integration", "flush_interval": 0.5},
            "otel": {"endpoint": otlp.endpoint, "schedule_delay": 0.2},
            "prometheus": {},
        },
        "general_settings": {"master_key": MASTER_KEY},
        "hookgate_settings": {"shutdown_timeout": 10},
    }


def proxy_environment(langfuse: Any, intake: Any) -> dict[str, str]:
    """Return this process's environment without plugin settings, plus the backend keys."""
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(ISOLATED_PREFIXES)}
    environment.update(LANGFUSE_PUBLIC_KEY=langfuse.public_key,
                       LANGFUSE_SECRET_KEY=langfuse.secret_key, DD_API_KEY=intake.api_key)
    return environment


def disable_headers(header: str | None) -> dict[str, str]:
    return {} if header is None else {"x-litellm-disable-callbacks": header}


def header_lines(header: str | None) -> tuple[str, ...]:
    return () if header is None else (header,)


def split_names(value: str | None) -> set[str]:
    return {name for name in (value or "").split(",") if name}


def send_with_sdk(client: openai.OpenAI, tag: str, header: str | None) -> SentRequest:
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": f"request {tag}"}], user=tag,
        extra_headers=disable_headers(header))
    assert raw.parse().choices[0].message.content, f"{tag}: empty completion"
    return SentRequest(tag, header_lines(header), "success", raw.headers["x-hookgate-call-id"],
                       raw.headers.get("x-hookgate-callbacks-disabled"),
                       raw.headers.get("x-hookgate-callbacks-ignored"))


def send_stream_with_sdk(client: openai.OpenAI, tag: str, header: str | None) -> SentRequest:
    with client.chat.completions.with_streaming_response.create(
            model=MODEL, messages=[{"role": "user", "content": f"request {tag}"}], user=tag,
            stream=True, stream_options={"include_usage": True},
            extra_headers=disable_headers(header)) as response:
        chunks = list(response.parse())
        headers = response.headers
    assert chunks, f"{tag}: the stream had no chunks"
    return SentRequest(tag, header_lines(header), "success", headers["x-hookgate-call-id"],
                       headers.get("x-hookgate-callbacks-disabled"),
                       headers.get("x-hookgate-callbacks-ignored"))


def send_with_http(base_url: str, tag: str, lines: tuple[str, ...], model: str = MODEL,
                   expected_status: int = 200) -> SentRequest:
    """Send a chat completion with each of `lines` as its own disable header line."""
    # A LiteLLM client may send its key in x-litellm-api-key instead of Authorization.
    headers = [("x-litellm-api-key", MASTER_KEY)]
    headers += [("x-litellm-disable-callbacks", line) for line in lines]
    response = httpx.post(
        base_url + "/v1/chat/completions", timeout=10, headers=headers,
        json={"model": model, "messages": [{"role": "user", "content": f"request {tag}"}],
              "user": tag})
    assert response.status_code == expected_status, f"{tag}: {response.text}"
    status = "success" if expected_status == 200 else "failure"
    return SentRequest(tag, lines, status, response.headers["x-hookgate-call-id"],
                       response.headers.get("x-hookgate-callbacks-disabled"),
                       response.headers.get("x-hookgate-callbacks-ignored"))


def scrape(base_url: str, parse: Callable[[str], Any]) -> Any:
    response = httpx.get(base_url + "/metrics", timeout=10)
    assert response.status_code == 200, response.text
    return parse(response.text)


def wait_for_metrics(base_url: str, parse: Callable[[str], Any],
                     expected: dict[tuple[str, frozenset[tuple[str, str]]], float],
                     timeout: float = 15.0) -> Any:
    """Scrape until every expected sample has its value or the timeout passes.

    Returns the last scrape.
    """
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(base_url, parse)
        if all(samples.get(key, 0.0) == value for key, value in expected.items()):
            return samples
        if time.monotonic() > deadline:
            return samples
        time.sleep(0.1)


def sample(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return (name, frozenset(labels.items()))


@pytest.mark.parametrize("logger_process", [False, True],
                         ids=["loggers-in-proxy", "logger-process"])
def test_five_loggers_honour_header(tmp_path: Path, langfuse_receiver: Any,
                                   datadog_intake: Any, otlp_receiver: Any,
                                   parse_samples: Callable[[str], Any],
                                   logger_process: bool) -> None:
    config = proxy_config(tmp_path, langfuse_receiver, datadog_intake, otlp_receiver)
    # With a logger process, prometheus stays in the proxy (it serves /metrics) and
    # the other four run there: the header must reach both places alike.
    config["hookgate_settings"] = {"logger_process": logger_process}
    environment = proxy_environment(langfuse_receiver, datadog_intake)

    with running_proxy(config, env=environment, inherit_env=False) as proxy:
        listing = httpx.get(proxy.base_url + "/callbacks/list", timeout=10,
                            headers={"Authorization": f"Bearer {MASTER_KEY}"}).json()
        status = httpx.get(proxy.base_url + "/callbacks/status", timeout=10,
                           headers={"Authorization": f"Bearer {MASTER_KEY}"}).json()
        before = scrape(proxy.base_url, parse_samples)

        client = openai.OpenAI(api_key=MASTER_KEY, base_url=proxy.base_url, max_retries=0)
        sent: list[SentRequest] = []
        for index, header in enumerate(REFERENCE_HEADERS):
            sent.append(send_with_sdk(client, f"sdk-{index}", header))
            sent.append(send_with_http(proxy.base_url, f"http-{index}", header_lines(header)))
        sent.append(send_with_http(proxy.base_url, "http-loose-names", ("LANGFUSE , Datadog,,",)))
        sent.append(send_with_http(proxy.base_url, "http-two-lines", ("langfuse", "prometheus")))
        sent.append(send_with_http(proxy.base_url, "http-unknown-name", ("otel,nosuch",)))
        for logger in LOGGERS:
            sent.append(send_stream_with_sdk(client, f"stream-without-{logger}", logger))
        sent.append(send_with_http(proxy.base_url, "failure", ("langfuse,datadog",),
                                   model=FAILING_MODEL, expected_status=503))

        reaching = {logger: [request for request in sent if request.reaches(logger)]
                    for logger in LOGGERS}
        prometheus_successes = [r for r in reaching["prometheus"] if r.status == "success"]
        prometheus_failures = [r for r in reaching["prometheus"] if r.status == "failure"]
        expected_samples = {
            sample("hookgate_requests_total", model=MODEL, status="success"):
                before.get(sample("hookgate_requests_total", model=MODEL, status="success"), 0.0)
                + len(prometheus_successes),
            sample("hookgate_requests_total", model=FAILING_MODEL, status="failure"):
                before.get(sample("hookgate_requests_total", model=FAILING_MODEL,
                                  status="failure"), 0.0)
                + len(prometheus_failures),
        }
        for logger in LOGGERS:
            expected_samples[sample("hookgate_callback_delivered_total", callback=logger)] = (
                before.get(sample("hookgate_callback_delivered_total", callback=logger), 0.0)
                + len(reaching[logger]))
        after = wait_for_metrics(proxy.base_url, parse_samples, expected_samples)

        exit_code = proxy.stop()
        logs = proxy.logs()

    tags = {request.call_id: request.tag for request in sent}

    def described(call_ids: list[str]) -> list[str]:
        return sorted(tags.get(call_id, f"unknown call {call_id}") for call_id in call_ids)

    jsonl_lines = [json.loads(line) for line in
                   (tmp_path / "events.jsonl").read_text("utf-8").splitlines()]
    received = {
        "jsonl": [line["call_id"] for line in jsonl_lines],
        "langfuse": [body["id"] for body in langfuse_receiver.bodies("trace-create")],
        "datadog": datadog_intake.call_ids(),
        "otel": [span.trace_id for span in otlp_receiver.spans],
    }

    assert exit_code == 0, logs
    assert listing == {"success": [], "failure": [], "success_and_failure": list(LOGGERS)}, (
        f"/callbacks/list: {listing}")
    if logger_process:
        assert status["logger_process"]["plugins"] == ["datadog", "jsonl", "langfuse", "otel"], (
            f"/callbacks/status: {status.get('logger_process')}")
    else:
        assert "logger_process" not in status, f"/callbacks/status: {status['logger_process']}"
    assert len(tags) == len(sent), "two requests returned the same call id"

    for request in sent:
        if not request.lines:
            assert request.disabled is None, f"{request.tag}: disabled {request.disabled!r}"
            assert request.ignored is None, f"{request.tag}: ignored {request.ignored!r}"
            continue
        known = request.named & set(LOGGERS)
        assert request.disabled is not None, f"{request.tag}: no disabled header"
        assert split_names(request.disabled) == known, (
            f"{request.tag}: sent {request.lines}, disabled {request.disabled!r}")
        assert split_names(request.ignored) == request.named - known, (
            f"{request.tag}: sent {request.lines}, ignored {request.ignored!r}")

    for logger, call_ids in received.items():
        expected = [request.call_id for request in reaching[logger]]
        repeated = [tags.get(call_id) for call_id, count in Counter(call_ids).items()
                    if count > 1]
        assert repeated == [], f"{logger} received these requests more than once: {repeated}"
        assert described(call_ids) == described(expected), (
            f"{logger} received {described(call_ids)}, expected {described(expected)}")
    assert langfuse_receiver.repeats == 0, "the langfuse receiver skipped repeated events"

    hooks = {line["call_id"]: line["hook"] for line in jsonl_lines}
    for request in reaching["jsonl"]:
        expected_hook = "log_success" if request.status == "success" else "log_failure"
        assert hooks.get(request.call_id) == expected_hook, (
            f"{request.tag}: jsonl recorded {hooks.get(request.call_id)}, expected {expected_hook}")

    for key, value in expected_samples.items():
        assert after.get(key, 0.0) == value, (
            f"/metrics {key[0]}{dict(key[1])} is {after.get(key, 0.0)}, expected {value}")

    assert MASTER_KEY not in logs
    assert MASTER_KEY not in (tmp_path / "events.jsonl").read_text("utf-8")
    for body in langfuse_receiver.raw_bodies:
        assert MASTER_KEY.encode() not in body, "the client key reached langfuse"
    for payload in datadog_intake.raw_payloads:
        assert MASTER_KEY.encode() not in payload, "the client key reached datadog"
    assert MASTER_KEY not in repr([span.attributes for span in otlp_receiver.spans]), (
        "the client key reached the OTLP receiver")
