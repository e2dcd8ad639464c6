"""Benchmark hookgate against the LiteLLM proxy, a minimal FastAPI proxy and the direct call.

One command runs every contender and scenario side by side, with interleaved
rounds, and writes the report (docs/benchmarks.md), the raw figures
(bench/results/latest.json) and a latency-versus-throughput plot:

    python bench/run.py                      # everything, a few minutes
    python bench/run.py --duration 5 --rounds 3
    python bench/run.py --scenarios sweep,streaming --contenders direct,minimal,hookgate

`python bench/run.py --help` lists every option. Every server listens on
127.0.0.1 and is stopped before the command returns.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import contenders
import load
import logging_setup
import report
from contenders import Target
from mock_provider import MODEL, MockProvider, start_mock
from procutil import UsageMonitor, apt_install, free_port, stop_process, wait_for_port

logger = logging.getLogger("bench")

ROOT = Path(__file__).resolve().parent.parent
CHAT_PATH = "/v1/chat/completions"
DISABLE_HEADER = "x-litellm-disable-callbacks"
SCENARIOS = ("drivers", "sweep", "open-loop", "streaming", "delivery", "per-logger", "memory",
             "workers")
CONTENDER_GROUPS = ("direct", "minimal", "hookgate", "hookgate-logging", "litellm",
                    "minimal-httpx")
DEFAULT_CONTENDERS = CONTENDER_GROUPS[:5]
REQUEST_BODY = json.dumps({"model": MODEL, "messages": [
    {"role": "user", "content": "Say hello in five words."}]}).encode()
STREAM_BODY = json.dumps({"model": contenders.STREAM_MODEL, "stream": True,
                          "stream_options": {"include_usage": True}, "messages": [
                              {"role": "user", "content": "Count to sixty-four."}]}).encode()
SETTLE_TIMEOUT = 20.0


@dataclass
class Running:
    """A running server: its URL, its process for CPU and RSS, and what it is."""

    base_url: str
    pid: int
    description: str
    stop: Callable[[], None]
    stream_url: str = ""


class Bench:
    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.servers: dict[str, Running] = {}
        self.receivers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        self.results: dict[str, Any] = {"skipped": {}, "notes": [], "sweep": [],
                                        "open_loop": [], "streaming": [], "delivery": [],
                                        "memory": {}, "workers": [], "drivers": [],
                                        "per_logger": [],
                                        "contenders": {}}
        self.mock: MockProvider | None = None
        self.logging_scenarios: dict[str, logging_setup.Scenario] = {}
        self.workdir = Path(tempfile.mkdtemp(prefix="hookgate-bench-"))
        self.driver = options.driver
        self.slow_receivers: set[str] = set()
        """Receivers of a deliberately slow backend: its backlog drains for minutes while
        the sender thread only waits, so `settle` does not wait for it."""

    # Setup

    def skip(self, name: str, reason: str) -> None:
        logger.warning("skipping %s: %s", name, reason)
        self.results["skipped"][name] = reason

    def selected(self, group: str) -> bool:
        return group in self.options.contenders

    def start(self) -> list[Target]:
        options = self.options
        if self.driver == "wrk" and load.wrk_available() is None:
            if options.install:
                try:
                    apt_install(["wrk"])
                except RuntimeError as error:
                    logger.warning("%s", error)
            if load.wrk_available() is None:
                self.results["notes"].append(
                    "wrk is not available, so the aiohttp driver ran the closed-loop sweep")
                self.driver = "python"

        self.mock = start_mock(options.install, options.mock)
        self.results["notes"].extend(self.mock.notes)
        self.servers["direct"] = Running(self.mock.base_url, self.mock.process.pid,
                                         f"{self.mock.kind} mock provider, called directly",
                                         self.mock.stop,
                                         self.mock.stream_api_base + "/chat/completions")
        targets = [Target("direct", "direct call (floor)", "direct")]

        if self.selected("minimal"):
            self._add_server("minimal", lambda: contenders.start_minimal(self.mock))
            if "minimal" in self.servers:
                targets.append(Target("minimal", "minimal FastAPI proxy", "minimal"))
        if self.selected("minimal-httpx"):
            self._add_server("minimal-httpx", lambda: contenders.start_minimal(
                self.mock, "httpx", name="minimal-httpx"))
            if "minimal-httpx" in self.servers:
                targets.append(Target("minimal-httpx", "minimal FastAPI proxy with httpx",
                                      "minimal-httpx"))

        hookgate_reason = contenders.hookgate_available()
        if self.selected("hookgate") or self.selected("hookgate-logging"):
            if hookgate_reason:
                self.skip("hookgate", hookgate_reason)
        if self.selected("hookgate") and not hookgate_reason:
            self._add_server("hookgate", lambda: contenders.start_hookgate(
                self.mock, "hookgate", {}))
            if "hookgate" in self.servers:
                targets.append(Target("hookgate", "hookgate, no loggers", "hookgate"))
            # The same server with Python's own garbage-collector settings, to show
            # what hookgate's tuning after startup is worth.
            self._add_server("hookgate-default-gc", lambda: contenders.start_hookgate(
                self.mock, "hookgate-default-gc", {}, settings={"gc_tuning": False}))
            if "hookgate-default-gc" in self.servers:
                targets.append(Target("hookgate-default-gc",
                                      "hookgate, no loggers, default garbage collector",
                                      "hookgate-default-gc"))
        if self.selected("hookgate-logging") and not hookgate_reason:
            targets.extend(self._start_logging_servers())

        if self.selected("litellm"):
            try:
                executable = contenders.ensure_litellm(Path(options.cache), options.install)
            except (RuntimeError, subprocess.CalledProcessError) as error:
                self.skip("litellm", str(error))
            else:
                self._add_server("litellm", lambda: contenders.start_litellm(
                    self.mock, executable))
                if "litellm" in self.servers:
                    targets.append(Target("litellm", "LiteLLM proxy", "litellm"))
        return targets

    def _add_server(self, key: str, starter: Callable[[], contenders.Server]) -> None:
        try:
            server = starter()
        except RuntimeError as error:
            self.skip(key, str(error))
            return
        self.servers[key] = Running(server.base_url, server.process.pid, server.description,
                                    server.stop)

    def _start_receiver(self, name: str, kind: str, delay: float = 0.0) -> int:
        port = free_port()
        log = (self.workdir / f"receiver-{name}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("receivers.py")), "--port", str(port),
             "--kind", kind, "--delay", str(delay)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        wait_for_port(port, process, 20)
        self.receivers[name] = (process, port)
        return port

    def receiver_events(self, name: str) -> int:
        _, port = self.receivers[name]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_bench/stats", timeout=5) as reply:
            return int(json.loads(reply.read())["events"])

    def _start_logging_servers(self) -> list[Target]:
        """Start the hookgate servers with loggers: healthy, one backend down, one slow."""
        reason = logging_setup.unavailable()
        if reason:
            self.skip("hookgate-logging", reason)
            return []
        targets = []
        scenarios = logging_setup.scenarios(self)
        self.logging_scenarios = {scenario.server: scenario for scenario in scenarios}
        for scenario in scenarios:
            self._add_server(scenario.server, lambda scenario=scenario: contenders.start_hookgate(
                self.mock, scenario.server, scenario.callbacks, settings=scenario.settings))
            if scenario.server not in self.servers:
                continue
            self.servers[scenario.server].description += scenario.note
            targets.append(Target(scenario.server, scenario.label, scenario.server,
                                  loggers=scenario.counted))
            if scenario.server == "hookgate-3-loggers":
                names = ",".join(scenario.callbacks)
                targets.append(Target("hookgate-3-disabled", "hookgate, 3 loggers disabled by "
                                      "the header", scenario.server,
                                      headers={DISABLE_HEADER: names}))
        return targets

    def stop(self) -> None:
        for key, server in list(self.servers.items()):
            try:
                server.stop()
            except Exception:
                logger.exception("failed to stop %s", key)
        for process, _ in self.receivers.values():
            stop_process(process)
        shutil.rmtree(self.workdir, ignore_errors=True)

    # Measurements

    def headers(self, target: Target) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {contenders.MASTER_KEY}"}
        headers.update(target.headers)
        return headers

    def closed_run(self, target: Target, concurrency: int, duration: float,
                   random_disable_header: bool = False) -> dict[str, Any]:
        server = self.servers[target.server]
        with UsageMonitor(server.pid) as monitor:
            if self.driver == "wrk":
                result = load.run_wrk(server.base_url, CHAT_PATH, REQUEST_BODY,
                                      self.headers(target), concurrency, duration,
                                      random_disable_header)
            else:
                result = asyncio.run(load.closed_loop(server.base_url + CHAT_PATH, REQUEST_BODY,
                                                      self.headers(target), concurrency,
                                                      duration))
        return self._record(target, result, monitor, concurrency=concurrency)

    def _record(self, target: Target, result: load.LoadResult, monitor: UsageMonitor,
                **extra: Any) -> dict[str, Any]:
        usage = monitor.usage
        record = {"contender": target.name, **extra, **load.as_dict(result),
                  "cpu_seconds": usage.cpu_seconds,
                  "cpu_s_per_1k": (usage.cpu_seconds / result.requests * 1000
                                   if result.requests else None),
                  "main_cpu_s_per_1k": (usage.main_cpu_seconds / result.requests * 1000
                                        if result.requests else None),
                  "peak_rss_mb": usage.peak_rss_bytes / 2**20}
        logger.info("%-22s %s: %7.0f req/s  p50 %7.2f ms  p99 %7.2f ms  errors %d",
                    target.name, ", ".join(f"{k}={v}" for k, v in extra.items()),
                    result.throughput, result.p50_ms, result.p99_ms, result.errors)
        return record

    def settle(self, targets: list[Target]) -> None:
        """Wait until the given targets' receivers stop counting.

        Their server's backlog would otherwise use CPU during the next contender's run.
        """
        servers = {target.server for target in targets}
        names = [name for name in self.receivers
                 if any(name.startswith(server + "-") for server in servers)
                 and name not in self.slow_receivers]
        if not names:
            return
        deadline = time.monotonic() + SETTLE_TIMEOUT
        previous: dict[str, int] = {}
        while time.monotonic() < deadline:
            current = {name: self.receiver_events(name) for name in names}
            if current == previous:
                return
            previous = current
            time.sleep(0.5)
        logger.warning("receivers %s still counting after %.0f s", ", ".join(names),
                       SETTLE_TIMEOUT)

    def warm_up(self, targets: list[Target]) -> None:
        for target in targets:
            self.closed_run(target, 8, 1)
        self.settle(targets)

    def check_drivers(self, targets: list[Target]) -> None:
        """Measure each load driver against the direct call: its own ceiling."""
        direct = next(target for target in targets if target.name == "direct")
        for concurrency in (1, 64):
            if load.wrk_available():
                result = load.run_wrk(self.mock.base_url, CHAT_PATH, REQUEST_BODY,
                                      self.headers(direct), concurrency, self.options.duration)
                self.results["drivers"].append({"driver": "wrk", "concurrency": concurrency,
                                                **load.as_dict(result)})
            result = asyncio.run(load.closed_loop(self.mock.base_url + CHAT_PATH, REQUEST_BODY,
                                                  self.headers(direct), concurrency,
                                                  self.options.duration))
            self.results["drivers"].append({"driver": "python", "concurrency": concurrency,
                                            **load.as_dict(result)})
        result = asyncio.run(load.open_loop(self.mock.base_url + CHAT_PATH, REQUEST_BODY,
                                            self.headers(direct), max(self.options.rates),
                                            self.options.open_duration))
        self.results["drivers"].append({"driver": "python-open-loop",
                                        "rate": max(self.options.rates), **load.as_dict(result)})

    def sweep(self, targets: list[Target]) -> None:
        """Closed loop: every concurrency, every contender, rounds interleaved."""
        for round_index in range(self.options.rounds):
            for concurrency in self.options.concurrency:
                # Rotate the order each round so no contender always runs first.
                shift = round_index % len(targets)
                for target in targets[shift:] + targets[:shift]:
                    record = self.closed_run(target, concurrency, self.options.duration)
                    record["round"] = round_index + 1
                    self.results["sweep"].append(record)
                    if target.loggers:
                        self.settle([target])

    def open_loop(self, targets: list[Target]) -> None:
        """Constant request rate, latency from each request's scheduled send time."""
        peak = report.peak_throughput(self.results["sweep"])
        for rate in self.options.rates:
            for round_index in range(self.options.rounds):
                shift = round_index % len(targets)
                for target in targets[shift:] + targets[:shift]:
                    capacity = peak.get(target.name)
                    if capacity is not None and capacity < rate * 1.1:
                        if round_index == 0:
                            self.results["open_loop"].append({
                                "contender": target.name, "rate": rate, "skipped":
                                f"closed-loop peak {capacity:.0f} req/s is below 1.1x the rate"})
                        continue
                    server = self.servers[target.server]
                    with UsageMonitor(server.pid) as monitor:
                        result = asyncio.run(load.open_loop(
                            server.base_url + CHAT_PATH, REQUEST_BODY, self.headers(target),
                            rate, self.options.open_duration))
                    record = self._record(target, result, monitor, rate=rate)
                    record["round"] = round_index + 1
                    self.results["open_loop"].append(record)
                    if target.loggers:
                        self.settle([target])

    def streaming(self, targets: list[Target]) -> None:
        """Time to first chunk and whole-stream time, sequential requests."""
        for round_index in range(self.options.rounds):
            for target in targets:
                server = self.servers[target.server]
                url = (server.stream_url if target.name == "direct"
                       else server.base_url + CHAT_PATH)
                result = asyncio.run(load.stream_timings(url, STREAM_BODY, self.headers(target),
                                                         self.options.stream_count))
                self.results["streaming"].append({"contender": target.name,
                                                  "round": round_index + 1,
                                                  **load.as_dict(result)})
                logger.info("%-22s stream: first chunk p50 %.2f ms, total p50 %.2f ms, "
                            "%.1f events, %d errors", target.name, result.first_chunk_p50_ms,
                            result.total_p50_ms, result.chunks_per_stream, result.errors)
                if target.loggers:
                    self.settle([target])

    def delivery(self, targets: list[Target]) -> None:
        """Send an exact number of requests and count them at every receiver."""
        if not self.logging_scenarios:
            self.skip("delivery", "the hookgate logging scenarios are not running")
            return
        logging_setup.check_delivery(self, REQUEST_BODY)

    def per_logger(self, targets: list[Target]) -> None:
        """CPU per request of each logger alone, against no loggers and all three."""
        scenario = self.logging_scenarios.get("hookgate-3-loggers")
        if scenario is None or "hookgate" not in self.servers:
            self.skip("per-logger", "the hookgate servers with and without loggers are not running")
            return
        group = [Target("hookgate", "hookgate, no loggers", "hookgate"),
                 Target(scenario.server, scenario.label, scenario.server)]
        process = self.logging_scenarios.get("hookgate-3-process")
        if process is not None and process.server in self.servers:
            group.append(Target(process.server, process.label, process.server))
        started = []
        for name, settings in scenario.callbacks.items():
            key = f"hookgate-only-{name}"
            if name == "jsonl":
                settings = {**settings, "path": str(self.workdir / f"{key}.jsonl")}
            self._add_server(key, lambda key=key, name=name, settings=settings:
                             contenders.start_hookgate(self.mock, key, {name: settings}))
            if key in self.servers:
                started.append(key)
                group.append(Target(key, f"hookgate, {name} only", key))
        for target in group:
            self.closed_run(target, 32, 1)
        for round_index in range(self.options.rounds):
            shift = round_index % len(group)
            for target in group[shift:] + group[:shift]:
                record = self.closed_run(target, 32, self.options.duration)
                record["round"] = round_index + 1
                self.results["per_logger"].append(record)
                # The loggers send for a moment after the load stops; let them finish.
                time.sleep(1.0)
        for key in started:
            self.servers.pop(key).stop()

    def memory(self, targets: list[Target]) -> None:
        """RSS of hookgate with three loggers over many requests with random header values.

        Besides the live samples, the harness pauses at every checkpoint until the
        receivers have caught up and samples again: that settled RSS leaves out the
        events still queued for the loggers, so it shows what the process retains.
        """
        target = next((t for t in targets if t.name == "hookgate-3-loggers"), None)
        target = target or next((t for t in targets if t.name == "hookgate"), None)
        if target is None:
            self.skip("memory", "no hookgate server is running")
            return
        server = self.servers[target.server]
        checkpoint = max(1, self.options.memory_requests // 10)
        next_checkpoint = checkpoint
        total = 0
        errors = 0
        start = time.monotonic()
        self.settle([target])
        samples = [{"requests": 0, "rss_mb": _rss_mb(server.pid), "seconds": 0.0,
                    "settled": True}]
        while total < self.options.memory_requests:
            record = self.closed_run(target, 32, 2, random_disable_header=True)
            total += record["requests"]
            errors += record["errors"]
            samples.append({"requests": total, "rss_mb": _rss_mb(server.pid),
                            "seconds": time.monotonic() - start, "settled": False})
            if record["requests"] == 0:
                break
            if total >= next_checkpoint or total >= self.options.memory_requests:
                self.settle([target])
                samples.append({"requests": total, "rss_mb": _rss_mb(server.pid),
                                "seconds": time.monotonic() - start, "settled": True})
                while next_checkpoint <= total:
                    next_checkpoint += checkpoint
        self.results["memory"] = {"contender": target.name, "requests": total,
                                  "errors": errors, "samples": samples}

    def workers(self, targets: list[Target]) -> None:
        """Throughput of `hookgate serve --workers 2` against one worker, no loggers."""
        if "hookgate" not in self.servers:
            self.skip("workers", "hookgate (no loggers) is not running")
            return
        self._add_server("hookgate-2-workers", lambda: contenders.start_hookgate(
            self.mock, "hookgate-2-workers", {}, workers=2))
        if "hookgate-2-workers" not in self.servers:
            return
        pair = [Target("hookgate", "hookgate, 1 worker", "hookgate"),
                Target("hookgate-2-workers", "hookgate, 2 workers", "hookgate-2-workers")]
        self.closed_run(pair[1], 64, 1)
        for round_index in range(self.options.rounds):
            for target in (pair if round_index % 2 == 0 else pair[::-1]):
                record = self.closed_run(target, 64, self.options.duration)
                record["round"] = round_index + 1
                self.results["workers"].append(record)
        self.servers.pop("hookgate-2-workers").stop()


def _rss_mb(pid: int) -> float:
    from procutil import tree_rss_bytes

    return tree_rss_bytes(pid) / 2**20


def pin_cpus(enabled: bool) -> dict[str, list[int]] | None:
    """Pin this process (and so the mock, receivers and drivers it starts) off CPU 0.

    Single-worker servers then run alone on CPU 0, so the load side and the logging
    receivers do not take CPU time from the server under test. Needs 2 CPUs or more.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if not enabled or len(cpus) < 2:
        return None
    server, load_side = {cpus[0]}, set(cpus[1:])
    os.sched_setaffinity(0, load_side)
    contenders.SERVER_CPUS = server
    contenders.LOAD_SIDE_CPUS = load_side
    return {"servers": sorted(server), "load_side": sorted(load_side)}


def machine_info() -> dict[str, Any]:
    def command(*args: str) -> str:
        try:
            return subprocess.run(args, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"unavailable: {error}"

    lscpu = command("lscpu")
    keep = ("Architecture", "Model name", "CPU(s)", "Thread(s) per core", "CPU max MHz",
            "L2 cache", "L3 cache", "Hypervisor vendor")
    return {
        "nproc": command("nproc"),
        "lscpu": [line for line in lscpu.splitlines() if line.split(":")[0].strip() in keep],
        "free": command("free", "-m"),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "load_average_at_start": list(os.getloadavg()),
    }


def versions() -> dict[str, str]:
    from importlib import metadata

    found = {}
    for name in ("hookgate-core", "hookgate-proxy", "fastapi", "starlette", "uvicorn",
                 "aiohttp", "httpx", "uvloop", "httptools", "orjson", "pluggy"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    for binary, flag in (("nginx", "-v"), ("wrk", "-v")):
        path = shutil.which(binary) or (f"/usr/sbin/{binary}"
                                        if Path(f"/usr/sbin/{binary}").exists() else None)
        if path:
            output = subprocess.run([path, flag], capture_output=True, text=True)
            first_line = (output.stderr or output.stdout).strip().splitlines()[0]
            # "nginx version: nginx/1.22.1" and "wrk debian/4.1.0-3+b2 [epoll] ...".
            found[binary] = first_line.split("/", 1)[-1].split()[0]
    found["litellm"] = contenders.LITELLM_VERSION
    return found


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    def integers(text: str) -> list[int]:
        return [int(value) for value in text.split(",") if value]

    def names(choices: tuple[str, ...]) -> Callable[[str], list[str]]:
        def parse(text: str) -> list[str]:
            values = [value.strip() for value in text.split(",") if value.strip()]
            unknown = sorted(set(values) - set(choices))
            if unknown:
                raise argparse.ArgumentTypeError(
                    f"unknown: {', '.join(unknown)}; choose from {', '.join(choices)}")
            return values
        return parse

    parser = argparse.ArgumentParser(
        description="Benchmark hookgate against the LiteLLM proxy, a minimal FastAPI proxy "
                    "and the direct call to a zero-delay nginx mock, all on 127.0.0.1.")
    parser.add_argument("--duration", type=float, default=3.0,
                        help="seconds per closed-loop point (wrk rounds to whole seconds; "
                             "default: 3)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="interleaved rounds of every measurement (default: 2)")
    parser.add_argument("--concurrency", type=integers, default=[1, 8, 32, 64],
                        help="closed-loop concurrency levels, comma-separated "
                             "(default: 1,8,32,64)")
    parser.add_argument("--rates", type=integers, default=[50, 400],
                        help="open-loop request rates in requests per second, comma-separated "
                             "(default: 50,400)")
    parser.add_argument("--open-duration", type=float, default=4.0,
                        help="seconds per open-loop run (default: 4)")
    parser.add_argument("--stream-count", type=int, default=100,
                        help="sequential 64-chunk streams per contender and round (default: 100)")
    parser.add_argument("--delivery-requests", type=int, default=1000,
                        help="requests per logging scenario in the delivery count (default: 1000)")
    parser.add_argument("--memory-requests", type=int, default=100_000,
                        help="requests with random header values in the RSS run "
                             "(default: 100000)")
    parser.add_argument("--scenarios", type=names(SCENARIOS), default=list(SCENARIOS),
                        help=f"comma-separated subset of: {', '.join(SCENARIOS)} (default: all)")
    parser.add_argument("--contenders", type=names(CONTENDER_GROUPS),
                        default=list(DEFAULT_CONTENDERS),
                        help="comma-separated subset of: " + ", ".join(CONTENDER_GROUPS) +
                             " (default: all but minimal-httpx, the minimal proxy with httpx "
                             "as its upstream client; the direct call always runs)")
    parser.add_argument("--driver", choices=["wrk", "python"], default="wrk",
                        help="closed-loop load driver (default: wrk, the aiohttp driver if "
                             "wrk is missing)")
    parser.add_argument("--mock", choices=["nginx", "python"], default="nginx",
                        help="mock provider (default: nginx, the aiohttp mock if nginx is "
                             "missing)")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="do not pin single-worker servers to CPU 0 and the mock, the "
                             "receivers and the load drivers to the other CPUs")
    parser.add_argument("--no-install", dest="install", action="store_false",
                        help="never install nginx, wrk or LiteLLM; skip or fall back instead")
    parser.add_argument("--cache", default=str(contenders.DEFAULT_CACHE),
                        help="folder for the LiteLLM virtual environment "
                             "(default: bench/.cache)")
    parser.add_argument("--output-dir", default=None,
                        help="write latest.json, benchmarks.md and the plot here instead of "
                             "bench/results/ and docs/")
    parser.add_argument("--provisional", default="",
                        help="a note printed at the top of the report, e.g. why the figures "
                             "are provisional")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    options = parse_arguments(argv)
    if "direct" not in options.contenders:
        options.contenders.append("direct")
    pinning = pin_cpus(options.pin)
    bench = Bench(options)
    bench.results["pinning"] = pinning
    started = datetime.now(timezone.utc)
    steps = {"drivers": bench.check_drivers, "sweep": bench.sweep,
             "open-loop": bench.open_loop, "streaming": bench.streaming,
             "delivery": bench.delivery, "per-logger": bench.per_logger,
             "memory": bench.memory, "workers": bench.workers}
    try:
        targets = bench.start()
        for target in targets:
            bench.results["contenders"][target.name] = {
                "label": target.label, "server": target.server,
                "description": bench.servers[target.server].description,
                "headers": {k: v for k, v in target.headers.items()},
                "loggers": list(target.loggers)}
        bench.warm_up(targets)
        for scenario in SCENARIOS:
            if scenario in options.scenarios:
                logger.info("scenario %s", scenario)
                steps[scenario](targets)
        bench.results["callback_status"] = {
            server: logging_setup.logging_status(bench.servers[server].base_url)
            for server in bench.logging_scenarios if server in bench.servers}
        litellm = bench.servers.get("litellm")
        if litellm is not None:
            bench.results["litellm_outside_connections"] = contenders.outside_connections(
                litellm.pid)
    finally:
        bench.stop()

    bench.results["meta"] = {
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", "bench/run.py", *(argv if argv is not None
                                                          else sys.argv[1:])]),
        "options": {key: value for key, value in vars(options).items()},
        "driver": bench.driver,
        "mock": bench.mock.kind if bench.mock else None,
        "machine": machine_info(),
        "versions": versions(),
        "provisional": options.provisional,
    }
    output = Path(options.output_dir) if options.output_dir else None
    json_path = (output or ROOT / "bench" / "results") / "latest.json"
    markdown_path = (output or ROOT / "docs") / "benchmarks.md"
    plot_path = (output or ROOT / "bench" / "results") / "latency-vs-throughput.png"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(bench.results, indent=1, default=str) + "\n")
    plotted = report.write_plot(bench.results, plot_path)
    report.write_markdown(bench.results, markdown_path, json_path,
                          plot_path if plotted else None)
    logger.info("wrote %s, %s%s", json_path, markdown_path,
                f" and {plot_path}" if plotted else " (no plot: matplotlib is not installed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
