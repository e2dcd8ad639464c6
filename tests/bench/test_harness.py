"""Smoke test of the benchmark harness: it runs end to end and writes well-formed results.

Tiny durations, no timing asserted. nginx, wrk and LiteLLM are never installed
here (`--no-install`): without nginx the aiohttp mock serves the provider, and
the aiohttp driver replaces wrk, so the direct call and the minimal FastAPI proxy
always run. hookgate joins when `hookgate serve` can start in this environment.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "bench" / "run.py"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("aiohttp") is None or importlib.util.find_spec("fastapi") is None,
    reason="the harness needs aiohttp and fastapi (installed with hookgate-proxy)")


def _hookgate_serve_available() -> bool:
    return importlib.util.find_spec("hookgate_proxy.cli") is not None


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:
    output = tmp_path_factory.mktemp("bench")
    contenders = "direct,minimal" + (",hookgate" if _hookgate_serve_available() else "")
    command = [sys.executable, str(RUN), "--no-install", "--driver", "python",
               "--duration", "0.3", "--rounds", "1", "--concurrency", "1,4",
               "--rates", "20", "--open-duration", "0.5", "--stream-count", "3",
               "--scenarios", "drivers,sweep,open-loop,streaming",
               "--contenders", contenders, "--output-dir", str(output)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert completed.returncode == 0, completed.stderr[-4000:]
    results = json.loads((output / "latest.json").read_text())
    markdown = (output / "benchmarks.md").read_text()
    return results, markdown, output


def test_sweep_has_every_contender_and_concurrency(smoke_run: tuple[dict, str, Path]) -> None:
    results, _, _ = smoke_run
    expected = {"direct", "minimal"} | ({"hookgate", "hookgate-default-gc"}
                                      if _hookgate_serve_available() else set())
    seen = {(record["contender"], record["concurrency"]) for record in results["sweep"]}
    assert seen == {(name, level) for name in expected for level in (1, 4)}


def test_sweep_records_are_complete(smoke_run: tuple[dict, str, Path]) -> None:
    results, _, _ = smoke_run
    for record in results["sweep"]:
        assert record["requests"] > 0, record
        assert record["errors"] == 0, record
        assert record["cpu_s_per_1k"] is not None, record
        assert record["peak_rss_mb"] > 0, record
        assert record["p50_ms"] <= record["p90_ms"] <= record["p99_ms"] <= record["max_ms"]


def test_open_loop_and_streaming_ran(smoke_run: tuple[dict, str, Path]) -> None:
    results, _, _ = smoke_run
    open_loop = [record for record in results["open_loop"] if "skipped" not in record]
    assert {record["contender"] for record in open_loop} >= {"direct", "minimal"}
    assert all(record["requests"] == 10 for record in open_loop)
    streams = {record["contender"]: record for record in results["streaming"]}
    assert streams["minimal"]["streams"] == 3
    assert streams["minimal"]["errors"] == 0
    # 64 chunks plus the closing `data: [DONE]`.
    assert streams["minimal"]["chunks_per_stream"] == 65


def test_driver_check_measures_direct_call(smoke_run: tuple[dict, str, Path]) -> None:
    results, _, _ = smoke_run
    drivers = {(record["driver"], record.get("concurrency")) for record in results["drivers"]}
    assert ("python", 1) in drivers
    assert ("python", 64) in drivers


def test_meta_names_machine_and_command(smoke_run: tuple[dict, str, Path]) -> None:
    results, _, _ = smoke_run
    meta = results["meta"]
    assert meta["machine"]["nproc"].isdigit()
    assert "--no-install" in meta["command"]
    assert meta["mock"] in ("nginx", "python")
    assert meta["driver"] == "python"


def test_report_has_sections_and_targets(smoke_run: tuple[dict, str, Path]) -> None:
    _results, markdown, _ = smoke_run
    for heading in ("## Targets", "## Method", "### Machine", "### Commands",
                    "## Closed-loop sweep", "## Open loop (constant rate)",
                    "## Streaming (64 chunks)", "## Load drivers against the direct call"):
        assert heading in markdown
    for where in ("in the proxy's process", "in a logger process"):
        assert f"| Throughput, 3 loggers {where}, vs LiteLLM (peak of the sweep) |" in markdown
    for name in ("direct", "minimal"):
        assert f"| {name} | 1 |" in markdown


def test_report_keeps_hand_written_sections(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import report
    finally:
        sys.path.remove(str(ROOT / "bench"))
    page = tmp_path / "benchmarks.md"
    page.write_text("# Old\n\n## Closed-loop sweep\n\nold table\n\n"
                    "## Core dispatch micro-benchmark\n\nkept text\n")
    kept = report.preserved_sections(page)
    assert kept == ["## Core dispatch micro-benchmark\n\nkept text\n"]


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (Debian: wrk)")
def test_wrk_driver_against_python_mock() -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import load
        import mock_provider
    finally:
        sys.path.remove(str(ROOT / "bench"))
    mock = mock_provider.start_python_mock()
    try:
        result = load.run_wrk(mock.base_url, "/v1/chat/completions", b"{}",
                              {"Authorization": "Bearer x"}, 2, 1, random_disable_header=True)
    finally:
        mock.stop()
    assert result.requests > 0
    assert result.errors == 0
    assert result.p50_ms <= result.p99_ms


def test_lane_delivery_script_runs() -> None:
    completed = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "lane_delivery.py"), "--events", "256",
         "--repeat", "1"], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    lines = completed.stdout.splitlines()
    assert len(lines) == 6
    assert lines[1].startswith("hookgate-core, 0 plugins")
    assert float(lines[2].split()[-1]) > 0
