"""The FastAPI application: routes, and the plugin lifecycle in its lifespan.

`create_app(config)` builds the app without starting anything. At startup the
lifespan loads only the plugins the config enables, sets each up, starts the
dispatcher, mounts plugin routes and opens the shared upstream session. At
shutdown it drains and flushes the loggers within `shutdown_timeout`.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from hookgate import Dispatcher, LaneSettings, PluginLoadError, PluginRegistry, PluginStatus
from hookgate_proxy import __version__
from hookgate_proxy.auth import Authenticator
from hookgate_proxy.calls import Receivers
from hookgate_proxy.config import ConfigError, ProxyConfig
from hookgate_proxy.errors import ProxyError, error_response
from hookgate_proxy.handlers import chat_completions, embeddings
from hookgate_proxy.logger_process import (
    EventDispatcher,
    LoggerProcess,
    LoggerProcessError,
    PluginSpec,
    SplitDispatcher,
)
from hookgate_proxy.providers import Provider, ProviderMissing, build_providers, provider_class
from hookgate_proxy.routing import ModelRouter

__all__ = ["HookgateState", "StartupError", "create_app"]

logger = logging.getLogger(__name__)

# Upstream connection pool: enough parallel connections for a busy gateway, while
# bounding what one slow upstream host can hold open.
POOL_LIMIT = 1000
POOL_LIMIT_PER_HOST = 500


class StartupError(RuntimeError):
    """The proxy cannot start as configured (for example a required logger failed)."""


@dataclass
class HookgateState:
    """The application state the routes use, on `app.state.hookgate`.

    `registry` and `dispatcher` are the interface plugins may use: a plugin's
    `logger_routes` can read `app.state.hookgate.dispatcher.stats()`.
    """

    config: ProxyConfig
    registry: PluginRegistry
    dispatcher: EventDispatcher
    """hookgate-core's `Dispatcher`, or a `SplitDispatcher` with a logger process."""
    router: ModelRouter
    providers: dict[str, Provider]
    session: aiohttp.ClientSession
    auth: Authenticator
    receivers: Receivers


