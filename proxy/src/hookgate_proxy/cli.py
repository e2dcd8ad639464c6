"""The `hookgate` command: `serve`, `plugins` and `plugin new`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn

from hookgate_proxy.gc_tuning import tune_for_serving

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import Message, Receive, Scope, Send

    from hookgate_proxy.config import ProxyConfig

__all__ = ["main"]

logger = logging.getLogger(__name__)

# Passed from `hookgate serve --workers N` to each worker process.
CONFIG_ENV = "HOOKGATE_CONFIG"
ADDRESS_ENV = "HOOKGATE_ADDRESS"
LOG_LEVEL_ENV = "HOOKGATE_LOG_LEVEL"

# prometheus_client's multiprocess mode reads this variable in every worker.
PROMETHEUS_PLUGIN = "prometheus"
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `hookgate` command line and return its exit code."""
    parser = _parser()
    arguments = parser.parse_args(argv)
    if not hasattr(arguments, "run"):
        parser.print_help()
        return 2
    return int(arguments.run(arguments))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hookgate", description="OpenAI-compatible LLM gateway with pluggable loggers.")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the proxy server")
    serve.add_argument("--config", metavar="FILE",
                       help="LiteLLM-format config.yaml; without it every model name is "
                            "served by the mock provider and calls are logged to a JSONL file")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on "
                       "(default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=4000, help="TCP port (default: 4000)")
    serve.add_argument("--workers", type=int, default=1,
                       help="worker processes, each with its own loggers (default: 1)")
    serve.add_argument("--graceful-timeout", type=float, default=30.0, metavar="SECONDS",
                       help="at SIGTERM, seconds to let in-flight requests finish "
                            "(default: 30); loggers then get "
                            "hookgate_settings.shutdown_timeout to flush")
    serve.add_argument("--log-level", default="info",
                       choices=["debug", "info", "warning", "error"],
                       help="log level (default: info)")
    serve.add_argument("--access-log", action="store_true",
                       help="log one line per request (off by default: it costs throughput)")
    serve.set_defaults(run=_serve)

    plugins = commands.add_parser("plugins", help="list every installed logger plugin")
    plugins.add_argument("--json", action="store_true", help="print JSON instead of a table")
    plugins.set_defaults(run=_plugins)

    plugin = commands.add_parser("plugin", help="work on a logger plugin package")
    plugin_commands = plugin.add_subparsers(title="plugin commands", metavar="COMMAND")
    new = plugin_commands.add_parser("new", help="create a new plugin package")
    new.add_argument("name", help="the plugin's name (its entry-point name)")
    new.add_argument("--dir", default=".", metavar="DIR",
                     help="directory to create the package in (default: current)")
    new.set_defaults(run=_plugin_new)
    return parser


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# serve


def _serve(arguments: argparse.Namespace) -> int:
    _configure_logging(arguments.log_level)
    from hookgate_proxy.config import ConfigError

    address = f"http://{_url_host(arguments.host)}:{arguments.port}"
    try:
        config = _load(arguments.config)
        if arguments.workers > 1:
            return _serve_workers(arguments, address, config)
        from hookgate_proxy.app import create_app

        app = _ServingApp(create_app(config, address=address), tune_gc=config.gc_tuning)
    except ConfigError as error:
        logger.error("%s", error)
        return 1

    server = _Server(uvicorn.Config(
        app, host=arguments.host, port=arguments.port, log_config=None,
        log_level=arguments.log_level, access_log=arguments.access_log, lifespan="on",
        timeout_graceful_shutdown=arguments.graceful_timeout, server_header=False))
    server.run()
    return 0 if server.started else 3


def _load(path: str | None) -> ProxyConfig:
    from hookgate_proxy.config import default_config, load_config

    return load_config(path) if path else default_config()


