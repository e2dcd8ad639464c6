"""The prometheus logger plugin: request, token, latency and callback metrics at `/metrics`."""

from __future__ import annotations

import asyncio
import hmac
import logging
import multiprocessing
import os
import threading
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, exposition, multiprocess, values

from hookgate import CallEvent, hookimpl
from hookgate_prometheus.metrics import Metrics
from hookgate_prometheus.settings import PrometheusSettings, parse_settings

__all__ = ["MULTIPROC_DIR_ENV", "PrometheusLogger"]

logger = logging.getLogger(__name__)

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

# prometheus_client keeps one set of value files per process in multiprocess mode,
# keyed by metric name and labels. Two loggers in one process would write the same
# keys and overwrite each other's counts, so only one may run per process.
_multiprocess_owner: dict[int, str] = {}
_owner_lock = threading.Lock()


class PrometheusLogger:
    """Counts every call it receives and serves the counts on the proxy's own port.

    With `hookgate serve --workers N`, PROMETHEUS_MULTIPROC_DIR must name an empty
    directory shared by the workers before they start. Each worker then writes its
    counts there, and the worker that serves a scrape reports the sum of all of them.
    """

    def __init__(self) -> None:
        self.name = "prometheus"
        self.settings: PrometheusSettings | None = None
        self.metrics: Metrics | None = None
        self.multiprocess_dir: str | None = None
        self._app: Any = None
        self._stop = threading.Event()
        self._sync_thread: threading.Thread | None = None

    @hookimpl
    def logger_setup(self, name: str, settings: Mapping[str, Any]) -> None:
        self.name = name
        self.settings = parse_settings(name, settings)
        self.multiprocess_dir = _multiprocess_dir(name)
        if self.multiprocess_dir is not None:
            _claim_multiprocess(name)

        # A registry of the logger's own, never prometheus_client's global REGISTRY,
        # so that two proxies built in one process (tests) keep separate counts.
        self.metrics = Metrics(self.settings, CollectorRegistry(auto_describe=True))
        logger.info("plugin %s: serving metrics at %s (%s)", name, self.settings.path,
                    f"multiprocess mode, {self.multiprocess_dir}" if self.multiprocess_dir
                    else "single process")

    @hookimpl
    def log_success(self, event: CallEvent) -> None:
        if self.metrics is not None:
            self.metrics.observe(event)

    @hookimpl
    def log_failure(self, event: CallEvent) -> None:
        if self.metrics is not None:
            self.metrics.observe(event)

    @hookimpl
    def logger_routes(self, app: Any) -> None:
        if self.settings is None:
            raise RuntimeError(f"plugin {self.name}: logger_routes called before logger_setup")
        self._app = app
        # add_route, not add_api_route: the page is plain text, needs no FastAPI
        # parameter parsing, and works on any Starlette application.
        app.add_route(self.settings.path, self._scrape, methods=["GET"],
                      include_in_schema=False)
        if self.multiprocess_dir is not None:
            # A scrape reaches one worker only; the others copy their callback
            # counters into the shared files on a timer so that it can report them.
            self._sync_thread = threading.Thread(
                target=self._sync_periodically, name=f"hookgate-{self.name}-sync", daemon=True)
            self._sync_thread.start()

    @hookimpl
    def logger_flush(self, timeout: float) -> None:
        self._stop.set()
        if self._sync_thread is not None:
            self._sync_thread.join(max(0.0, min(timeout, 2.0)))
        self._sync_from_app()
        if self.multiprocess_dir is not None:
            # Removes this process's `livesum` gauge files (the callback backlog), so a
            # stopped worker no longer adds to it. Counters stay: they are totals.
            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)
            with _owner_lock:
                _multiprocess_owner.pop(os.getpid(), None)

    @hookimpl
    def logger_health(self) -> Mapping[str, Any]:
        return {
            "path": self.settings.path if self.settings else None,
            "mode": "multiprocess" if self.multiprocess_dir else "single process",
            "multiprocess_dir": self.multiprocess_dir,
            "models": self.metrics.model_count if self.metrics else 0,
            "token_required": bool(self.settings and self.settings.token),
        }

    # The scrape page

    async def _scrape(self, request: Any) -> Any:
        from starlette.responses import PlainTextResponse, Response

        assert self.settings is not None and self.metrics is not None
        if self.settings.token is not None and not _authorized(request, self.settings.token):
            return PlainTextResponse("missing or invalid bearer token for the metrics page\n",
                                     status_code=401,
                                     headers={"WWW-Authenticate": 'Bearer realm="metrics"'})

        # The dispatcher lives on the event loop, so its snapshot is taken here. Only
        # the rendering moves to a thread, because it reads files in multiprocess mode.
        self._sync_from_app(request.app)
        accept = request.headers.get("accept", "")
        body, content_type = await asyncio.to_thread(self._render, accept)
        return Response(body, media_type=None, headers={"Content-Type": content_type})

    def _render(self, accept: str) -> tuple[bytes, str]:
        assert self.metrics is not None
        registry = self.metrics.registry
        if self.multiprocess_dir is not None:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        encoder, content_type = exposition.choose_encoder(accept)
        return encoder(registry), content_type

    # Per-callback counters

    def _sync_from_app(self, app: Any = None) -> None:
        app = app if app is not None else self._app
        state = getattr(getattr(app, "state", None), "hookgate", None)
        dispatcher = getattr(state, "dispatcher", None)
        if dispatcher is None or self.metrics is None:
            return
        self.metrics.sync_callbacks(dispatcher.stats())

    def _sync_periodically(self) -> None:
        assert self.settings is not None
        while not self._stop.wait(self.settings.sync_interval):
            try:
                self._sync_from_app()
            except Exception:
                logger.exception("plugin %s: copying the callback counters failed", self.name)


def _authorized(request: Any, token: str) -> bool:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode(), token.encode())


def _multiprocess_dir(name: str) -> str | None:
    directory = os.environ.get(MULTIPROC_DIR_ENV)
    if not directory:
        if multiprocessing.parent_process() is not None:
            logger.warning(
                "plugin %s runs in a child process but %s is not set: if this is one of "
                "several `hookgate serve --workers` processes, each scrape shows only the "
                "counts of the worker that answers it; set %s to an empty directory before "
                "starting the server", name, MULTIPROC_DIR_ENV, MULTIPROC_DIR_ENV)
        return None

    if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
        raise ValueError(f"{MULTIPROC_DIR_ENV}={directory!r} is not a writable directory; "
                         "create it empty before starting hookgate, or unset the variable "
                         "for single-process mode")
    if not getattr(values.ValueClass, "_multiprocess", False):
        raise ValueError(f"prometheus_client was imported before {MULTIPROC_DIR_ENV} was set, so "
                         "its metrics would not be shared between workers; set the variable "
                         "in the environment before the server process starts")
    return directory


def _claim_multiprocess(name: str) -> None:
    with _owner_lock:
        owner = _multiprocess_owner.get(os.getpid())
        if owner is not None and owner != name:
            raise ValueError(f"another prometheus logger ({owner!r}) already runs in this "
                             "process in multiprocess mode; enable only one, because both "
                             "would write the same metric files")
        _multiprocess_owner[os.getpid()] = name
