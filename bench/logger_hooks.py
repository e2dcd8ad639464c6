"""Measure what the otel and prometheus loggers cost per event inside their log hook.

The dispatcher calls `log_success` in the plugin's own worker thread, off the
request path, so this cost never adds to a response's latency. It decides how many
events per second one proxy process can log before the plugin's backlog fills.

- otel: build the span from the event (attributes, content as JSON) and queue it in
  the BatchSpanProcessor. The queue and batch are large enough that nothing is
  exported while timing, so the figure excludes the export thread's work.
- prometheus: update the counters and histograms for one event (single process).

Like `timeit`, each row repeats a batch and reports the fastest batch (the least
disturbed by other processes) and the median.

    python bench/logger_hooks.py [--batch 2000] [--repeat 20]
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import sys
import time
from collections.abc import Callable

from hookgate import CallEvent
from hookgate.testing import make_event
from hookgate_otel import OtelLogger
from hookgate_prometheus import PrometheusLogger


def measure(hook: Callable[[CallEvent], None], event: CallEvent, batch: int,
            repeat: int) -> list[float]:
    """Return the cost per event in microseconds of each of `repeat` batches."""
    costs = []
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(batch):
            hook(event)
        costs.append((time.perf_counter() - started) / batch * 1e6)
    return costs


def otel_logger(capacity: int, log_content: bool) -> OtelLogger:
    logger = OtelLogger()
    # Port 9 (discard) on loopback: nothing is exported while timing anyway.
    logger.logger_setup(name="otel", settings={
        "endpoint": "http://127.0.0.1:9", "max_queue_size": capacity,
        "max_export_batch_size": capacity, "schedule_delay": 3600, "timeout": 1,
        "log_content": log_content})
    return logger


def prometheus_logger() -> PrometheusLogger:
    logger = PrometheusLogger()
    logger.logger_setup(name="prometheus", settings={})
    return logger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2000,
                        help="events per timed batch (default: 2000)")
    parser.add_argument("--repeat", type=int, default=20,
                        help="timed batches per row (default: 20)")
    arguments = parser.parse_args()
    capacity = arguments.batch * arguments.repeat + 1
    # At exit the SDK tries to export the queued spans to the closed port; its retry
    # warnings would bury the table.
    logging.basicConfig(level=logging.CRITICAL)

    with_content = make_event()
    without_content = with_content.without_content()
    rows = [
        ("otel, with content", otel_logger(capacity, True).log_success, with_content),
        ("otel, log_content: false", otel_logger(capacity, False).log_success,
         without_content),
        ("prometheus", prometheus_logger().log_success, with_content),
    ]

    print(f"machine: {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}")
    print(f"command: python {' '.join(sys.argv)}")
    print(f"{arguments.repeat} batches of {arguments.batch} events per row; microseconds "
          "per event inside log_success")
    print()
    print("| logger | fastest batch (us) | median batch (us) |")
    print("| --- | ---: | ---: |")
    for label, hook, event in rows:
        costs = measure(hook, event, arguments.batch, arguments.repeat)
        print(f"| {label} | {min(costs):.1f} | {statistics.median(costs):.1f} |")


if __name__ == "__main__":
    main()
