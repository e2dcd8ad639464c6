"""The proxy config: the LiteLLM proxy `config.yaml` format, validated with pydantic.

Users switch from the LiteLLM proxy by changing the command, so the same file is
read here. Keys hookgate does not support are collected and logged once at startup
as ignored, never dropped silently. An invalid value stops startup with the key
path, the value (unless the key contains a secret) and what is expected.

`os.environ/NAME` in any string value is replaced by that environment variable;
a missing variable is a config error.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from hookgate.plugins import NAME_PATTERN
from hookgate_proxy.providers.base import Deployment

__all__ = [
    "PROVIDERS",
    "ConfigError",
    "ProxyConfig",
    "default_config",
    "load_config",
    "parse_config",
]

logger = logging.getLogger(__name__)

PROVIDERS = ("openai", "anthropic", "mock")
ENV_PREFIX = "os.environ/"
DEFAULT_JSONL_PATH = "hookgate-events.jsonl"

# Key names whose values are never shown in an error message or a log line.
SECRET_KEY = re.compile(r"(key|secret|token|password|credential)", re.IGNORECASE)

# Keys read by hookgate in each section; every other key in a known section is
# reported as ignored. The callback lists accept a YAML list or a comma-separated string.
LITELLM_SETTINGS_KEYS = {"callbacks", "success_callback", "failure_callback"}
GENERAL_SETTINGS_KEYS = {"master_key"}
LITELLM_PARAMS_KEYS = {"model", "api_base", "api_key", "timeout"}
# `litellm_params` keys beyond the common ones that each provider reads from
# `Deployment.extra`.
PROVIDER_PARAMS = {
    "openai": {"organization", "extra_headers"},
    "anthropic": {"max_tokens", "api_version", "extra_headers"},
    "mock": set(),
}
TOP_LEVEL_KEYS = {"model_list", "litellm_settings", "general_settings", "callback_settings",
                  "environment_variables", "hookgate_settings"}


class ConfigError(Exception):
    """The config is invalid; the message names the key path and what is expected."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LitellmParams(_Strict):
    """`model_list[].litellm_params`: where and how to call the upstream model."""

    model_config = ConfigDict(extra="allow", frozen=True)

    model: str = Field(min_length=3)
    api_base: str | None = None
    api_key: str | None = Field(default=None, repr=False)
    timeout: float = Field(default=600.0, gt=0)

    @field_validator("model")
    @classmethod
    def _check_provider(cls, value: str) -> str:
        provider, _, upstream = value.partition("/")
        if provider not in PROVIDERS or not upstream:
            raise ValueError(
                f"expected '<provider>/<upstream model>' with provider one of "
                f"{', '.join(PROVIDERS)}, for example 'openai/gpt-4o-mini'"
            )
        return value

    @field_validator("api_base")
    @classmethod
    def _check_api_base(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://", value):
            raise ValueError("expected an http:// or https:// URL")
        return value.rstrip("/") if value else value


class ModelEntry(_Strict):
    """One `model_list` entry."""

    model_config = ConfigDict(extra="allow", frozen=True)

    model_name: str = Field(min_length=1)
    litellm_params: LitellmParams


class CallbackLists(_Strict):
    """The callback lists of `litellm_settings`; its other keys are reported as ignored."""

    model_config = ConfigDict(extra="allow", frozen=True)

    callbacks: tuple[str, ...] = ()
    success_callback: tuple[str, ...] = ()
    failure_callback: tuple[str, ...] = ()

    @field_validator("callbacks", "success_callback", "failure_callback", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if value is None:
            return ()
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("callbacks", "success_callback", "failure_callback")
    @classmethod
    def _check_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not NAME_PATTERN.match(name):
                raise ValueError(
                    f"invalid callback name {name!r}: a name is the plugin's entry-point "
                    "name, 1 to 64 lowercase letters, digits, '_' or '-', starting with a "
                    "letter (see `hookgate plugins`)"
                )
        return value


class CallbackSettings(BaseModel):
    """`callback_settings.<name>`: passed whole to the plugin's `logger_setup`."""

    model_config = ConfigDict(extra="allow", frozen=True)

    required: bool = False
    """No request may disable this callback (hookgate's addition)."""
    log_content: bool = True
    """False: the plugin gets events without messages or output (hookgate's addition)."""


class HookgateSettings(_Strict):
    """`hookgate_settings`: options that the LiteLLM format has no place for."""

    plugins: dict[str, str] = Field(default_factory=dict)
    """Plugins registered from Python code: name -> `module:attribute`. A class is
    instantiated with no arguments; any other object is registered as it is."""
    backlog: int = Field(default=10_000, ge=1)
    """Events queued per plugin before new ones are dropped and counted."""
    hook_timeout: float = Field(default=30.0, gt=0)
    """Seconds one log hook call may take before it counts as failed."""
    shutdown_timeout: float = Field(default=10.0, gt=0)
    """Seconds at shutdown to deliver queued events and flush every plugin."""
    logger_process: bool = False
    """Run the loggers in a separate process, fed by the proxy (see docs/config.md)."""
    logger_process_cpus: tuple[StrictInt, ...] = ()
    """CPUs the logger process may run on (Linux); empty: wherever the proxy may."""
    gc_tuning: bool = True
    """Freeze startup objects and collect garbage less often (see gc_tuning.py)."""

    @field_validator("logger_process_cpus")
    @classmethod
    def _check_cpus(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if value and not hasattr(os, "sched_setaffinity"):
            raise ValueError("pinning the logger process to CPUs needs Linux; remove "
                             "logger_process_cpus")
        # The proxy itself may be pinned to other CPUs, so check against the machine's.
        if len(set(value)) != len(value):
            raise ValueError(f"each CPU once, got {list(value)}")
        count = os.cpu_count() or 1
        unknown = sorted(cpu for cpu in value if not 0 <= cpu < count)
        if unknown:
            raise ValueError(f"no CPU {', '.join(map(str, unknown))} on this machine "
                             f"(CPUs 0 to {count - 1})")
        return value

    @field_validator("plugins")
    @classmethod
    def _check_targets(cls, value: dict[str, str]) -> dict[str, str]:
        for name, target in value.items():
            if not NAME_PATTERN.match(name):
                raise ValueError(f"invalid plugin name {name!r}: use 1 to 64 lowercase "
                                 "letters, digits, '_' or '-', starting with a letter")
            if not re.match(r"^[\w.]+:[\w.]+$", target):
                raise ValueError(f"plugin {name!r}: expected 'module:attribute', got {target!r}")
        return value


class _RawConfig(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    model_list: tuple[ModelEntry, ...] = ()
    litellm_settings: CallbackLists = Field(default_factory=CallbackLists)
    general_settings: dict[str, Any] = Field(default_factory=dict)
    callback_settings: dict[str, CallbackSettings] = Field(default_factory=dict)
    hookgate_settings: HookgateSettings = Field(default_factory=HookgateSettings)


@dataclass(frozen=True)
class CallbackConfig:
    """One enabled callback: its lanes and the settings passed to its `logger_setup`."""

    name: str
    success: bool
    failure: bool
    required: bool = False
    log_content: bool = True
    settings: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class ProxyConfig:
    """The validated config, ready for the application."""

    deployments: tuple[Deployment, ...]
    callbacks: tuple[CallbackConfig, ...]
    master_key: str | None = field(default=None, repr=False)
    python_plugins: Mapping[str, str] = field(default_factory=dict)
    backlog: int = 10_000
    hook_timeout: float = 30.0
    shutdown_timeout: float = 10.0
    logger_process: bool = False
    """Run the loggers that serve no routes in a separate process."""
    logger_process_cpus: tuple[int, ...] = ()
    gc_tuning: bool = True
    """Tune the garbage collector of the serving processes after startup."""
    ignored_keys: tuple[str, ...] = ()
    """Key paths present in the file that hookgate does not support."""
    source: str = "embedded default"
    """The config file path, or "embedded default"."""
    base_directory: Path | None = None
    """The config file's directory, searched for `hookgate_settings.plugins` modules."""

    @property
    def model_names(self) -> list[str]:
        return [deployment.model_name for deployment in self.deployments]


def default_config() -> ProxyConfig:
    """Return the embedded default: every model served by `mock`, the JSONL logger, no key.

    The JSONL file is `hookgate-events.jsonl` in the working directory unless
    HOOKGATE_JSONL_PATH names another.
    """
    path = os.environ.get("HOOKGATE_JSONL_PATH") or DEFAULT_JSONL_PATH
    return ProxyConfig(
        deployments=(Deployment(model_name="*", provider="mock", upstream_model="*"),),
        callbacks=(CallbackConfig("jsonl", success=True, failure=True,
                                  settings={"path": str(Path(path).resolve())}),),
    )


def load_config(path: str | Path) -> ProxyConfig:
    """Read and validate a config file. Raises ConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top level, "
                          f"got {type(data).__name__}")
    return parse_config(data, source=str(path), base_directory=path.parent.resolve())


def parse_config(data: Mapping[str, Any], *, source: str = "<dict>",
                 base_directory: Path | None = None) -> ProxyConfig:
    """Validate a config mapping (the parsed YAML). Raises ConfigError."""
    environment = data.get("environment_variables") or {}
    if not isinstance(environment, dict):
        raise ConfigError(f"{source}: environment_variables: expected a mapping of names to "
                          "values")
    for name, value in environment.items():
        # LiteLLM sets these before reading the rest, so os.environ/ references see them.
        os.environ.setdefault(str(name), str(value))

    resolved = _resolve_environment(data, ())
    try:
        raw = _RawConfig.model_validate(resolved)
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None

    deployments = tuple(_deployment(entry) for entry in raw.model_list)
    callbacks = _callbacks(raw, source)
    master_key = raw.general_settings.get("master_key")
    if master_key is not None and (not isinstance(master_key, str) or not master_key):
        raise ConfigError(f"{source}: general_settings.master_key: expected a non-empty string")
    settings = raw.hookgate_settings

    return ProxyConfig(
        deployments=deployments,
        callbacks=callbacks,
        master_key=master_key,
        python_plugins=dict(settings.plugins),
        backlog=settings.backlog,
        hook_timeout=settings.hook_timeout,
        shutdown_timeout=settings.shutdown_timeout,
        logger_process=settings.logger_process,
        logger_process_cpus=settings.logger_process_cpus,
        gc_tuning=settings.gc_tuning,
        ignored_keys=tuple(_ignored_keys(resolved)),
        source=source,
        base_directory=base_directory,
    )


def _resolve_environment(value: Any, path: tuple[str, ...]) -> Any:
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX):]
        if name not in os.environ:
            raise ConfigError(f"{_join(path)}: refers to environment variable {name}, which is "
                              "not set; set it or put the value in the config")
        return os.environ[name]
    if isinstance(value, dict):
        return {key: _resolve_environment(item, (*path, str(key))) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve_environment(item, (*path, str(index)))
                for index, item in enumerate(value)]
    return value


def _deployment(entry: ModelEntry) -> Deployment:
    params = entry.litellm_params
    provider, _, upstream = params.model.partition("/")
    extra = {key: value for key, value in (params.model_extra or {}).items()}
    return Deployment(
        model_name=entry.model_name,
        provider=provider,
        upstream_model=upstream,
        api_base=params.api_base,
        api_key=params.api_key,
        timeout=params.timeout,
        extra=extra,
    )


def _callbacks(raw: _RawConfig, source: str) -> tuple[CallbackConfig, ...]:
    lists = raw.litellm_settings
    success = set(lists.success_callback) | set(lists.callbacks)
    failure = set(lists.failure_callback) | set(lists.callbacks)

    unused = sorted(set(raw.callback_settings) - success - failure)
    if unused:
        logger.warning("%s: callback_settings for %s, which no callback list enables; add the "
                       "name to litellm_settings.callbacks to use it", source, ", ".join(unused))

    callbacks = []
    for name in sorted(success | failure):
        settings = raw.callback_settings.get(name, CallbackSettings())
        callbacks.append(CallbackConfig(
            name=name,
            success=name in success,
            failure=name in failure,
            required=settings.required,
            log_content=settings.log_content,
            settings=settings.model_dump(),
        ))
    return tuple(callbacks)


def _ignored_keys(data: Mapping[str, Any]) -> list[str]:
    ignored = [key for key in data if key not in TOP_LEVEL_KEYS]
    for section, known in (("litellm_settings", LITELLM_SETTINGS_KEYS),
                           ("general_settings", GENERAL_SETTINGS_KEYS)):
        values = data.get(section) or {}
        ignored += [f"{section}.{key}" for key in values if key not in known]
    for index, entry in enumerate(data.get("model_list") or []):
        if not isinstance(entry, dict):
            continue
        ignored += [f"model_list.{index}.{key}" for key in entry
                    if key not in ("model_name", "litellm_params")]
        params = entry.get("litellm_params") or {}
        provider = str(params.get("model", "")).partition("/")[0]
        known = LITELLM_PARAMS_KEYS | PROVIDER_PARAMS.get(provider, set())
        if provider == "mock":
            # The mock provider makes no connection, so it has no use for these.
            known = known - {"api_base", "api_key"}
        ignored += [f"model_list.{index}.litellm_params.{key}" for key in params
                    if key not in known]
    return sorted(set(ignored))


def _join(path: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in path) or "<top level>"


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"invalid config ({source}):"]
    for item in error.errors():
        path = _join(item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if SECRET_KEY.search(path):
            shown = "<hidden>"
        else:
            shown = repr(item.get("input"))
            if len(shown) > 80:
                shown = shown[:77] + "..."
        lines.append(f"  {path}: {message} (got {shown})")
    return "\n".join(lines)
