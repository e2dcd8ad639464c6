"""Startup, shutdown and the command line: embedded default, config errors, SIGTERM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from hookgate_proxy.testing import (
    FakeOpenAIServer,
    read_records,
    running_proxy,
    wait_for_records,
    write_plugin_distribution,
)

RECORDER = "hookgate_proxy.testing:FileRecorder"
PLUGIN_MODULE = '''
import time

from hookgate import hookimpl
from hookgate_proxy.testing import FileRecorder


class SlowRecorder(FileRecorder):
    """A FileRecorder that takes 50 ms per event, so that events queue up."""

    @hookimpl
    def log_success(self, event):
        time.sleep(0.05)
        super().log_success(event)


class StatsRoute:
    """Mounts GET /test-stats showing the dispatcher's counters, as /metrics would."""

    @hookimpl
    def logger_routes(self, app):
        from starlette.responses import JSONResponse

        async def stats(request):
            counters = request.app.state.hookgate.dispatcher.stats()
            return JSONResponse({name: item.delivered for name, item in counters.items()})

        app.add_route("/test-stats", stats, methods=["GET"])

    @hookimpl
    def log_success(self, event):
        pass
'''


def run_cli(*arguments: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hookgate_proxy", *arguments],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, **(env or {})})


def write_config(directory: Path, config: dict[str, Any]) -> Path:
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config), "utf-8")
    return path


# The embedded default


def test_embedded_default(tmp_path: Path) -> None:
    with running_proxy(None, workdir=tmp_path) as proxy:
        client = openai.OpenAI(api_key="anything", base_url=proxy.base_url, max_retries=0)
        answer = client.chat.completions.create(
            model="claude-sonnet-4-20250514",
            messages=[{"role": "user", "content": "what llm are you"}])
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="error-500",
                                           messages=[{"role": "user", "content": "x"}])
        listing = httpx.get(proxy.base_url + "/callbacks/list").json()
        path = tmp_path / "hookgate-events.jsonl"
        records = wait_for_records(path, 2)
        logs = proxy.logs()

    assert answer.choices[0].message.content == "You said: what llm are you"
    assert listing == {"success": [], "failure": [], "success_and_failure": ["jsonl"]}
    assert [record["hook"] for record in records] == ["log_success", "log_failure"]
    assert records[0]["model"] == "claude-sonnet-4-20250514"
    assert "config: embedded default" in logs
    assert "models: *" in logs
    assert f"callback active: jsonl (success_and_failure, file {path}" in logs


# Config errors stop startup with the key path and no secret


@pytest.mark.parametrize(("config", "expected"), [
    ({"model_list": [{"model_name": "m", "litellm_params": {"model": "gpt-4o"}}]},
     "model_list.0.litellm_params.model: expected '<provider>/<upstream model>'"),
    ({"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x",
                                                            "timeout": -1}}]},
     "model_list.0.litellm_params.timeout: Input should be greater than 0 (got -1)"),
    ({"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x",
                                                            "api_key": ["sk-hidden-2"]}}]},
     "model_list.0.litellm_params.api_key: Input should be a valid string (got <hidden>)"),
    ({"general_settings": {"master_key": ["sk-hidden-1"]}},
     "general_settings.master_key: expected a non-empty string"),
    ({"litellm_settings": {"callbacks": ["Not A Name"]}},
     "litellm_settings.callbacks: invalid callback name 'Not A Name'"),
    ({"callback_settings": {"jsonl": {"required": "sometimes"}}},
     "callback_settings.jsonl.required: Input should be a valid boolean"),
    ({"model_list": [{"model_name": "m", "litellm_params": {
        "model": "openai/x", "api_key": "os.environ/HOOKGATE_TEST_UNSET_VARIABLE"}}]},
     "model_list.0.litellm_params.api_key: refers to environment variable "
     "HOOKGATE_TEST_UNSET_VARIABLE, which is not set"),
], ids=["no-provider", "negative-timeout", "secret-value", "master-key", "callback-name",
        "required-type", "missing-env"])
def test_invalid_config(tmp_path: Path, config: dict[str, Any], expected: str) -> None:
    result = run_cli("serve", "--config", str(write_config(tmp_path, config)), "--port", "9")

    assert result.returncode == 1
    assert expected in result.stderr
    assert "sk-hidden" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("target", "expected"), [
    ("no_such_module_here:Logger", "cannot import 'no_such_module_here:Logger': "
                                   "ModuleNotFoundError"),
    ("hookgate_proxy.testing:NoSuchClass", "cannot import 'hookgate_proxy.testing:NoSuchClass'"),
    ("hookgate_proxy.testing:RecordedRequest", "creating 'hookgate_proxy.testing:RecordedRequest' "
                                               "raised TypeError"),
], ids=["module", "attribute", "constructor"])
def test_python_plugin_errors(tmp_path: Path, target: str, expected: str) -> None:
    config = {"litellm_settings": {"callbacks": ["in_house"]},
              "hookgate_settings": {"plugins": {"in_house": target}}}
    result = run_cli("serve", "--config", str(write_config(tmp_path, config)), "--port", "9")

    assert result.returncode == 1
    assert f"hookgate_settings.plugins.in_house: {expected}" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreadable_config(tmp_path: Path) -> None:
    result = run_cli("serve", "--config", str(tmp_path / "missing.yaml"))

    assert result.returncode == 1
    assert "cannot read config file" in result.stderr


def test_required_callback_must_load(tmp_path: Path) -> None:
    config = {"litellm_settings": {"callbacks": ["ghost_audit"]},
              "callback_settings": {"ghost_audit": {"required": True}}}
    result = run_cli("serve", "--config", str(write_config(tmp_path, config)),
                     "--host", "127.0.0.1", "--port", "9")

    assert result.returncode == 3
    assert "required callback not active, refusing to start without it: ghost_audit" in (
        result.stderr)
    assert "Traceback" not in result.stderr


def test_ignored_and_failed_reported(tmp_path: Path) -> None:
    config = {
        "model_list": [{"model_name": "m", "model_info": {"id": "1"},
                        "litellm_params": {"model": "mock/echo", "rpm": 10}}],
        "litellm_settings": {"callbacks": ["ghost"], "drop_params": True},
        "general_settings": {"database_url": "postgres://user:pw@localhost/db"},
        "router_settings": {"routing_strategy": "simple-shuffle"},
    }
    with running_proxy(config) as proxy:
        response = httpx.post(proxy.base_url + "/chat/completions",
                              json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
        logs = proxy.logs()
    ignored = [line for line in logs.splitlines() if "ignored config keys" in line]

    assert response.status_code == 200
    assert len(ignored) == 1
    for key in ("general_settings.database_url", "litellm_settings.drop_params",
                "model_list.0.litellm_params.rpm", "model_list.0.model_info", "router_settings"):
        assert key in ignored[0]
    assert "pw@localhost" not in logs
    assert "callback ghost not active: failed" in logs


# Plugins: content, routes, listing


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("plugins")
    (directory / "lifecycle_plugins.py").write_text(textwrap.dedent(PLUGIN_MODULE), "utf-8")
    write_plugin_distribution(directory, {"recorder": RECORDER})
    return directory


def test_log_content_false_and_routes(tmp_path: Path, plugin_dir: Path) -> None:
    config = {
        "model_list": [{"model_name": "m", "litellm_params": {"model": "mock/echo"}}],
        "litellm_settings": {"callbacks": ["private", "stats"]},
        "callback_settings": {"private": {"path": str(tmp_path / "private.jsonl"),
                                          "log_content": False}},
        "hookgate_settings": {"plugins": {"private": RECORDER,
                                          "stats": "lifecycle_plugins:StatsRoute"}},
    }
    with running_proxy(config, env={"PYTHONPATH": str(plugin_dir)}) as proxy:
        httpx.post(proxy.base_url + "/chat/completions",
                   json={"model": "m", "messages": [{"role": "user", "content": "secret plan"}]})
        event = wait_for_records(tmp_path / "private.jsonl", 1, "log_success")[0]["event"]
        time.sleep(0.1)
        stats = httpx.get(proxy.base_url + "/test-stats").json()
        setup = read_records(tmp_path / "private.jsonl", "logger_setup")[0]

    assert event["messages"] == []
    assert "choices" not in event["response"]
    assert "secret plan" not in json.dumps(event)
    assert event["usage"]["total_tokens"] > 0
    assert stats == {"private": 1, "stats": 1}
    assert setup["settings"] == {"path": str(tmp_path / "private.jsonl"),
                                 "required": False, "log_content": False}


def test_plugins_command(plugin_dir: Path) -> None:
    result = run_cli("plugins", "--json", env={"PYTHONPATH": str(plugin_dir)})
    records = {record["name"]: record for record in json.loads(result.stdout)}

    assert result.returncode == 0
    assert records["recorder"]["distribution"] == "hookgate-test-recorders"
    assert records["recorder"]["status"] == "loaded"
    assert "log_success" in records["recorder"]["hooks"]
    assert records["jsonl"]["distribution"] == "hookgate-jsonl"


def test_plugins_command_table(plugin_dir: Path) -> None:
    result = run_cli("plugins", env={"PYTHONPATH": str(plugin_dir)})

    assert result.returncode == 0
    assert "recorder" in result.stdout
    assert "hookgate-test-recorders 0.0.1" in result.stdout


def test_plugin_new_command(tmp_path: Path) -> None:
    result = run_cli("plugin", "new", "team_audit", "--dir", str(tmp_path))

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "hookgate-team_audit" / "pyproject.toml").is_file()
    assert f"created {tmp_path / 'hookgate-team_audit'}" in result.stdout


def test_plugin_new_existing(tmp_path: Path) -> None:
    (tmp_path / "hookgate-team_audit").mkdir()

    result = run_cli("plugin", "new", "team_audit", "--dir", str(tmp_path))

    assert result.returncode == 1
    assert "already exists" in result.stderr


# SIGTERM


def test_sigterm_delivers_queued_events(tmp_path: Path, plugin_dir: Path) -> None:
    path = tmp_path / "slow.jsonl"
    config = {
        "model_list": [{"model_name": "m", "litellm_params": {"model": "mock/echo"}}],
        "litellm_settings": {"callbacks": ["slow"]},
        "callback_settings": {"slow": {"path": str(path)}},
        "hookgate_settings": {"plugins": {"slow": "lifecycle_plugins:SlowRecorder"}},
    }
    with running_proxy(config, env={"PYTHONPATH": str(plugin_dir)}) as proxy, \
            httpx.Client(base_url=proxy.base_url) as client:
        for index in range(40):
            client.post("/chat/completions", json={
                "model": "m", "messages": [{"role": "user", "content": f"request {index}"}]})
        queued = len(read_records(path, "log_success"))
        code = proxy.stop()
        logs = proxy.logs()

    records = read_records(path)
    assert queued < 40  # the logger was behind when SIGTERM arrived
    assert code == 0
    assert len([record for record in records if record["hook"] == "log_success"]) == 40
    assert records[-1]["hook"] == "logger_flush"
    assert "every event delivered" in logs


def test_sigterm_finishes_stream(tmp_path: Path, upstream: FakeOpenAIServer) -> None:
    upstream.reply = "one two three four five six"
    upstream.chunk_delay = 0.2
    path = tmp_path / "recorder.jsonl"
    config = {
        "model_list": [{"model_name": "m", "litellm_params": {
            "model": "openai/fake", "api_base": upstream.base_url}}],
        "litellm_settings": {"callbacks": ["recorder"]},
        "callback_settings": {"recorder": {"path": str(path)}},
        "hookgate_settings": {"plugins": {"recorder": RECORDER}},
    }
    lines: list[str] = []
    with running_proxy(config) as proxy:
        started = threading.Event()

        def read_stream() -> None:
            with httpx.stream("POST", proxy.base_url + "/chat/completions", timeout=30, json={
                    "model": "m", "stream": True,
                    "messages": [{"role": "user", "content": "x"}]}) as response:
                for line in response.iter_lines():
                    lines.append(line)
                    started.set()

        reader = threading.Thread(target=read_stream)
        reader.start()
        assert started.wait(10)
        code = proxy.stop()
        reader.join(10)

    assert code == 0
    assert "data: [DONE]" in lines
    assert [record["hook"] for record in read_records(path)
            if record["hook"].startswith("log_")] == ["log_success"]
