"""The logger process (`hookgate_settings.logger_process`), end to end and its protocol.

The end-to-end tests start a real `hookgate serve` with an in-house plugin module
beside the config file. The plugin writes one JSON line per hook call with the id
of the process it runs in, so a test can see where each plugin ran and what it got.
The header rules and all five first-party loggers are also run with a logger
process, by tests/proxy/test_header.py and tests/integration/test_five_loggers.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from hookgate import CallEvent
from hookgate_proxy.config import ConfigError, parse_config
from hookgate_proxy.logger_process.protocol import (
    FrameError,
    encode_event,
    event_frame,
    parse_event,
    read_frame,
)
from hookgate_proxy.testing import running_proxy

PLUGIN_MODULE = '''
import json
import os
import time

from hookgate import hookimpl


class PidRecorder:
    """Writes each hook call with this process's id; `delay` slows log_success down."""

    @hookimpl
    def logger_setup(self, name, settings):
        if settings.get("fail"):
            raise RuntimeError("backend unreachable in this test")
        self.name = name
        self.path = settings["path"]
        self.delay = settings.get("delay", 0)
        self._write({"hook": "logger_setup"})

    @hookimpl
    def log_success(self, event):
        time.sleep(self.delay)
        self._write({"hook": "log_success", "call_id": event.call_id,
                     "messages": event.messages, "status": event.status})

    @hookimpl
    def log_failure(self, event):
        self._write({"hook": "log_failure", "call_id": event.call_id,
                     "error": event.error.type, "status": event.status})

    @hookimpl
    def logger_flush(self, timeout):
        self._write({"hook": "logger_flush"})

    @hookimpl
    def logger_health(self):
        return {"pid": os.getpid()}

    def _write(self, record):
        with open(self.path, "a") as file:
            file.write(json.dumps({"name": self.name, "pid": os.getpid(), **record}) + "\\n")


class ProxyOnly(PidRecorder):
    """Cannot be created in the logger process, as if a dependency were missing there."""

    def __init__(self):
        import sys
        if "logger_process" in sys.argv[0]:
            raise RuntimeError("this plugin runs in the proxy only")


class RouteRecorder(PidRecorder):
    """Serves GET /route-recorder, so it must stay in the proxy's process."""

    @hookimpl
    def logger_routes(self, app):
        from starlette.responses import JSONResponse

        async def pid(request):
            return JSONResponse({"pid": os.getpid()})

        app.add_route("/route-recorder", pid, methods=["GET"])
