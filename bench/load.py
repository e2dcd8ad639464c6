"""Load drivers: wrk (closed loop) and an aiohttp driver (open loop, streaming, fallback).

wrk from Debian runs the closed-loop sweep: one thread, N keep-alive connections,
a Lua script that sets the POST body and headers and prints its summary as JSON.
The aiohttp driver sends the open-loop constant-rate runs (wrk 4 has no rate
option), times streams chunk by chunk, and replaces wrk where wrk is missing.
`run.py` measures both drivers against the direct nginx call, so the report
shows each driver's own ceiling.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

logger = logging.getLogger(__name__)

WRK_MARKER = "WRK_JSON "
REQUEST_TIMEOUT = 10.0


@dataclass
class LoadResult:
    """Figures of one load run. Latencies in milliseconds."""

    driver: str
    requests: int
    """Requests completed with a 2xx status."""
    errors: int
    """Connection errors, timeouts and non-2xx responses."""
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    error_detail: dict[str, int] = field(default_factory=dict)
    max_send_lag_ms: float | None = None
    """Open loop only: the latest the driver sent a request after its scheduled time.
    A large lag means the driver itself was starved of CPU, which inflates the
    latencies it records."""

    @property
    def throughput(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile of already sorted values (0.0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def _summary(driver: str, latencies: list[float], errors: Mapping[str, int],
             duration: float) -> LoadResult:
    latencies.sort()
    return LoadResult(
        driver=driver, requests=len(latencies), errors=sum(errors.values()),
        duration_s=duration,
        p50_ms=percentile(latencies, 0.50) * 1000, p90_ms=percentile(latencies, 0.90) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        max_ms=(latencies[-1] * 1000) if latencies else 0.0,
        mean_ms=(sum(latencies) / len(latencies) * 1000) if latencies else 0.0,
        error_detail={key: value for key, value in errors.items() if value})


# wrk

def _lua_string(text: str) -> str:
    # A Lua long bracket with a level that cannot occur in the text needs no escapes.
    level = "=" * 4
    while f"]{level}]" in text:
        level += "="
    return f"[{level}[{text}]{level}]"


def wrk_script(path: str, body: bytes, headers: Mapping[str, str],
               random_disable_header: bool = False) -> str:
    """Return a wrk Lua script that POSTs `body` to `path` and prints a JSON summary.

    With `random_disable_header`, every request carries an
    `x-litellm-disable-callbacks` header with two random unknown names and an
    `x-bench-nonce` header with a random value, which the memory run uses to show
    that per-request header values do not accumulate.
    """
    header_lines = "\n".join(f"wrk.headers[ {_lua_string(name)} ] = {_lua_string(value)}"
                             for name, value in headers.items())
    request_function = ""
    if random_disable_header:
        request_function = f"""