def _serve_workers(arguments: argparse.Namespace, address: str, config: ProxyConfig) -> int:
    # Each worker imports the app through the factory below, which reads these.
    os.environ[CONFIG_ENV] = str(Path(arguments.config).resolve()) if arguments.config else ""
    os.environ[ADDRESS_ENV] = address
    os.environ[LOG_LEVEL_ENV] = arguments.log_level

    metrics_dir = None
    if any(callback.name == PROMETHEUS_PLUGIN for callback in config.callbacks):
        metrics_dir = _prepare_metrics_dir()
    try:
        uvicorn.run("hookgate_proxy.cli:worker_app", factory=True, host=arguments.host,
                    port=arguments.port, workers=arguments.workers, log_config=None,
                    log_level=arguments.log_level, access_log=arguments.access_log,
                    timeout_graceful_shutdown=arguments.graceful_timeout, server_header=False)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _prepare_metrics_dir() -> str | None:
    """Give the workers one empty prometheus_client multiprocess directory.

    Each worker loads its own plugins, so only the parent can create a directory
    that all of them share, and it must exist before the first worker starts.
    Returns the directory to remove at exit, or None if the operator chose it.
    """
    chosen = os.environ.get(METRICS_DIR_ENV)
    if chosen:
        # Value files left by an earlier run would be added to this run's counts.
        stale = list(Path(chosen).glob("*.db"))
        for path in stale:
            path.unlink(missing_ok=True)
        logger.info("prometheus multiprocess directory %s (%d stale files removed)",
                    chosen, len(stale))
        return None

    created = tempfile.mkdtemp(prefix="hookgate-prometheus-")
    os.environ[METRICS_DIR_ENV] = created
    logger.info("prometheus multiprocess directory %s (removed at exit)", created)
    return created


def worker_app() -> _ServingApp:
    """Build the app in a worker process of `hookgate serve --workers N`."""
    from hookgate_proxy.app import create_app

    # A worker is a fresh interpreter, so the parent's logging setup is not inherited.
    _configure_logging(os.environ.get(LOG_LEVEL_ENV, "info"))

    config = _load(os.environ.get(CONFIG_ENV) or None)
    return _ServingApp(create_app(config, address=os.environ.get(ADDRESS_ENV)),
                       tune_gc=config.gc_tuning)


class _ServingApp:
    """The ASGI app as `hookgate serve` runs it.

    - After a successful lifespan startup, it tunes the garbage collector for
      serving (`gc_tuning`), in the server process only, never in a test that
      builds the app in its own process.
    - It leaves out the traceback of a startup failure hookgate already logged.
      Starlette reports a failed lifespan startup with the whole traceback, which
      uvicorn prints. When the lifespan has logged the reason itself (a required
      logger that failed to load), that traceback only buries the message.
    """

    def __init__(self, app: FastAPI, *, tune_gc: bool) -> None:
        self.app = app
        self.tune_gc = tune_gc

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def forward(message: Message) -> None:
            if (message["type"] == "lifespan.startup.failed"
                    and getattr(self.app.state, "startup_error_logged", False)):
                message = {**message, "message": ""}
            if message["type"] == "lifespan.startup.complete" and self.tune_gc:
                tune_for_serving()
            await send(message)

        await self.app(scope, receive, forward)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class _Server(uvicorn.Server):
    """uvicorn's server, exiting with 0 after a SIGTERM that shut it down cleanly.

    uvicorn re-raises a captured SIGTERM after its graceful shutdown, so the process
    would end with status 143 even when every request finished and every logger
    flushed, and a supervisor would read that as a crash.
    """

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if sig == signal.SIGTERM and sig in self._captured_signals:
            self._captured_signals.remove(sig)
            logger.info("SIGTERM received: finishing in-flight requests, then flushing "
                        "the loggers")


# plugins


def _plugins(arguments: argparse.Namespace) -> int:
    _configure_logging("warning")
    from hookgate import PluginRegistry

    registry = PluginRegistry(strict=False)
    records = registry.load_all()
    if arguments.json:
        print(json.dumps([record.as_dict() for record in records], indent=2))
        return 0
    if not records:
        print("no logger plugins installed (entry-point group hookgate.callbacks)")
        return 0
    for record in records:
        source = f"{record.distribution} {record.version}" if record.distribution else "-"
        print(f"{record.name:<20} {record.status.value:<15} {source}")
        if record.hooks:
            print(f"{'':<20} hooks: {', '.join(record.hooks)}")
        if record.error:
            print(f"{'':<20} error: {record.error}")
    return 0


# plugin new


def _plugin_new(arguments: argparse.Namespace) -> int:
    _configure_logging("warning")
    try:
        from hookgate_proxy.scaffold import create_plugin_package
    except ImportError as error:
        print(f"hookgate plugin new is not available: {error}", file=sys.stderr)
        return 1
    try:
        path = create_plugin_package(arguments.name, Path(arguments.dir))
    except (ValueError, OSError) as error:
        print(f"cannot create plugin {arguments.name!r}: {error}", file=sys.stderr)
        return 1
    print(f"created {path}")
    return 0
