"""Config parsing: the LiteLLM format, environment references, lanes and ignored keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from hookgate_proxy.config import ConfigError, default_config, parse_config


def test_model_list() -> None:
    config = parse_config({"model_list": [
        {"model_name": "gpt", "litellm_params": {
            "model": "openai/gpt-4o", "api_base": "http://127.0.0.1:8000/v1/",
            "api_key": "sk-x", "timeout": 12, "organization": "org-1"}},
        {"model_name": "*", "litellm_params": {"model": "mock/*"}},
    ]})
    first, second = config.deployments

    assert (first.model_name, first.provider, first.upstream_model) == ("gpt", "openai", "gpt-4o")
    assert first.api_base == "http://127.0.0.1:8000/v1"
    assert first.api_key == "sk-x"
    assert first.timeout == 12
    assert dict(first.extra) == {"organization": "org-1"}
    assert (second.provider, second.upstream_model) == ("mock", "*")
    assert config.ignored_keys == ()


def test_environment_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKGATE_TEST_KEY", "sk-from-env")

    config = parse_config({
        "model_list": [{"model_name": "m", "litellm_params": {
            "model": "openai/x", "api_key": "os.environ/HOOKGATE_TEST_KEY"}}],
        "general_settings": {"master_key": "os.environ/HOOKGATE_TEST_KEY"},
    })

    assert config.deployments[0].api_key == "sk-from-env"
    assert config.master_key == "sk-from-env"


def test_environment_variables_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOOKGATE_TEST_SET_BY_CONFIG", raising=False)

    config = parse_config({
        "environment_variables": {"HOOKGATE_TEST_SET_BY_CONFIG": "sk-set"},
        "model_list": [{"model_name": "m", "litellm_params": {
            "model": "openai/x", "api_key": "os.environ/HOOKGATE_TEST_SET_BY_CONFIG"}}],
    })

    assert config.deployments[0].api_key == "sk-set"
    monkeypatch.delenv("HOOKGATE_TEST_SET_BY_CONFIG")


@pytest.mark.parametrize(("settings", "lanes"), [
    ({"callbacks": ["a"]}, {"a": (True, True)}),
    ({"success_callback": ["a"]}, {"a": (True, False)}),
    ({"failure_callback": ["a"]}, {"a": (False, True)}),
    ({"success_callback": ["a"], "failure_callback": ["a"]}, {"a": (True, True)}),
    ({"callbacks": "a, b"}, {"a": (True, True), "b": (True, True)}),
    ({"callbacks": None}, {}),
], ids=["both", "success", "failure", "both-lists", "comma-string", "null"])
def test_callback_lanes(settings: dict[str, object], lanes: dict[str, tuple[bool, bool]]) -> None:
    config = parse_config({"litellm_settings": settings})

    assert {callback.name: (callback.success, callback.failure)
            for callback in config.callbacks} == lanes


def test_callback_settings() -> None:
    config = parse_config({
        "litellm_settings": {"callbacks": ["audit"]},
        "callback_settings": {"audit": {"required": True, "log_content": False, "path": "/x"}},
    })
    callback = config.callbacks[0]

    assert callback.required is True
    assert callback.log_content is False
    assert dict(callback.settings) == {"required": True, "log_content": False, "path": "/x"}


def test_ignored_keys() -> None:
    config = parse_config({
        "model_list": [
            {"model_name": "m", "model_info": {}, "litellm_params": {
                "model": "mock/echo", "api_key": "k", "rpm": 5}},
            {"model_name": "o", "litellm_params": {"model": "openai/x", "api_key": "k"}},
        ],
        "litellm_settings": {"drop_params": True},
        "general_settings": {"master_key": "sk-1", "alerting": ["slack"]},
        "router_settings": {},
    })

    assert config.ignored_keys == (
        "general_settings.alerting",
        "litellm_settings.drop_params",
        "model_list.0.litellm_params.api_key",
        "model_list.0.litellm_params.rpm",
        "model_list.0.model_info",
        "router_settings",
    )


@pytest.mark.parametrize(("data", "message"), [
    ({"model_list": [{"model_name": "m", "litellm_params": {"model": "azure/x"}}]},
     "provider one of openai, anthropic, mock"),
    ({"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x",
                                                            "api_base": "127.0.0.1:80"}}]},
     "model_list.0.litellm_params.api_base: expected an http:// or https:// URL"),
    ({"model_list": [{"litellm_params": {"model": "openai/x"}}]},
     "model_list.0.model_name: Field required"),
    ({"hookgate_settings": {"plugins": {"x": "not a target"}}},
     "expected 'module:attribute'"),
    ({"hookgate_settings": {"unknown": 1}}, "hookgate_settings.unknown: Extra inputs"),
    ({"environment_variables": ["A=1"]}, "environment_variables: expected a mapping"),
], ids=["provider", "api-base", "model-name", "plugin-target", "hookgate-key", "env-section"])
def test_invalid(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(data)

    assert message in str(raised.value)


def test_secret_value_hidden() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config({"model_list": [{"model_name": "m", "litellm_params": {
            "model": "openai/x", "api_key": {"value": "sk-very-secret"}}}]})

    assert "sk-very-secret" not in str(raised.value)
    assert "<hidden>" in str(raised.value)


def test_default_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOOKGATE_JSONL_PATH", str(tmp_path / "calls.jsonl"))

    config = default_config()

    assert config.master_key is None
    assert [(d.model_name, d.provider) for d in config.deployments] == [("*", "mock")]
    assert [callback.name for callback in config.callbacks] == ["jsonl"]
    assert config.callbacks[0].settings == {"path": str(tmp_path / "calls.jsonl")}