math.randomseed(os.time())
local path = {_lua_string(path)}
request = function()
  local headers = {{}}
  for name, value in pairs(wrk.headers) do headers[name] = value end
  headers["x-litellm-disable-callbacks"] = string.format("n%08x,m%08x",
    math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
  headers["x-bench-nonce"] = string.format("%08x%08x",
    math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
  return wrk.format("POST", path, headers, wrk.body)
end
"""
    return f"""wrk.method = "POST"
wrk.path = {_lua_string(path)}
wrk.body = {_lua_string(body.decode())}
wrk.headers["Content-Type"] = "application/json"
{header_lines}
{request_function}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{WRK_MARKER}{{"requests":%.0f,"duration_us":%.0f,"connect":%.0f,"read":%.0f,' ..
    '"write":%.0f,"status":%.0f,"timeout":%.0f,"p50_us":%.0f,"p90_us":%.0f,' ..
    '"p99_us":%.0f,"max_us":%.0f,"mean_us":%.1f}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""


def wrk_available() -> str | None:
    return shutil.which("wrk")


def run_wrk(base_url: str, path: str, body: bytes, headers: Mapping[str, str],
            concurrency: int, duration: float, random_disable_header: bool = False) -> LoadResult:
    """Run wrk with one thread and `concurrency` connections for `duration` seconds."""
    binary = wrk_available()
    if binary is None:
        raise RuntimeError("wrk not found: install Debian's wrk package or use --driver python")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(wrk_script(path, body, headers, random_disable_header))
    try:
        # wrk takes whole seconds; shorter runs are rounded up to one second.
        seconds = max(1, round(duration))
        command = [binary, "-t1", f"-c{concurrency}", f"-d{seconds}s",
                   f"--timeout={REQUEST_TIMEOUT:.0f}s", "-s", script.name, base_url + path]
        result = subprocess.run(command, capture_output=True, text=True,
                                timeout=seconds + REQUEST_TIMEOUT + 30)
    finally:
        Path(script.name).unlink(missing_ok=True)
    line = next((line for line in result.stdout.splitlines() if line.startswith(WRK_MARKER)),
                None)
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed with status {result.returncode}: "
                           f"{(result.stderr or result.stdout).strip()[-1000:]}")
    summary = json.loads(line[len(WRK_MARKER):])
    # wrk counts non-2xx/3xx responses in `status` but also in `requests`.
    detail = {key: int(summary[key]) for key in ("connect", "read", "write", "status",
                                                 "timeout")}
    completed = int(summary["requests"]) - detail["status"]
    return LoadResult(
        driver="wrk", requests=completed, errors=sum(detail.values()),
        duration_s=summary["duration_us"] / 1e6,
        p50_ms=summary["p50_us"] / 1000, p90_ms=summary["p90_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000, max_ms=summary["max_us"] / 1000,
        mean_ms=summary["mean_us"] / 1000,
        error_detail={key: value for key, value in detail.items() if value})


# The aiohttp driver

def _session(connections: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    return aiohttp.ClientSession(connector=connector, timeout=timeout)


async def _post(session: aiohttp.ClientSession, url: str, body: bytes,
                headers: Mapping[str, str]) -> int:
    async with session.post(url, data=body, headers=headers) as response:
        await response.read()
        return response.status


def _error_name(error: BaseException) -> str:
    if isinstance(error, asyncio.TimeoutError):
        return "timeout"
    if isinstance(error, aiohttp.ClientConnectionError):
        return "connect"
    return "read"


async def closed_loop(url: str, body: bytes, headers: Mapping[str, str], concurrency: int,
                      duration: float) -> LoadResult:
    """Keep `concurrency` requests in flight for `duration` seconds."""
    latencies: list[float] = []
    errors = {"connect": 0, "read": 0, "status": 0, "timeout": 0}
    async with _session(concurrency) as session:
        start = time.perf_counter()
        deadline = start + duration

        async def worker() -> None:
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                try:
                    status = await _post(session, url, body, headers)
                except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                    errors[_error_name(error)] += 1
                    continue
                if 200 <= status < 300:
                    latencies.append(time.perf_counter() - sent)
                else:
                    errors["status"] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return _summary("python", latencies, errors, elapsed)


async def open_loop(url: str, body: bytes, headers: Mapping[str, str], rate: float,
                    duration: float, connections: int = 256) -> LoadResult:
    """Send `rate` requests per second on a fixed schedule for `duration` seconds.

    Latency runs from each request's scheduled send time, so a stalled server
    shows up in the figures instead of slowing the schedule down.
    """
    latencies: list[float] = []
    errors = {"connect": 0, "read": 0, "status": 0, "timeout": 0}
    count = max(1, int(rate * duration))
    max_lag = 0.0
    async with _session(connections) as session:
        start = time.perf_counter()

        async def one(scheduled: float) -> None:
            nonlocal max_lag
            max_lag = max(max_lag, time.perf_counter() - scheduled)
            try:
                status = await _post(session, url, body, headers)
            except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                errors[_error_name(error)] += 1
                return
            if 200 <= status < 300:
                latencies.append(time.perf_counter() - scheduled)
            else:
                errors["status"] += 1

        tasks = []
        for index in range(count):
            scheduled = start + index / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    result = _summary("python-open-loop", latencies, errors, elapsed)
    result.max_send_lag_ms = max_lag * 1000
    return result


@dataclass
class StreamResult:
    """Per-stream timings of sequential streaming requests, in milliseconds."""

    streams: int
    errors: int
    first_chunk_p50_ms: float
    first_chunk_p99_ms: float
    total_p50_ms: float
    total_p99_ms: float
    chunks_per_stream: float
    """Mean count of SSE `data:` events per stream, `[DONE]` included."""


async def stream_timings(url: str, body: bytes, headers: Mapping[str, str],
                         count: int) -> StreamResult:
    """Send `count` streaming requests one after another and time each one's chunks."""
    first_chunk: list[float] = []
    total: list[float] = []
    events = 0
    errors = 0
    async with _session(1) as session:
        for _ in range(count):
            sent = time.perf_counter()
            first: float | None = None
            received = 0
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    if response.status != 200:
                        await response.read()
                        errors += 1
                        continue
                    async for line in response.content:
                        if line.startswith(b"data:"):
                            if first is None:
                                first = time.perf_counter() - sent
                            received += 1
            except (aiohttp.ClientError, asyncio.TimeoutError):
                errors += 1
                continue
            if first is None:
                errors += 1
                continue
            first_chunk.append(first)
            total.append(time.perf_counter() - sent)
            events += received
    first_chunk.sort()
    total.sort()
    return StreamResult(
        streams=len(total), errors=errors,
        first_chunk_p50_ms=percentile(first_chunk, 0.5) * 1000,
        first_chunk_p99_ms=percentile(first_chunk, 0.99) * 1000,
        total_p50_ms=percentile(total, 0.5) * 1000,
        total_p99_ms=percentile(total, 0.99) * 1000,
        chunks_per_stream=events / len(total) if total else 0.0)


def as_dict(result: LoadResult | StreamResult) -> dict[str, Any]:
    data = dict(result.__dict__)
    if isinstance(result, LoadResult):
        data["throughput_rps"] = result.throughput
    return data


async def fixed_count(url: str, body: bytes, headers: Mapping[str, str], count: int,
                      concurrency: int) -> LoadResult:
    """Send exactly `count` requests, `concurrency` at a time (for the delivery counts)."""
    latencies: list[float] = []
    errors = {"connect": 0, "read": 0, "status": 0, "timeout": 0}
    remaining = count
    async with _session(concurrency) as session:
        start = time.perf_counter()

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                sent = time.perf_counter()
                try:
                    status = await _post(session, url, body, headers)
                except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                    errors[_error_name(error)] += 1
                    continue
                if 200 <= status < 300:
                    latencies.append(time.perf_counter() - sent)
                else:
                    errors["status"] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return _summary("python-fixed-count", latencies, errors, elapsed)
