"""Turn the raw results of `run.py` into docs/benchmarks.md and a latency-versus-throughput plot.

The page is regenerated on every run, except the hand-written sections listed
in `PRESERVED_SECTIONS`, which are copied over from the existing page.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

PRESERVED_SECTIONS = ("Core dispatch micro-benchmark", "Notes on the targets",
                      "Upstream client choice", "Findings for the hot path")
RSS_FLAT_LIMIT = 0.05
"""Memory counts as flat when RSS grows by less than this fraction after warm-up."""
RSS_WARM_REQUESTS = 10_000
THREE_LOGGERS = "hookgate-3-loggers"
THREE_PROCESS = "hookgate-3-process"
"""The same three loggers in hookgate's logger process."""
WITH_LOGGERS = {THREE_LOGGERS: "in the proxy's process", THREE_PROCESS: "in a logger process"}
LAG_WARNING_MS = 20.0


def _median(values: list[float]) -> float | None:
    clean = [value for value in values if value is not None]
    return statistics.median(clean) if clean else None


def aggregate(records: list[dict[str, Any]], key: str) -> dict[tuple[str, Any], dict[str, Any]]:
    """Group run records by contender and `key`; median over rounds, errors summed."""
    groups: dict[tuple[str, Any], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if "skipped" in record:
            continue
        groups[(record["contender"], record[key])].append(record)
    summary = {}
    for group, runs in groups.items():
        throughputs = [run["throughput_rps"] for run in runs]
        summary[group] = {
            "throughput_rps": _median(throughputs),
            "throughput_min": min(throughputs),
            "throughput_max": max(throughputs),
            "p50_ms": _median([run["p50_ms"] for run in runs]),
            "p90_ms": _median([run["p90_ms"] for run in runs]),
            "p99_ms": _median([run["p99_ms"] for run in runs]),
            "errors": sum(run["errors"] for run in runs),
            "requests": sum(run["requests"] for run in runs),
            "cpu_s_per_1k": _median([run["cpu_s_per_1k"] for run in runs]),
            "main_cpu_s_per_1k": _median([run.get("main_cpu_s_per_1k") for run in runs]),
            "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
            "rounds": len(runs),
        }
    return summary


def peak_throughput(records: list[dict[str, Any]]) -> dict[str, float]:
    """Return each contender's highest median closed-loop throughput over the sweep."""
    peaks: dict[str, float] = {}
    for (contender, _), row in aggregate(records, "concurrency").items():
        peaks[contender] = max(peaks.get(contender, 0.0), row["throughput_rps"])
    return peaks


# Targets

def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Compare the figures with each target; None where the inputs were not measured."""
    sweep = aggregate(results["sweep"], "concurrency")
    peaks = peak_throughput(results["sweep"])
    targets = []

    def add(name: str, measured: str, threshold: str, met: bool | None, margin: str) -> None:
        targets.append({"target": name, "measured": measured, "threshold": threshold,
                        "met": met, "margin": margin})

    litellm = peaks.get("litellm")
    minimal = peaks.get("minimal")
    for contender, where in WITH_LOGGERS.items():
        hookgate3 = peaks.get(contender)
        ratio = _ratio(hookgate3, litellm)
        add(f"Throughput, 3 loggers {where}, vs LiteLLM (peak of the sweep)",
            _format_ratio(ratio, hookgate3, litellm), "at least 20x",
            None if ratio is None else ratio >= 20,
            "" if ratio is None else f"{ratio / 20 - 1:+.0%} against 20x")
        ratio = _ratio(hookgate3, minimal)
        add(f"Throughput, 3 loggers {where}, vs minimal FastAPI proxy (peak of the sweep)",
            _format_ratio(ratio, hookgate3, minimal), "at least 0.90x",
            None if ratio is None else ratio >= 0.9,
            "" if ratio is None else f"{(ratio - 0.9) * 100:+.1f} points against 90%")

    direct = sweep.get(("direct", 1), {}).get("p50_ms")
    for contender in ("hookgate", THREE_LOGGERS, THREE_PROCESS):
        own = sweep.get((contender, 1), {}).get("p50_ms")
        added = None if own is None or direct is None else own - direct
        add(f"Added p50 latency at concurrency 1 over the direct call ({contender})",
            "not measured" if added is None else f"{added:.3f} ms ({own:.3f} - {direct:.3f})",
            "at most 1 ms", None if added is None else added <= 1.0,
            "" if added is None else f"{added - 1.0:+.3f} ms against 1 ms")

    open_loop = aggregate(results["open_loop"], "rate")
    rates = sorted({rate for (_, rate) in open_loop})
    for contender in ("hookgate-langfuse-down", "hookgate-langfuse-slow"):
        for rate in rates[-1:]:
            base = open_loop.get((THREE_LOGGERS, rate), {}).get("p99_ms")
            own = open_loop.get((contender, rate), {}).get("p99_ms")
            change = None if base is None or own is None else own / base - 1
            add(f"p99 change at {rate} req/s open loop ({contender} vs all backends up)",
                "not measured" if change is None else
                f"{change:+.1%} ({own:.2f} ms vs {base:.2f} ms)",
                "less than 10%", None if change is None else abs(change) < 0.10,
                "" if change is None else f"{(abs(change) - 0.10) * 100:+.1f} points against 10%")

    for concurrency in (32, 64):
        base = sweep.get(("hookgate", concurrency), {}).get("throughput_rps")
        own = sweep.get(("hookgate-3-disabled", concurrency), {}).get("throughput_rps")
        ratio = _ratio(own, base)
        spread = None
        if base is not None:
            row = sweep[("hookgate", concurrency)]
            spread = (row["throughput_max"] - row["throughput_min"]) / base
        add(f"Header-disabled loggers vs no loggers, throughput at concurrency {concurrency}",
            "not measured" if ratio is None else
            f"{ratio:.3f}x (round-to-round spread of no loggers: {spread:.1%})",
            "no measurable cost (within the spread)",
            None if ratio is None else 1 - ratio <= max(spread or 0.0, 0.02),
            "" if ratio is None else f"{(1 - ratio) * 100:+.1f}% slower")

    memory = results.get("memory") or {}
    growth = rss_growth(memory)
    add(f"RSS over {memory.get('requests', 0):,} requests with random header values",
        "not measured" if growth is None else
        f"{growth['growth']:+.1%} ({growth['from_mb']:.1f} MB after "
        f"{growth['from_requests']:,} requests, {growth['to_mb']:.1f} MB at the end)",
        f"flat: settled RSS grows less than {RSS_FLAT_LIMIT:.0%} after the first "
        f"{RSS_WARM_REQUESTS:,} requests",
        None if growth is None else growth["growth"] < RSS_FLAT_LIMIT,
        "" if growth is None else f"{(growth['growth'] - RSS_FLAT_LIMIT) * 100:+.1f} points")

    workers = aggregate(results["workers"], "concurrency")
    one = workers.get(("hookgate", 64), {}).get("throughput_rps")
    two = workers.get(("hookgate-2-workers", 64), {}).get("throughput_rps")
    ratio = _ratio(two, one)
    add("--workers 2 scaling at concurrency 64, no loggers",
        _format_ratio(ratio, two, one), "at least 1.6x",
        None if ratio is None else ratio >= 1.6,
        "" if ratio is None else f"{ratio / 1.6 - 1:+.0%} against 1.6x")
    return targets


def rss_growth(memory: dict[str, Any]) -> dict[str, Any] | None:
    """Compare the settled RSS after the warm-up requests with the last settled RSS."""
    samples = [sample for sample in memory.get("samples", []) if sample.get("settled")]
    warm = next((sample for sample in samples if sample["requests"] >= RSS_WARM_REQUESTS), None)
    if warm is None or samples[-1] is warm:
        return None
    last = samples[-1]
    return {"from_mb": warm["rss_mb"], "from_requests": warm["requests"],
            "to_mb": last["rss_mb"], "growth": last["rss_mb"] / warm["rss_mb"] - 1}


def _format_ratio(ratio: float | None, numerator: float | None,
                  denominator: float | None) -> str:
    if ratio is None:
        return "not measured"
    return f"{ratio:.2f}x ({numerator:,.0f} vs {denominator:,.0f} req/s)"


# The plot

def write_plot(results: dict[str, Any], path: Path) -> bool:
    """Plot p50 and p99 latency against throughput per contender; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    sweep = aggregate(results["sweep"], "concurrency")
    contenders = sorted({contender for contender, _ in sweep},
                        key=list(results["contenders"]).index)
    figure, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    for axis, metric in zip(axes, ("p50_ms", "p99_ms"), strict=False):
        for contender in contenders:
            points = sorted((concurrency, row) for (name, concurrency), row in sweep.items()
                            if name == contender)
            axis.plot([row["throughput_rps"] for _, row in points],
                      [row[metric] for _, row in points], marker="o", label=contender)
            for concurrency, row in points:
                axis.annotate(f"c{concurrency}", (row["throughput_rps"], row[metric]),
                              fontsize=7, xytext=(3, 3), textcoords="offset points")
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("throughput (requests/s, log scale)")
        axis.set_ylabel(f"{metric[:3]} latency (ms, log scale)")
        axis.set_title(f"{metric[:3]} latency vs throughput, closed loop c=1/8/32/64")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return True


# The page

def _number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def preserved_sections(path: Path) -> list[str]:
    """Return the hand-written sections of the existing page, in their order there."""
    if not path.exists():
        return []
    kept = []
    for part in path.read_text().split("\n## ")[1:]:
        title = part.splitlines()[0].strip()
        if title in PRESERVED_SECTIONS:
            kept.append("## " + part.rstrip() + "\n")
    return kept


def write_markdown(results: dict[str, Any], path: Path, json_path: Path,
                   plot_path: Path | None) -> None:
    kept = preserved_sections(path)
    lines: list[str] = []
    meta = results["meta"]
    add = lines.append

    add("# Benchmarks: hookgate against the LiteLLM proxy")
    add("")
    add("Generated by `python bench/run.py` (see Commands). Every section below is rewritten "
        "by each run except the hand-written ones at the end: " +
        ", ".join(f'"{title}"' for title in PRESERVED_SECTIONS) + ".")
    add("")
    if meta.get("provisional"):
        add(f"**Provisional:** {meta['provisional']}")
        add("")
    add(f"Run from {meta['started']} to {meta['finished']} (UTC). Raw figures: "
        f"`{_relative(json_path)}`.")
    add("")

    _targets_section(add, results)
    _method_section(add, results)
    _sweep_section(add, results, plot_path, path)
    _open_loop_section(add, results)
    _streaming_section(add, results)
    _delivery_section(add, results)
    _dropped_section(add, results)
    _per_logger_section(add, results)
    _memory_section(add, results)
    _workers_section(add, results)
    _drivers_section(add, results)
    _skipped_section(add, results)
    text = "\n".join(lines).rstrip() + "\n"
    for section in kept:
        text += "\n" + section
    path.write_text(text)


def _relative(path: Path) -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


def _targets_section(add: Any, results: dict[str, Any]) -> None:
    add("## Targets")
    add("")
    add("Single worker unless stated, measured side by side in this run. \"Margin\" is how far "
        "the figure is above (+) or below (-) the threshold, in the threshold's own terms.")
    add("")
    add("| Target | Measured | Threshold | Result | Margin |")
    add("| --- | --- | --- | --- | --- |")
    for target in evaluate_targets(results):
        result = {True: "met", False: "**missed**", None: "not measured"}[target["met"]]
        add(f"| {target['target']} | {target['measured']} | {target['threshold']} | {result} "
            f"| {target['margin']} |")
    add("")
    add("Per-request blocklist handling (O(names in the header)) is measured by the core "
        "dispatch micro-benchmark below, not by this harness.")
    add("")


def _method_section(add: Any, results: dict[str, Any]) -> None:
    meta = results["meta"]
    options = meta["options"]
    add("## Method")
    add("")
    add(f"- Provider: a zero-delay mock ({meta['mock']}) on 127.0.0.1 returning a fixed "
        "`chat.completion` body, and a fixed SSE stream of 64 `chat.completion.chunk` events "
        "plus `[DONE]` for streaming requests. nginx runs one worker with its own config in a "
        "temporary directory.")
    add(f"- Closed loop: {meta['driver']} with one thread and N keep-alive connections "
        f"(N = {', '.join(map(str, options['concurrency']))}), {options['duration']:g} s per "
        f"point, {options['rounds']} rounds. Each round visits every concurrency and, within "
        "it, every contender, in an order rotated by one per round. Figures are medians over "
        "the rounds, and errors are summed.")
    add(f"- Open loop: the aiohttp driver sends a fixed schedule of "
        f"{', '.join(map(str, options['rates']))} requests/s for {options['open_duration']:g} s "
        "per run; latency counts from each request's scheduled send time. A contender whose "
        "closed-loop peak is below 1.1x the rate is skipped at that rate.")

    pinning = results.get("pinning")
    if pinning:
        add(f"- CPU pinning: each single-worker server runs on CPU {pinning['servers']}; the "
            f"mock, the logging receivers, wrk and the aiohttp driver run on CPU "
            f"{pinning['load_side']}. The logger process of `{THREE_PROCESS}` runs on CPU "
            f"{pinning['load_side']} too (`hookgate_settings.logger_process_cpus`), so its "
            "work competes with the load side, not with the server. `--workers 2` servers may "
            "use every CPU. Other jobs on the machine are not pinned.")
    else:
        add("- No CPU pinning: servers, mock, receivers and drivers share every CPU.")
    add("- CPU seconds per 1,000 requests: user plus system time from /proc/<pid>/stat of the "
        "server process and all its descendants, read before and after each run; in brackets "
        "the server process alone, which differs only for a server with a logger process. "
        "Peak RSS: the summed RSS of the same processes, sampled every 0.2 s.")
    add("- Every contender reads the same `model_list` and `general_settings.master_key` "
        "(LiteLLM's config format). The callbacks section differs: hookgate names its plugins; "
        "LiteLLM loads one no-op `CustomLogger` from a file next to its config.")
    add("- Each logging scenario runs its own hookgate server with its own receivers, so counts "
        "never mix. After every run against a logging scenario the harness waits until the "
        "receivers stop counting, so a backlog does not use CPU during the next contender's run.")
    add("")

    add("Contenders:")
    add("")
    for name, contender in results["contenders"].items():
        headers = contender.get("headers") or {}
        suffix = "".join(f"; header `{key}: {value}`" for key, value in headers.items())
        add(f"- `{name}`: {contender['description']}{suffix}")
    add("")

    add("### Machine")
    add("")
    machine = meta["machine"]
    add(f"`nproc`: {machine['nproc']}; kernel {machine['kernel']}; Python {machine['python']}; "
        f"load average at start {', '.join(f'{v:.2f}' for v in machine['load_average_at_start'])}.")
    add("")
    add("```")
    add("\n".join(machine["lscpu"]))
    add(machine["free"])
    add("```")
    add("")
    add("Versions: " + ", ".join(f"{name} {version}" for name, version
                                  in meta["versions"].items()) + ".")
    add("")

    add("### Commands")
    add("")
    add("```")
    add("pip install -r bench/requirements.txt   # plus -e core -e proxy -e plugins/<name>")
    add(meta["command"])
    add("```")
    add("")
    add("Options: `python bench/run.py --help`. `--duration`, `--rounds`, `--concurrency`, "
        "`--rates`, `--scenarios` and `--contenders` shorten or widen a run; `--no-install` "
        "never installs nginx, wrk or LiteLLM (the harness otherwise installs nginx-light and "
        "wrk with apt-get, and LiteLLM into bench/.cache with pip).")
    add("")


def _sweep_table(add: Any, rows: dict[tuple[str, Any], dict[str, Any]], key_label: str,
                 results: dict[str, Any], ratios: bool = True) -> None:
    ratio_header = " vs minimal | vs LiteLLM |" if ratios else ""
    add(f"| Contender | {key_label} | req/s (min-max) | p50 ms | p90 ms | p99 ms | errors "
        f"| CPU s / 1k req (server process) | peak RSS MB |{ratio_header}")
    add("| --- | --- | --- | --- | --- | --- | --- | --- | --- |" + (" --- | --- |" if ratios
                                                                   else ""))
    order = list(results["contenders"])
    for (contender, key), row in sorted(rows.items(), key=lambda item: (
            item[0][1], order.index(item[0][0]) if item[0][0] in order else 99)):
        minimal = rows.get(("minimal", key), {}).get("throughput_rps")
        litellm = rows.get(("litellm", key), {}).get("throughput_rps")
        versus_minimal = _ratio(row["throughput_rps"], minimal)
        versus_litellm = _ratio(row["throughput_rps"], litellm)
        ratio_cells = (f" {'-' if versus_minimal is None else f'{versus_minimal:.2f}x'} "
                       f"| {'-' if versus_litellm is None else f'{versus_litellm:.1f}x'} |"
                       if ratios else "")
        add(f"| {contender} | {key} | {_number(row['throughput_rps'], 0)} "
            f"({_number(row['throughput_min'], 0)}-{_number(row['throughput_max'], 0)}) "
            f"| {_number(row['p50_ms'])} | {_number(row['p90_ms'])} | {_number(row['p99_ms'])} "
            f"| {row['errors']} | {_number(row['cpu_s_per_1k'], 3)} "
            f"({_number(row.get('main_cpu_s_per_1k'), 3)}) "
            f"| {_number(row['peak_rss_mb'], 1)} |{ratio_cells}")
    add("")


def _sweep_section(add: Any, results: dict[str, Any], plot_path: Path | None,
                   page: Path) -> None:
    add("## Closed-loop sweep")
    add("")
    rows = aggregate(results["sweep"], "concurrency")
    if not rows:
        add("Not run.")
        add("")
        return
    _sweep_table(add, rows, "concurrency", results)
    if plot_path is not None:
        try:
            link = Path(plot_path).resolve().relative_to(page.resolve().parent)
        except ValueError:
            link = Path("..") / _relative(plot_path)
        add(f"![p50 and p99 latency against throughput per contender]({link})")
        add("")


def _open_loop_section(add: Any, results: dict[str, Any]) -> None:
    add("## Open loop (constant rate)")
    add("")
    rows = aggregate(results["open_loop"], "rate")
    if not rows:
        add("Not run.")
        add("")
        return
    _sweep_table(add, rows, "rate (req/s)", results, ratios=False)
    lagging = [record for record in results["open_loop"]
               if (record.get("max_send_lag_ms") or 0) > LAG_WARNING_MS]
    if lagging:
        add(f"Runs in which the driver sent a request more than {LAG_WARNING_MS:.0f} ms after "
            "its scheduled time: the driver itself was short of CPU, so these runs' "
            "latencies overstate the server's.")
        add("")
        for record in lagging:
            add(f"- `{record['contender']}` at {record['rate']} req/s, round {record['round']}: "
                f"max send lag {record['max_send_lag_ms']:.0f} ms, p99 "
                f"{record['p99_ms']:.1f} ms.")
        add("")
    for record in results["open_loop"]:
        if "skipped" in record:
            add(f"- `{record['contender']}` at {record['rate']} req/s skipped: "
                f"{record['skipped']}.")
    add("")


def _streaming_section(add: Any, results: dict[str, Any]) -> None:
    add("## Streaming (64 chunks)")
    add("")
    records = results["streaming"]
    if not records:
        add("Not run.")
        add("")
        return
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[record["contender"]].append(record)
    direct = groups.get("direct")
    direct_first = _median([r["first_chunk_p50_ms"] for r in direct]) if direct else None
    direct_total = _median([r["total_p50_ms"] for r in direct]) if direct else None
    add("Sequential requests with `stream: true` and `include_usage`; times from sending the "
        "request to the first SSE `data:` line and to the end of the stream. \"Added\" is over "
        "the direct call.")
    add("")

    add("| Contender | streams | errors | events/stream | first chunk p50 ms | p99 ms "
        "| added p50 ms | whole stream p50 ms | p99 ms | added p50 ms |")
    add("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for contender, runs in groups.items():
        first = _median([r["first_chunk_p50_ms"] for r in runs])
        total = _median([r["total_p50_ms"] for r in runs])
        add(f"| {contender} | {sum(r['streams'] for r in runs)} | "
            f"{sum(r['errors'] for r in runs)} | "
            f"{_number(_median([r['chunks_per_stream'] for r in runs]), 1)} | "
            f"{_number(first)} | {_number(_median([r['first_chunk_p99_ms'] for r in runs]))} | "
            f"{_number(None if direct_first is None else first - direct_first)} | "
            f"{_number(total)} | {_number(_median([r['total_p99_ms'] for r in runs]))} | "
            f"{_number(None if direct_total is None else total - direct_total)} |")
    add("")


def _delivery_section(add: Any, results: dict[str, Any]) -> None:
    add("## Logger delivery counts")
    add("")
    records = results["delivery"]
    if not records:
        add("Not run.")
        add("")
        return
    add("An exact number of requests per logging contender (16 at a time); then the "
        "harness waits until each receiver has counted them (up to 60 s). jsonl is counted "
        "in its file, langfuse as `trace-create` events at its receiver, otel as root spans "
        "at its receiver. \"Exact\" means every logger received every successful request "
        "once, and none when the header disabled them.")
    add("")
    add("| Contender | sent | succeeded | expected per logger | received | exact |")
    add("| --- | --- | --- | --- | --- | --- |")
    for record in records:
        add(f"| {record['contender']} | {record['sent']} | {record['succeeded']} | "
            f"{_pairs(record['expected'])} | {_pairs(record['received'])} | "
            f"{'yes' if record['exact'] else '**no**'} |")
    add("")


def _pairs(mapping: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in mapping.items())


def _dropped_section(add: Any, results: dict[str, Any]) -> None:
    status = results.get("callback_status") or {}
    if not status:
        return
    add("### Logger counters after the load runs")
    add("")
    add("From `/callbacks/status` of each logging server at the end of the run: events the "
        "dispatcher delivered to the plugin or dropped (its per-plugin queue was full), and "
        "what the plugin's own sender sent or dropped. The load runs send more requests "
        "per second than the slow or down backends accept, so those drop by design; a drop "
        "in the dispatcher means the plugin's hook itself fell behind the request rate.")
    add("")
    add("| Server | plugin | delivered | dropped by dispatch | sender sent | sender dropped "
        "| sender queued |")
    add("| --- | --- | --- | --- | --- | --- | --- |")
    for server, plugins in status.items():
        if "error" in plugins:
            add(f"| {server} | unavailable: {plugins['error']} | | | | | |")
            continue
        for name, entry in plugins.items():
            stats = entry.get("stats") or {}
            health = entry.get("health") or {}
            sent = health.get("sent", health.get("exported", health.get("lines_written", "-")))
            add(f"| {server} | {name} | {stats.get('delivered', '-')} | "
                f"{stats.get('dropped', '-')} | {sent} | {health.get('dropped', '-')} | "
                f"{health.get('queued', '-')} |")
    add("")


def _per_logger_section(add: Any, results: dict[str, Any]) -> None:
    rows = aggregate(results.get("per_logger", []), "concurrency")
    if not rows:
        return
    add("## Cost of each logger")
    add("")
    add("One hookgate server per logger, each with only that logger active, against the "
        "servers with no loggers and with all three (in the proxy's process and in a logger "
        "process); wrk at concurrency 32, rounds interleaved. \"Added CPU\" is CPU time per "
        "request over the server without loggers, the logger process included; the last "
        "column leaves the logger process out.")
    add("")
    base = rows.get(("hookgate", 32), {}).get("cpu_s_per_1k")
    add("| Server | req/s (min-max) | p50 ms | p99 ms | CPU ms / req | added CPU ms / req "
        "| server process CPU ms / req |")
    add("| --- | --- | --- | --- | --- | --- | --- |")
    for (contender, _), row in rows.items():
        cpu = row["cpu_s_per_1k"]
        added = None if base is None or cpu is None else cpu - base
        add(f"| {contender} | {_number(row['throughput_rps'], 0)} "
            f"({_number(row['throughput_min'], 0)}-{_number(row['throughput_max'], 0)}) | "
            f"{_number(row['p50_ms'])} | {_number(row['p99_ms'])} | {_number(cpu, 3)} | "
            f"{_number(added, 3)} | {_number(row.get('main_cpu_s_per_1k'), 3)} |")
    add("")


def _memory_section(add: Any, results: dict[str, Any]) -> None:
    add("## Memory over many requests")
    add("")
    memory = results.get("memory") or {}
    if not memory:
        add("Not run.")
        add("")
        return
    add(f"`{memory['contender']}` under wrk at concurrency 32, every request with a random "
        f"`x-litellm-disable-callbacks` value (two unknown names) and a random "
        f"`x-bench-nonce` header: {memory['requests']:,} requests, {memory['errors']} errors.")
    add("")
    add("\"Settled\" samples are taken after the receivers stopped counting, so they leave "
        "out events still queued for the loggers; \"live\" samples are taken right after a "
        "2-second load burst. Peak of all live samples: "
        f"{max(s['rss_mb'] for s in memory['samples']):.1f} MB.")
    add("")
    add("| requests | settled RSS MB | seconds |")
    add("| --- | --- | --- |")
    for sample in memory["samples"]:
        if sample.get("settled"):
            add(f"| {sample['requests']:,} | {sample['rss_mb']:.1f} | {sample['seconds']:.1f} |")
    add("")


def _workers_section(add: Any, results: dict[str, Any]) -> None:
    add("## `--workers 2`")
    add("")
    rows = aggregate(results["workers"], "concurrency")
    if not rows:
        add("Not run.")
        add("")
        return
    add("No loggers, wrk at concurrency 64, rounds alternating which server goes first. "
        "On this machine wrk and nginx share the same 2 cores with the workers.")
    add("")
    _sweep_table(add, rows, "concurrency", results, ratios=False)


def _drivers_section(add: Any, results: dict[str, Any]) -> None:
    add("## Load drivers against the direct call")
    add("")
    if not results["drivers"]:
        add("Not run.")
        add("")
        return
    add("Each driver's own ceiling: the same request sent straight to the mock. A driver "
        "is not the bottleneck when its ceiling is far above the contenders' figures.")
    add("")
    add("| Driver | concurrency or rate | req/s | p50 ms | p99 ms | errors |")
    add("| --- | --- | --- | --- | --- | --- |")
    for record in results["drivers"]:
        level = record.get("concurrency", f"{record.get('rate')} req/s")
        add(f"| {record['driver']} | {level} | {_number(record['throughput_rps'], 0)} | "
            f"{_number(record['p50_ms'], 3)} | {_number(record['p99_ms'], 3)} | "
            f"{record['errors']} |")
    add("")


def _skipped_section(add: Any, results: dict[str, Any]) -> None:
    notes = list(results.get("notes", []))
    outside = results.get("litellm_outside_connections")
    if outside is not None:
        notes.append("LiteLLM's open TCP connections to addresses outside loopback at the end "
                     f"of the run: {', '.join(outside) if outside else 'none'}.")
    skipped = results.get("skipped", {})
    if not notes and not skipped:
        return
    add("## Skipped and notes")
    add("")
    for name, reason in skipped.items():
        add(f"- Skipped `{name}`: {reason}")
    for note in notes:
        add(f"- {note}")
    add("")
