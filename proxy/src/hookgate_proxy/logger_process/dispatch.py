"""One dispatcher interface over the proxy's own lanes and the logger process.

With `hookgate_settings.logger_process: true`, most plugins run in the logger
process, but a plugin that serves routes (`logger_routes`, such as Prometheus's
`/metrics`) must stay in the proxy, which owns the HTTP server. `SplitDispatcher`
offers the proxy the same calls as hookgate-core's `Dispatcher` (`resolve`,
`submit`, `active`, `categories`, `stats`, `drain`, `close`) and sends each event
to both places, so the request path, the disable header and the admin routes work
the same either way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from hookgate import CallEvent, Dispatcher, LaneSettings, PluginRegistry
from hookgate.dispatch import DisableResult, ShutdownReport
from hookgate.lanes import PluginStats
from hookgate.ratelimit import RateLimitedLog
from hookgate_proxy.logger_process.client import LoggerProcess, Ready
from hookgate_proxy.logger_process.protocol import encode_event

__all__ = ["SplitDispatcher"]

logger = logging.getLogger(__name__)

CATEGORIES = ("success", "failure", "success_and_failure")


class SplitDispatcher:
    """Deliver events to the proxy's own lanes (`local`) and to the logger process."""

    def __init__(self, local: Dispatcher, process: LoggerProcess, ready: Ready,
                 settings: Mapping[str, LaneSettings]) -> None:
        self.local = local
        self.process = process
        self.registry: PluginRegistry = local.registry
        groups = ready.categories
        self._remote = {name: settings[name] for group in CATEGORIES for name in groups[group]}
        self._remote_groups = {group: list(groups[group]) for group in CATEGORIES}
        self._success = tuple(sorted(groups["success"] + groups["success_and_failure"]))
        self._failure = tuple(sorted(groups["failure"] + groups["success_and_failure"]))
        here = local.categories()
        self._local_success = tuple(here["success"] + here["success_and_failure"])
        self._local_failure = tuple(here["failure"] + here["success_and_failure"])
        self._dropped = dict.fromkeys(self._remote, 0)
        self._drops = RateLimitedLog(logger, logging.ERROR, 60.0)

    # The request path

    def resolve(self, names: Iterable[str]) -> DisableResult:
        """Split the names a request asked to disable into applied and ignored ones."""
        disabled = set()
        unknown: dict[str, None] = {}
        required: dict[str, None] = {}
        remote = self._remote
        local = self.local.active
        for name in names:
            settings = remote.get(name) or local.get(name)
            if settings is None:
                unknown[name] = None
            elif settings.required:
                required[name] = None
            else:
                disabled.add(name)
        return DisableResult(frozenset(disabled), tuple(unknown), tuple(required))

    def submit(self, event: CallEvent, disabled: frozenset[str] = frozenset()) -> None:
        """Queue `event` for every active plugin not in `disabled`, here and in the process."""
        self.local.submit(event, disabled)
        self._send(event.status, event, event.call_id, disabled)

    def submit_fields(self, fields: Mapping[str, Any],
                      disabled: frozenset[str] = frozenset()) -> None:
        """Submit the event that `CallEvent(**fields)` builds, building it only if needed.

        The logger process validates the event from its JSON, so when no plugin in
        the proxy receives it, the proxy skips the model altogether: encoding the
        fields costs about a tenth of building and encoding the model.
        """
        status = fields["status"]
        local = self._local_success if status == "success" else self._local_failure
        if any(name not in disabled for name in local):
            self.local.submit(CallEvent(**fields), disabled)
        self._send(status, fields, fields["call_id"], disabled)

    def _send(self, status: str, event: CallEvent | Mapping[str, Any], call_id: str,
              disabled: frozenset[str]) -> None:
        names: Iterable[str] = self._success if status == "success" else self._failure
        if disabled:
            names = [name for name in names if name not in disabled]
        if not names:
            return
        try:
            if self.process.send(names, encode_event(event)):
                return
            reason = (f"the logger process {self.process.exited}" if self.process.exited
                      else f"the logger process is more than {self.process.buffer_limit} "
                      "bytes behind, or the event is over the frame limit")
        except TypeError as error:
            reason = f"it cannot be encoded as JSON: {error}"
        for name in names:
            self._dropped[name] += 1
        self._drops.log("event %s dropped for %s: %s", call_id, ", ".join(names), reason)

    # Introspection

    @property
    def active(self) -> dict[str, LaneSettings]:
        return {**self.local.active, **self._remote}

    def categories(self) -> dict[str, list[str]]:
        local = self.local.categories()
        return {group: sorted(local[group] + self._remote_groups[group])
                for group in CATEGORIES}

    def stats(self) -> dict[str, PluginStats]:
        """Return the counters of every active plugin, the logger process's up to 0.5 s old.

        The counters of a logger process that died are kept and added, so they never
        go down. Events that it had read but not delivered are in none of them.
        """
        stats = self.local.stats()
        reports = self.process.reports.stats
        for name in self._remote:
            values = dict(reports.get(name) or {})
            values.pop("name", None)
            plugin = PluginStats(name, **values)
            for counter, value in self.process.carried.get(name, {}).items():
                setattr(plugin, counter, getattr(plugin, counter) + value)
            plugin.dropped += self._dropped[name]
            if self.process.exited is not None:
                plugin.last_error = f"logger process {self.process.exited}"
                plugin.last_error_time = self.process.exited_at
            stats[name] = plugin
        return stats

    def describe(self) -> dict[str, Any]:
        """Return the logger process's pid, state and plugins, for `/callbacks/status`."""
        return {"pid": self.process.pid, "state": self.process.exited or "running",
                "restarts": self.process.restarts, "plugins": sorted(self._remote),
                "cpus": list(self.process.cpus),
                "invalid_events": self.process.reports.invalid}

    def health(self, name: str) -> Mapping[str, Any] | None:
        """Return what plugin `name`'s `logger_health` reports, wherever the plugin runs."""
        if name in self._remote:
            health = self.process.reports.health.get(name)
            return dict(health) if health is not None else None
        return self.registry.health(name)

    # Lifecycle

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until every event submitted so far has been handed to its plugin."""
        limit = 3600.0 if timeout is None else timeout
        results = await asyncio.gather(self.local.drain(timeout), self.process.drain(limit))
        return all(results)

    async def close(self, timeout: float = 10.0) -> ShutdownReport:
        """Drain, flush and stop both sides within `timeout` seconds."""
        report: ShutdownReport
        reply: dict[str, Any] | None
        report, reply = await asyncio.gather(self.local.close(timeout),
                                             self.process.close(timeout))
        if reply is None:
            # No shutdown report: the last counters give the backlog, and whether the
            # plugins flushed is unknown.
            last = self.process.reports.stats
            for name in sorted(self._remote):
                backlog = int((last.get(name) or {}).get("backlog", 0))
                if backlog:
                    report.undelivered[name] = backlog
                report.flush_failed.append(name)
            logger.error("the logger process did not confirm its shutdown (%s); events of %s "
                         "may be lost", self.process.exited or "no answer",
                         ", ".join(sorted(self._remote)))
        else:
            report.undelivered.update({name: count for name, count
                                       in reply.get("undelivered", {}).items() if count})
            report.flush_failed.extend(reply.get("flush_failed", ()))
        return report
