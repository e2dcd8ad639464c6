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
import json
import logging
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import contenders
import load
from contenders import MASTER_KEY, Target
from procutil import free_port, stop_process
from receivers import LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY

if TYPE_CHECKING:
    from run import Bench

logger = logging.getLogger(__name__)

LOGGERS = ("jsonl", "langfuse", "otel")
SLOW_BATCH_SECONDS = 2.0
# Short flush intervals so that the counts settle within a second of the load.
FLUSH_INTERVAL = 0.2
# The slow backend takes 100 events (the batch sender's default batch) per 2 s, so
# 1,000 events need about 20 s.
DELIVERY_TIMEOUT = 60.0


@dataclass
class Scenario:
    server: str
    label: str
    callbacks: dict[str, dict[str, Any]]
    counted: tuple[str, ...]
    """Loggers that must receive every successful request."""
    note: str = ""
    jsonl_path: Path | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    """The server's `hookgate_settings`."""


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


def scenarios(bench: Bench, prefix: str = "") -> list[Scenario]:
    """Start the receivers and return the three logging scenarios.

    `prefix` starts each server and receiver name, so that a second set (the
    delivery count's) never shares a receiver with the first.
    """
    found = []

    server = prefix + "hookgate-3-loggers"
    langfuse = bench._start_receiver(f"{server}-langfuse", "langfuse")
    otel = bench._start_receiver(f"{server}-otel", "otlp")
    callbacks, path = _callbacks(bench, server, langfuse, otel)
    found.append(Scenario(server, "hookgate, 3 loggers", callbacks, LOGGERS,
                          "; jsonl file, langfuse and otel loopback receivers", path))

    # The same loggers in hookgate's logger process, which runs on the load side's
    # CPUs when the harness pins: the server keeps CPU 0 to itself.
    server = prefix + "hookgate-3-process"
    langfuse = bench._start_receiver(f"{server}-langfuse", "langfuse")
    otel = bench._start_receiver(f"{server}-otel", "otlp")
    callbacks, path = _callbacks(bench, server, langfuse, otel)
    settings: dict[str, Any] = {"logger_process": True}
    if contenders.LOAD_SIDE_CPUS:
        settings["logger_process_cpus"] = sorted(contenders.LOAD_SIDE_CPUS)
    found.append(Scenario(server, "hookgate, 3 loggers in a logger process", callbacks,
                          LOGGERS, "; jsonl file, langfuse and otel loopback receivers",
                          path, settings))

    # A port that was free a moment ago and that nothing listens on: connection refused.
    server = prefix + "hookgate-langfuse-down"
    down_port = free_port()
    otel = bench._start_receiver(f"{server}-otel", "otlp")
    callbacks, path = _callbacks(bench, server, down_port, otel)
    found.append(Scenario(server, "hookgate, 3 loggers, langfuse backend down",
                          callbacks, ("jsonl", "otel"),
                          "; langfuse backend refuses connections", path))

    server = prefix + "hookgate-langfuse-slow"
    langfuse = bench._start_receiver(f"{server}-langfuse", "langfuse", delay=SLOW_BATCH_SECONDS)
    bench.slow_receivers.add(f"{server}-langfuse")
    otel = bench._start_receiver(f"{server}-otel", "otlp")
    callbacks, path = _callbacks(bench, server, langfuse, otel)
    found.append(Scenario(server, "hookgate, 3 loggers, langfuse backend slow",
                          callbacks, LOGGERS,
                          f"; langfuse backend holds each batch {SLOW_BATCH_SECONDS:.0f} s",
                          path))
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


def check_delivery(bench: Bench, body: bytes) -> None:
    """Send an exact request count to fresh logging servers; compare counts at each receiver.

    Fresh servers and receivers start with no backlog, so the slow backend's queue
    from the load runs cannot blur the count. The loggers disabled by the header
    must count nothing for those requests, and every other counted logger must
    count each successful request once.
    """
    fresh = scenarios(bench, prefix="delivery-")
    for scenario in fresh:
        name = scenario.server.removeprefix("delivery-")
        try:
            started = contenders.start_hookgate(bench.mock, scenario.server, scenario.callbacks)
        except RuntimeError as error:
            bench.skip(scenario.server, str(error))
            continue
        try:
            targets = [Target(name, scenario.label, scenario.server, loggers=scenario.counted)]
            if name == "hookgate-3-loggers":
                targets.append(Target("hookgate-3-disabled", "", scenario.server, headers={
                    "x-litellm-disable-callbacks": ",".join(scenario.callbacks)}))
            for target in targets:
                _count_one(bench, scenario, target, started.base_url, body)
        finally:
            started.stop()
            for receiver in [key for key in bench.receivers
                             if key.startswith(scenario.server + "-")]:
                stop_process(bench.receivers.pop(receiver)[0])


def _count_one(bench: Bench, scenario: Scenario, target: Target, base_url: str,
               body: bytes) -> None:
    bench.settle([target])
    before = _counts(bench, scenario)
    result = asyncio.run(load.fixed_count(base_url + "/v1/chat/completions", body,
                                          bench.headers(target),
                                          bench.options.delivery_requests, 16))
    # With the header, every logger is disabled, so none may count these requests.
    expected = {name: (0 if target.headers else result.requests) for name in before}
    deadline = time.monotonic() + DELIVERY_TIMEOUT
    while True:
        after = _counts(bench, scenario)
        delta = {name: after[name] - before[name] for name in before}
        if all(delta[name] >= expected[name] for name in delta):
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.25)
    time.sleep(0.5)  # A duplicate delivery would arrive in this pause and break the count.
    after = _counts(bench, scenario)
    delta = {name: after[name] - before[name] for name in before}
    exact = all(delta[name] == expected[name] for name in delta)
    record = {"contender": target.name, "sent": bench.options.delivery_requests,
              "succeeded": result.requests, "errors": result.errors,
              "expected": expected, "received": delta, "exact": exact,
              "callback_status": logging_status(base_url)}
    bench.results["delivery"].append(record)
    logger.info("%-22s delivery: %d ok, received %s, expected %s: %s", target.name,
                result.requests, delta, expected, "exact" if exact else "MISMATCH")


def logging_status(base_url: str) -> dict[str, Any]:
    """Return each plugin's dispatch counters and health from hookgate's /callbacks/status."""
    request = urllib.request.Request(base_url + "/callbacks/status", headers={
        "Authorization": f"Bearer {MASTER_KEY}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            status = json.loads(reply.read())
    except (OSError, ValueError) as error:
        return {"error": str(error)}
    return {plugin["name"]: {"stats": plugin.get("stats"), "health": plugin.get("health")}
            for plugin in status.get("plugins", []) if plugin.get("receiving")}
