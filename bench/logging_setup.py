"""The hookgate logging scenarios: which loggers, which loopback backends, and the count.

Three loggers are active in every logging scenario:
- `jsonl`, appending to a file in the server's temporary directory;
- `langfuse`, sending batches to a loopback receiver that checks Langfuse's basic
  auth and batch format;
- `otel`, exporting OTLP/HTTP protobuf spans to a loopback receiver.

The scenarios differ only in the langfuse backend: healthy, down (a closed port),
or slow (every batch held for 2 s). Each server has its own receivers and file, so
every count belongs to one scenario.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import load
from procutil import free_port
from receivers import LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY

if TYPE_CHECKING:
    from run import Bench, Target

logger = logging.getLogger(__name__)

LOGGERS = ("jsonl", "langfuse", "otel")
SLOW_BATCH_SECONDS = 2.0
# Short flush intervals so that the counts settle within a second of the load.
FLUSH_INTERVAL = 0.2
DELIVERY_TIMEOUT = 30.0


@dataclass
class Scenario:
    server: str
    label: str
    callbacks: dict[str, dict[str, Any]]
    counted: tuple[str, ...]
    """Loggers that must receive every successful request."""
    note: str = ""
    jsonl_path: Path | None = None


def unavailable() -> str | None:
    """Return why the logging scenarios cannot run, or None."""
    missing = [name for name in LOGGERS if importlib.util.find_spec(f"hookgate_{name}") is None]
    if missing:
        return (f"logger plugins not installed: {', '.join('hookgate-' + n for n in missing)} "
                f"(pip install -e plugins/<name>)")
    if importlib.util.find_spec("opentelemetry.proto") is None:
        return "opentelemetry-proto is not installed, so the OTLP receiver cannot count spans"
    return None


def _callbacks(bench: Bench, key: str, langfuse_port: int, otel_port: int
               ) -> tuple[dict[str, dict[str, Any]], Path]:
    jsonl_path = bench.workdir / f"{key}-events.jsonl"
    callbacks = {
        "jsonl": {"path": str(jsonl_path), "max_bytes": 0},
        "langfuse": {"host": f"http://127.0.0.1:{langfuse_port}",
                     "public_key": LANGFUSE_PUBLIC_KEY, "secret_key": LANGFUSE_SECRET_KEY,
                     "flush_interval": FLUSH_INTERVAL},
        "otel": {"endpoint": f"http://127.0.0.1:{otel_port}", "schedule_delay": FLUSH_INTERVAL},
    }
    return callbacks, jsonl_path


def scenarios(bench: Bench) -> list[Scenario]:
    """Start the receivers and return the three logging scenarios."""
    found = []

    langfuse = bench._start_receiver("hookgate-3-loggers-langfuse", "langfuse")
    otel = bench._start_receiver("hookgate-3-loggers-otel", "otlp")
    callbacks, path = _callbacks(bench, "hookgate-3-loggers", langfuse, otel)
    found.append(Scenario("hookgate-3-loggers", "hookgate, 3 loggers", callbacks, LOGGERS,
                          "; jsonl file, langfuse and otel loopback receivers", path))

    # A port that was free a moment ago and that nothing listens on: connection refused.
    down_port = free_port()
    otel = bench._start_receiver("hookgate-langfuse-down-otel", "otlp")
    callbacks, path = _callbacks(bench, "hookgate-langfuse-down", down_port, otel)
    found.append(Scenario("hookgate-langfuse-down", "hookgate, 3 loggers, langfuse backend down",
                          callbacks, ("jsonl", "otel"),
                          "; langfuse backend refuses connections", path))

    langfuse = bench._start_receiver("hookgate-langfuse-slow-langfuse", "langfuse",
                                     delay=SLOW_BATCH_SECONDS)
    otel = bench._start_receiver("hookgate-langfuse-slow-otel", "otlp")
    callbacks, path = _callbacks(bench, "hookgate-langfuse-slow", langfuse, otel)
    found.append(Scenario("hookgate-langfuse-slow", "hookgate, 3 loggers, langfuse backend slow",
                          callbacks, LOGGERS,
                          f"; langfuse backend holds each batch {SLOW_BATCH_SECONDS:.0f} s",
                          path))
    bench.logging_scenarios = {scenario.server: scenario for scenario in found}
    return found


def _counts(bench: Bench, scenario: Scenario) -> dict[str, int]:
    counts: dict[str, int] = {}
    if scenario.jsonl_path is not None:
        try:
            with scenario.jsonl_path.open("rb") as file:
                counts["jsonl"] = sum(1 for line in file if b'"log_success"' in line)
        except FileNotFoundError:
            counts["jsonl"] = 0
    for name in ("langfuse", "otel"):
        receiver = f"{scenario.server}-{name}"
        if receiver in bench.receivers:
            counts[name] = bench.receiver_events(receiver)
    return counts


def check_delivery(bench: Bench, targets: list[Target], body: bytes) -> None:
    """Send an exact request count per logging contender; compare counts at each receiver.

    The loggers disabled by the header must count nothing for those requests, and
    every other counted logger must count each successful request once.
    """
    scenarios_by_server: dict[str, Scenario] = getattr(bench, "logging_scenarios", {})
    for target in targets:
        scenario = scenarios_by_server.get(target.server)
        if scenario is None:
            continue
        bench.settle(targets)
        before = _counts(bench, scenario)
        server = bench.servers[target.server]
        result = asyncio.run(load.fixed_count(server.base_url + "/v1/chat/completions",
                                              body, bench.headers(target),
                                              bench.options.delivery_requests, 16))
        # With the header, every logger is disabled, so none may count these requests.
        expected = {name: (0 if target.headers else result.requests) for name in before}
        deadline = time.monotonic() + DELIVERY_TIMEOUT
        while True:
            after = _counts(bench, scenario)
            delta = {name: after[name] - before[name] for name in before}
            done = all(delta[name] >= expected[name] for name in delta)
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        time.sleep(0.5)  # late duplicates would show up here
        after = _counts(bench, scenario)
        delta = {name: after[name] - before[name] for name in before}
        ok = all(delta[name] == expected[name] for name in delta)
        dispatcher = _dispatcher_stats(server.base_url, bench.headers(target))
        record = {"contender": target.name, "sent": bench.options.delivery_requests,
                  "succeeded": result.requests, "errors": result.errors,
                  "expected": expected, "received": delta, "exact": ok,
                  "dispatcher": dispatcher}
        bench.results["delivery"].append(record)
        logger.info("%-22s delivery: %d ok, received %s, expected %s: %s", target.name,
                    result.requests, delta, expected, "exact" if ok else "MISMATCH")


def _dispatcher_stats(base_url: str, headers: dict[str, str]) -> Any:
    """Return the proxy's per-callback counters, if it exposes them at /callbacks/list."""
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(base_url + "/callbacks/list",
                                     headers={"Authorization": headers["Authorization"]})
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return json.loads(reply.read())
    except (urllib.error.URLError, OSError, ValueError) as error:
        return f"unavailable: {error}"