def create_app(config: ProxyConfig, *, plugins: Mapping[str, object] | None = None,
               address: str | None = None) -> FastAPI:
    """Build the proxy application for `config`.

    :param plugins: Logger plugin objects registered from Python under these names,
        in addition to `hookgate_settings.plugins` in the config; each still has to
        be enabled in a callback list.
    :param address: The URL the server listens on, for the startup summary.

    Raises ConfigError if a provider the deployments use or a
    `hookgate_settings.plugins` target cannot be imported.
    """
    for name in sorted({deployment.provider for deployment in config.deployments}):
        try:
            provider_class(name)
        except ProviderMissing as error:
            raise ConfigError(f"model_list: {error}") from None
    python_plugins = dict(_import_plugins(config))
    python_plugins.update(plugins or {})

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await _start(app, config, python_plugins)
        _log_summary(state, address)
        try:
            yield
        finally:
            await _stop(state)

    app = FastAPI(title="hookgate", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    _add_routes(app)
    return app


# Startup and shutdown


def _import_plugins(config: ProxyConfig) -> dict[str, object]:
    enabled = {callback.name for callback in config.callbacks}
    objects: dict[str, object] = {}
    for name, target in config.python_plugins.items():
        if name not in enabled:
            logger.warning("hookgate_settings.plugins.%s is not enabled by any callback list; "
                           "add %r to litellm_settings.callbacks to use it", name, name)
            continue
        module_name, _, attribute = target.partition(":")
        if config.base_directory is not None and str(config.base_directory) not in sys.path:
            # Like a LiteLLM custom callback module, an in-house plugin module may sit
            # beside the config file.
            sys.path.append(str(config.base_directory))
        try:
            value: Any = importlib.import_module(module_name)
            for part in attribute.split("."):
                value = getattr(value, part)
        except (ImportError, AttributeError) as error:
            raise ConfigError(f"hookgate_settings.plugins.{name}: cannot import {target!r}: "
                              f"{type(error).__name__}: {error}") from None
        if inspect.isclass(value):
            try:
                value = value()
            except Exception as error:
                raise ConfigError(f"hookgate_settings.plugins.{name}: creating {target!r} "
                                  f"raised {type(error).__name__}: {error}") from None
        objects[name] = value
    return objects


async def _start(app: FastAPI, config: ProxyConfig,
                 python_plugins: Mapping[str, object]) -> HookgateState:
    registry = PluginRegistry()
    for callback in config.callbacks:
        if callback.name in python_plugins:
            _register(registry, python_plugins[callback.name], callback.name)
    lanes = {callback.name: LaneSettings(success=callback.success, failure=callback.failure,
                                         required=callback.required,
                                         log_content=callback.log_content)
             for callback in config.callbacks}

    elsewhere = []
    for callback in config.callbacks:
        # A plugin object handed to create_app cannot be re-created in another process.
        portable = (callback.name not in python_plugins
                    or callback.name in config.python_plugins)
        if config.logger_process and portable and _can_run_elsewhere(registry, callback.name):
            elsewhere.append(PluginSpec(
                callback.name, callback.settings, callback.success, callback.failure,
                callback.required, callback.log_content,
                target=config.python_plugins.get(callback.name)))
        else:
            await registry.setup(callback.name, callback.settings)

    local = {name: settings for name, settings in lanes.items()
             if name not in {spec.name for spec in elsewhere}}
    in_proxy = Dispatcher(registry, local, backlog=config.backlog,
                          hook_timeout=config.hook_timeout)
    await in_proxy.start()
    dispatcher: EventDispatcher = in_proxy
    if elsewhere:
        dispatcher = await _start_logger_process(config, registry, in_proxy, elsewhere, lanes)
    for name in dispatcher.active:
        registry.add_routes(name, app)

    inactive = [callback.name for callback in config.callbacks
                if callback.required and callback.name not in dispatcher.active]
    if inactive:
        await dispatcher.close(1.0)
        details = "; ".join(f"{name}: {_record_error(registry, name)}" for name in inactive)
        message = (f"required callback not active, refusing to start without it: {details}. "
                   "Fix the plugin or set callback_settings.<name>.required to false")
        logger.critical(message)
        app.state.startup_error_logged = True
        raise StartupError(message)

    connector = aiohttp.TCPConnector(limit=POOL_LIMIT, limit_per_host=POOL_LIMIT_PER_HOST,
                                     ttl_dns_cache=300)
    session = aiohttp.ClientSession(connector=connector, auto_decompress=True,
                                    trust_env=False)
    try:
        providers = build_providers({d.provider for d in config.deployments}, session)
    except Exception:
        await session.close()
        await dispatcher.close(1.0)
        raise

    state = HookgateState(config=config, registry=registry, dispatcher=dispatcher,
                          router=ModelRouter(config.deployments), providers=providers,
                          session=session, auth=Authenticator(config.master_key),
                          receivers=Receivers.of(dispatcher))
    app.state.hookgate = state
    return state


def _can_run_elsewhere(registry: PluginRegistry, name: str) -> bool:
    """Return True if plugin `name` loads and serves no routes, so it may leave the proxy."""
    record = registry.record(name)
    if record is None or record.status is PluginStatus.INSTALLED:
        record = registry.load(name)
    return (record.status is PluginStatus.LOADED
            and registry.hook_call(name, "logger_routes") is None)


async def _start_logger_process(config: ProxyConfig, registry: PluginRegistry,
                                local: Dispatcher, plugins: list[PluginSpec],
                                lanes: Mapping[str, LaneSettings]) -> SplitDispatcher:
    sys_path = [str(config.base_directory)] if config.base_directory is not None else []
    process = LoggerProcess(plugins, backlog=config.backlog, hook_timeout=config.hook_timeout,
                            shutdown_timeout=config.shutdown_timeout,
                            cpus=config.logger_process_cpus, sys_path=sys_path,
                            gc_tuning=config.gc_tuning)
    try:
        # Each plugin's logger_setup may take up to 30 s there, as it may here.
        ready = await process.start(timeout=30.0 * len(plugins) + 15.0)
    except LoggerProcessError as error:
        await local.close(1.0)
        message = f"{error}; set hookgate_settings.logger_process to false to run the loggers " \
                  "in the proxy's process"
        logger.critical(message)
        raise StartupError(message) from None
    dispatcher = SplitDispatcher(local, process, ready, lanes)
    try:
        for name, outcome in ready.records.items():
            status = PluginStatus(outcome["status"])
            if status is PluginStatus.ACTIVE:
                registry.activate(name)
            else:
                registry.fail(name, f"in the logger process: {outcome['error']}", status=status)
    except PluginLoadError:
        await dispatcher.close(1.0)
        raise
    return dispatcher


def _register(registry: PluginRegistry, plugin: object, name: str) -> None:
    # Registered before any discovery, so a Python registration takes the name even
    # when an installed distribution declares the same entry point.
    try:
        registry.register(plugin, name)
    except PluginLoadError as error:
        logger.error("plugin %s registered from Python failed: %s", name, error)


def _record_error(registry: PluginRegistry, name: str) -> str:
    record = registry.record(name)
    if record is None:
        return "not found"
    return f"{record.status.value} ({record.error})"


async def _stop(state: HookgateState) -> None:
    report = await state.dispatcher.close(state.config.shutdown_timeout)
    for provider in state.providers.values():
        await provider.aclose()
    await state.session.close()
    if report.complete:
        logger.info("shutdown complete: every event delivered and every logger flushed")
    else:
        undelivered = ", ".join(f"{name} {count}" for name, count
                                in sorted(report.undelivered.items())) or "none counted"
        logger.error("shutdown incomplete within %.0f s: events not delivered: %s; flush "
                     "failed or not confirmed for: %s", state.config.shutdown_timeout,
                     undelivered, ", ".join(report.flush_failed) or "none")


def _log_summary(state: HookgateState, address: str | None) -> None:
    config = state.config
    logger.info("hookgate %s listening on %s (config: %s)", __version__,
                address or "the configured address", config.source)
    logger.info("models: %s", ", ".join(state.router.names) or "none")
    if config.master_key:
        logger.info("auth: master key required on every route but /health/* and plugin "
                    "routes, which decide their own")
    else:
        logger.info("auth: none (no general_settings.master_key)")

    enabled = {callback.name: callback for callback in config.callbacks}
    active = state.dispatcher.active
    for name in sorted(active):
        callback = enabled[name]
        lanes = state.dispatcher.categories()
        category = next(key for key, names in lanes.items() if name in names)
        details = [category]
        if callback.required:
            details.append("required")
        if not callback.log_content:
            details.append("without content")
        path = callback.settings.get("path")
        if path:
            details.append(f"file {path}")
        logger.info("callback active: %s (%s)", name, ", ".join(details))
    if not active:
        logger.info("callbacks active: none")
    for name in sorted(enabled):
        if name not in active:
            logger.error("callback %s not active: %s", name, _record_error(state.registry, name))
    if config.logger_process_cpus and not config.logger_process:
        logger.warning("hookgate_settings.logger_process_cpus is set but logger_process is "
                       "false, so no logger process runs and the CPUs are not used")
    if config.ignored_keys:
        logger.warning("ignored config keys (not supported by hookgate): %s",
                       ", ".join(config.ignored_keys))


# Routes


def _json(payload: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status_code,
                    media_type="application/json")


def _state(request: Request) -> HookgateState:
    return request.app.state.hookgate  # type: ignore[no-any-return]


def _add_routes(app: FastAPI) -> None:
    # Plain Starlette routes: the handlers read the body themselves, so FastAPI's
    # parameter resolution and response serialization would only add cost, and a
    # streaming response is a bare ASGI callable that FastAPI would try to encode.
    router = app.router
    for prefix in ("", "/v1"):
        router.add_route(f"{prefix}/chat/completions", chat_completions, methods=["POST"],
                         include_in_schema=False)
        router.add_route(f"{prefix}/embeddings", embeddings, methods=["POST"],
                         include_in_schema=False)
        router.add_route(f"{prefix}/models", list_models, methods=["GET"],
                         include_in_schema=False)
    for path in ("/health/liveliness", "/health/liveness"):
        router.add_route(path, liveness, methods=["GET"], include_in_schema=False)
    router.add_route("/health/readiness", readiness, methods=["GET"], include_in_schema=False)
    router.add_route("/callbacks/list", list_callbacks, methods=["GET"], include_in_schema=False)
    router.add_route("/callbacks/status", callback_status, methods=["GET"],
                     include_in_schema=False)
    app.add_exception_handler(StarletteHTTPException, _http_error)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    kind = "NotFound" if error.status_code == 404 else "HTTPError"
    return error_response(ProxyError(f"{request.method} {request.url.path}: {error.detail}",
                                     status_code=error.status_code, kind=kind))


async def liveness(request: Request) -> Response:
    """Report that the process is up (open: no key needed)."""
    return _json({"status": "healthy"})


async def readiness(request: Request) -> Response:
    """Report that startup finished and requests are served (open: no key needed)."""
    state = getattr(request.app.state, "hookgate", None)
    if state is None:
        return _json({"status": "starting"}, status_code=503)
    return _json({"status": "ready", "version": __version__})


async def list_models(request: Request) -> Response:
    """List the model names this proxy serves, in the OpenAI `models.list` format."""
    state = _state(request)
    try:
        state.auth.check(request.headers)
    except ProxyError as error:
        return error_response(error)
    data = [{"id": name, "object": "model", "created": 0, "owned_by": "hookgate"}
            for name in state.router.names]
    return _json({"object": "list", "data": data})


async def list_callbacks(request: Request) -> Response:
    """List active callbacks by the events they receive (admin only when a key is set)."""
    state = _state(request)
    try:
        state.auth.check(request.headers)
    except ProxyError as error:
        return error_response(error)
    return _json(state.dispatcher.categories())


async def callback_status(request: Request) -> Response:
    """List every known plugin with its record, lanes, live counters and health."""
    state = _state(request)
    try:
        state.auth.check(request.headers)
    except ProxyError as error:
        return error_response(error)

    active = state.dispatcher.active
    stats = state.dispatcher.stats()
    enabled = {callback.name: callback for callback in state.config.callbacks}
    plugins = []
    for record in state.registry.records:
        entry = record.as_dict()
        callback = enabled.get(record.name)
        entry["enabled"] = callback is not None
        entry["receiving"] = record.name in active
        if callback is not None:
            entry["lanes"] = {"success": callback.success, "failure": callback.failure}
            entry["required"] = callback.required
            entry["log_content"] = callback.log_content
        if record.name in stats:
            entry["stats"] = stats[record.name].as_dict()
        if record.status is PluginStatus.ACTIVE:
            entry["health"] = state.dispatcher.health(record.name)
        plugins.append(entry)
    payload: dict[str, Any] = {"plugins": plugins, "categories": state.dispatcher.categories()}
    if isinstance(state.dispatcher, SplitDispatcher):
        payload["logger_process"] = state.dispatcher.describe()
    return _json(payload)