'''


def write_module(directory: Path) -> None:
    (directory / "pid_recorder.py").write_text(textwrap.dedent(PLUGIN_MODULE), "utf-8")


def config_for(directory: Path, plugins: dict[str, dict[str, Any]],
               **settings: Any) -> dict[str, Any]:
    """Return a config with the mock provider and one PidRecorder per name in `plugins`."""
    targets = {name: ("pid_recorder:RouteRecorder" if options.pop("routes", False)
                      else "pid_recorder:PidRecorder") for name, options in plugins.items()}
    return {
        "model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}},
                       {"model_name": "broken", "litellm_params": {"model": "mock/error-503"}}],
        "litellm_settings": {"callbacks": list(plugins)},
        "callback_settings": {name: {"path": str(directory / f"{name}.jsonl"), **options}
                              for name, options in plugins.items()},
        "hookgate_settings": {"plugins": targets, "logger_process": True, **settings},
    }


def records(path: Path, hook: str | None = None) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]
    return [line for line in lines if hook is None or line["hook"] == hook]


def wait_records(path: Path, count: int, hook: str, timeout: float = 15.0
                 ) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while len(records(path, hook)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{path.name}: {len(records(path, hook))} {hook} records "
                                 f"within {timeout} s, expected {count}")
        time.sleep(0.02)
    return records(path, hook)


def chat(base_url: str, model: str = "m", content: str = "hello", **headers: str
         ) -> httpx.Response:
    return httpx.post(base_url + "/v1/chat/completions", timeout=30, headers=headers,
                      json={"model": model, "messages": [{"role": "user", "content": content}]})


def status(base_url: str) -> dict[str, Any]:
    return httpx.get(base_url + "/callbacks/status", timeout=10).json()  # type: ignore[no-any-return]


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# Where the plugins run and what they receive


def test_plugins_run_in_the_logger_process(tmp_path: Path) -> None:
    write_module(tmp_path)
    config = config_for(tmp_path, {"audit": {}, "metrics": {"routes": True}})

    # The module sits beside the config file, which the logger process must also find.
    with running_proxy(config, workdir=tmp_path) as proxy:
        client = openai.OpenAI(api_key="unused", base_url=proxy.base_url, max_retries=0)
        answer = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "where do you log?"}])
        with pytest.raises(openai.APIStatusError) as failed:
            client.chat.completions.create(model="broken",
                                           messages=[{"role": "user", "content": "x"}])
        route = httpx.get(proxy.base_url + "/route-recorder", timeout=10).json()
        successes = wait_records(tmp_path / "audit.jsonl", 1, "log_success")
        failures = wait_records(tmp_path / "audit.jsonl", 1, "log_failure")
        wait_records(tmp_path / "metrics.jsonl", 1, "log_failure")
        time.sleep(0.6)  # the logger process reports its counters every 0.5 s
        report = status(proxy.base_url)
        listing = httpx.get(proxy.base_url + "/callbacks/list", timeout=10).json()
        proxy_pid = proxy.process.pid
        logs = proxy.logs()

    child_pid = report["logger_process"]["pid"]
    audit = next(plugin for plugin in report["plugins"] if plugin["name"] == "audit")
    assert answer.choices[0].message.content == "You said: where do you log?"
    assert failed.value.status_code == 503
    assert child_pid != proxy_pid
    assert report["logger_process"] == {"pid": child_pid, "state": "running", "restarts": 0,
                                        "plugins": ["audit"], "cpus": [], "invalid_events": 0}
    assert {record["pid"] for record in records(tmp_path / "audit.jsonl")} == {child_pid}
    assert {record["pid"] for record in records(tmp_path / "metrics.jsonl")} == {proxy_pid}
    assert route == {"pid": proxy_pid}
    assert successes[0]["messages"] == [{"role": "user", "content": "where do you log?"}]
    assert (failures[0]["status"], failures[0]["error"]) == ("failure", "ProviderError")
    assert audit["status"] == "active"
    assert audit["stats"]["delivered"] == 2
    assert audit["health"] == {"pid": child_pid}
    assert listing == {"success": [], "failure": [], "success_and_failure": ["audit", "metrics"]}
    assert f"logger process {child_pid} running audit" in logs
    assert "[logger process] hookgate.plugins: plugin audit active" in logs


def test_header_disables_a_plugin_in_the_logger_process(tmp_path: Path) -> None:
    write_module(tmp_path)
    config = config_for(tmp_path, {"audit": {}, "langfuse": {}})

    with running_proxy(config, workdir=tmp_path) as proxy:
        skipped = chat(proxy.base_url, **{"x-litellm-disable-callbacks": "langfuse"})
        logged = chat(proxy.base_url)
        audit = wait_records(tmp_path / "audit.jsonl", 2, "log_success")
        langfuse = wait_records(tmp_path / "langfuse.jsonl", 1, "log_success")
        time.sleep(0.3)  # room for a wrongly delivered event to show up

    assert skipped.headers["x-hookgate-callbacks-disabled"] == "langfuse"
    assert {record["call_id"] for record in audit} == {
        skipped.headers["x-hookgate-call-id"], logged.headers["x-hookgate-call-id"]}
    assert [record["call_id"] for record in records(tmp_path / "langfuse.jsonl",
                                                    "log_success")] == [
        logged.headers["x-hookgate-call-id"]]
    assert langfuse[0]["call_id"] == logged.headers["x-hookgate-call-id"]


# Setup failures


def test_setup_failure_in_the_logger_process_is_reported(tmp_path: Path) -> None:
    write_module(tmp_path)
    config = config_for(tmp_path, {"audit": {}, "broken": {"fail": True}})

    with running_proxy(config, workdir=tmp_path) as proxy:
        report = status(proxy.base_url)
        listing = httpx.get(proxy.base_url + "/callbacks/list", timeout=10).json()
        logs = proxy.logs()

    broken = next(plugin for plugin in report["plugins"] if plugin["name"] == "broken")
    assert broken["status"] == "failed"
    assert broken["error"] == ("in the logger process: logger_setup raised RuntimeError: "
                               "backend unreachable in this test; check "
                               "callback_settings.broken in the config")
    assert broken["receiving"] is False
    assert listing["success_and_failure"] == ["audit"]
    assert "callback broken not active: failed (in the logger process" in logs
    assert f"logger process {report['logger_process']['pid']} running audit\n" in logs


def test_plugin_that_cannot_be_created_there_fails(tmp_path: Path) -> None:
    write_module(tmp_path)
    config = config_for(tmp_path, {"audit": {}, "picky": {}})
    config["hookgate_settings"]["plugins"]["picky"] = "pid_recorder:ProxyOnly"

    with running_proxy(config, workdir=tmp_path) as proxy:
        report = status(proxy.base_url)

    picky = next(plugin for plugin in report["plugins"] if plugin["name"] == "picky")
    assert picky["status"] == "failed"
    assert picky["error"] == ("in the logger process: registering pid_recorder:ProxyOnly "
                              "failed: RuntimeError: this plugin runs in the proxy only")
    assert report["logger_process"]["plugins"] == ["audit"]


def test_required_plugin_failing_there_stops_startup(tmp_path: Path) -> None:
    write_module(tmp_path)
    config = config_for(tmp_path, {"audit": {"fail": True, "required": True}})

    with pytest.raises(RuntimeError) as error, running_proxy(config, workdir=tmp_path):
        pass

    assert "exited with code 3" in str(error.value)
    assert "required callback not active, refusing to start without it: audit" in str(
        error.value)


@pytest.mark.parametrize(("cpus", "expected"), [
    ([0, 4096], "no CPU 4096 on this machine"),
    ([0, 0], "each CPU once, got [0, 0]"),
    ([True], "Input should be a valid integer"),
    ("1", "Input should be a valid tuple"),
], ids=["unknown", "twice", "boolean", "not-a-list"])
def test_cpus_are_checked(cpus: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"hookgate_settings": {"logger_process": True,
                                            "logger_process_cpus": cpus}})

    assert "hookgate_settings.logger_process_cpus" in str(error.value)
    assert expected in str(error.value)


def test_logger_process_runs_on_the_configured_cpus(tmp_path: Path) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    write_module(tmp_path)
    config = config_for(tmp_path, {"audit": {}}, logger_process_cpus=cpus[-1:])

    with running_proxy(config, workdir=tmp_path) as proxy:
        described = status(proxy.base_url)["logger_process"]
        pid, status_cpus = described["pid"], described["cpus"]
        allowed = os.sched_getaffinity(pid)

    assert allowed == {cpus[-1]}
    assert status_cpus == cpus[-1:]


# Shutdown and failures of either process


def test_sigterm_delivers_every_queued_event(tmp_path: Path) -> None:
    write_module(tmp_path)
    # 20 events at 50 ms each: about a second of backlog when SIGTERM arrives.
    config = config_for(tmp_path, {"audit": {"delay": 0.05}})

    with running_proxy(config, workdir=tmp_path) as proxy:
        call_ids = {chat(proxy.base_url, content=f"n{index}").headers["x-hookgate-call-id"]
                    for index in range(20)}
        code = proxy.stop()
        logs = proxy.logs()

    delivered = {record["call_id"] for record in records(tmp_path / "audit.jsonl",
                                                         "log_success")}
    assert code == 0
    assert delivered == call_ids
    assert records(tmp_path / "audit.jsonl")[-1]["hook"] == "logger_flush"
    assert "shutdown complete: every event delivered and every logger flushed" in logs


def wait_state(base_url: str, state: str, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (report := status(base_url))["logger_process"]["state"] != state:
        assert time.monotonic() < deadline, f"logger process state: {report['logger_process']}"
        time.sleep(0.02)
    return report


def test_proxy_restarts_its_logger_process(tmp_path: Path) -> None:
    write_module(tmp_path)
    config = config_for(tmp_path, {"audit": {}})

    with running_proxy(config, workdir=tmp_path) as proxy:
        first = chat(proxy.base_url)
        wait_records(tmp_path / "audit.jsonl", 1, "log_success")
        time.sleep(0.6)  # one counter report with the first delivery
        pid = status(proxy.base_url)["logger_process"]["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_state(proxy.base_url, "exited with code -9")
        # The restart waits a second, so these three find no logger process.
        during = [chat(proxy.base_url) for _ in range(3)]
        down = status(proxy.base_url)
        report = wait_state(proxy.base_url, "running")
        after = chat(proxy.base_url)
        logged = wait_records(tmp_path / "audit.jsonl", 2, "log_success")
        time.sleep(0.6)
        final = status(proxy.base_url)
        proxy.stop()
        logs = proxy.logs()

    audit_down = next(plugin for plugin in down["plugins"] if plugin["name"] == "audit")
    audit = next(plugin for plugin in final["plugins"] if plugin["name"] == "audit")
    new_pid = report["logger_process"]["pid"]
    assert [response.status_code for response in (first, *during, after)] == [200] * 5
    assert audit_down["stats"]["last_error"] == "logger process exited with code -9"
    assert new_pid != pid
    assert report["logger_process"]["restarts"] == 1
    assert [record["call_id"] for record in logged] == [
        first.headers["x-hookgate-call-id"], after.headers["x-hookgate-call-id"]]
    assert logged[1]["pid"] == new_pid
    assert audit["stats"]["delivered"] == 2
    assert audit["stats"]["dropped"] == 3
    assert audit["stats"]["last_error"] is None
    assert f"the logger process {pid} exited with code -9" in logs
    assert f"logger process restarted as {new_pid} (restart 1)" in logs
    assert "shutdown complete: every event delivered and every logger flushed" in logs


def test_hung_process_keeps_shutdown_deadline(
        tmp_path: Path) -> None:
    write_module(tmp_path)
    config = config_for(tmp_path, {"audit": {}}, shutdown_timeout=2)

    with running_proxy(config, workdir=tmp_path) as proxy:
        pid = status(proxy.base_url)["logger_process"]["pid"]
        os.kill(pid, signal.SIGSTOP)
        try:
            response = chat(proxy.base_url)
            started = time.monotonic()
            code = proxy.stop()
            seconds = time.monotonic() - started
        finally:
            if process_exists(pid):
                os.kill(pid, signal.SIGKILL)
        logs = proxy.logs()

    assert response.status_code == 200
    assert code == 0
    # 2 s for the logger process, half a second of grace, and the proxy's own exit.
    assert seconds < 4.5, f"shutdown took {seconds:.1f} s:\n{logs}"
    assert not process_exists(pid)
    assert f"the logger process {pid} did not exit within its shutdown deadline" in logs
    assert "shutdown incomplete within 2 s" in logs
    assert "flush failed or not confirmed for: audit" in logs


def test_hung_logger_process_is_replaced(tmp_path: Path) -> None:
    write_module(tmp_path)
    config = config_for(tmp_path, {"audit": {}})

    with running_proxy(config, workdir=tmp_path) as proxy:
        pid = status(proxy.base_url)["logger_process"]["pid"]
        os.kill(pid, signal.SIGSTOP)
        try:
            # No report for 10 s marks it hung; it is killed and started again.
            deadline = time.monotonic() + 25
            while (report := status(proxy.base_url))["logger_process"]["pid"] == pid:
                assert time.monotonic() < deadline, report["logger_process"]
                time.sleep(0.2)
            report = wait_state(proxy.base_url, "running")
        finally:
            if process_exists(pid):
                os.kill(pid, signal.SIGKILL)
        after = chat(proxy.base_url)
        logged = wait_records(tmp_path / "audit.jsonl", 1, "log_success")
        logs = proxy.logs()

    assert report["logger_process"]["restarts"] == 1
    assert logged[-1]["call_id"] == after.headers["x-hookgate-call-id"]
    assert f"the logger process {pid} sent no report for" in logs


def test_killed_proxy_leaves_no_logger_process(tmp_path: Path) -> None:
    write_module(tmp_path)
    config = config_for(tmp_path, {"audit": {"delay": 0.05}})

    with running_proxy(config, workdir=tmp_path) as proxy:
        pid = status(proxy.base_url)["logger_process"]["pid"]
        call_ids = {chat(proxy.base_url, content=f"n{index}").headers["x-hookgate-call-id"]
                    for index in range(10)}
        # Events wait up to 2 ms in the proxy's write buffer; a SIGKILL loses those.
        time.sleep(0.1)
        proxy.kill()
        deadline = time.monotonic() + 15
        while process_exists(pid):
            assert time.monotonic() < deadline, "the logger process outlived the proxy"
            time.sleep(0.05)

    delivered = {record["call_id"] for record in records(tmp_path / "audit.jsonl",
                                                         "log_success")}
    assert delivered == call_ids
    assert records(tmp_path / "audit.jsonl")[-1]["hook"] == "logger_flush"


# The protocol


def full_fields(status: str) -> dict[str, Any]:
    """Return `CallEvent` keyword arguments in the plain values the proxy builds."""
    start = datetime(2026, 12, 4, 22, 0, 0, 123456, tzinfo=timezone.utc)
    return {
        "call_id": "0123456789abcdef0123456789abcdef", "call_type": "chat_completion",
        "route": "/v1/chat/completions", "model": "m", "upstream_model": "gpt-4o",
        "provider": "openai", "stream": True, "status": status, "start_time": start,
        "end_time": start + timedelta(milliseconds=250),
        "first_token_time": start + timedelta(milliseconds=40), "latency_ms": 250.0,
        "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
        "messages": [{"role": "user", "content": "é ☃ \u2028 line"}],
        "params": {"temperature": 0.2, "tools": [{"type": "function"}], "n": 1},
        "response": {"id": "chatcmpl-1", "choices": [{"index": 0, "message": {
            "role": "assistant", "content": "hi"}}]},
        "error": ({"type": "ProviderError", "message": "upstream 503", "status_code": 503,
                   "provider": "openai", "cancelled": False} if status == "failure" else None),
        "metadata": {"key_hash": "abcd", "user": "u-1", "tags": ["a", "b"],
                     "trace_id": None, "client_ip": "127.0.0.1", "user_agent": "test"},
        "disabled_callbacks": ["langfuse"],
    }


@pytest.mark.parametrize("status", ["success", "failure"])
def test_encoded_fields_decode_to_their_event(status: str) -> None:
    fields = full_fields(status)

    names, decoded = parse_event(event_frame(["audit", "jsonl"], encode_event(fields))[5:])

    assert names == ["audit", "jsonl"]
    assert decoded == CallEvent(**fields)


def test_encoded_event_decodes_unchanged() -> None:
    event = CallEvent(**full_fields("failure"))

    _, decoded = parse_event(event_frame(["audit"], encode_event(event))[5:])

    assert decoded == event


def test_unencodable_value_raises_type_error() -> None:
    fields = {**full_fields("success"), "params": {"weird": object()}}

    with pytest.raises(TypeError):
        encode_event(fields)


@pytest.mark.parametrize(("data", "message"), [
    (b"\x00\x00\x00\x00", "frame length 0 is outside"),
    (b"\x7f\x00\x00\x00", "is outside 1 to"),
    (b"\x00\x00", "stream ended inside a frame header"),
    (b"\x00\x00\x00\x09E", "stream ended inside a frame"),
])
def test_broken_frames_are_rejected(data: bytes, message: str) -> None:
    async def read() -> Any:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await read_frame(reader)

    with pytest.raises(FrameError) as error:
        asyncio.run(read())

    assert message in str(error.value)


def test_config_file_turns_the_logger_process_on(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"hookgate_settings": {"logger_process": True}}), "utf-8")

    from hookgate_proxy.config import load_config

    assert load_config(path).logger_process is True
    assert load_config(path).logger_process_cpus == ()
