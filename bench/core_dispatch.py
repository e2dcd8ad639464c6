"""Measure the request-path cost of hookgate-core's dispatch: `resolve` plus `submit`.

This is what the proxy does for every finished call: turn the names from the
`x-litellm-disable-callbacks` header into a set of plugins to skip
(`Dispatcher.resolve`), then queue the event for every other active plugin
(`Dispatcher.submit`). The plugins' own work runs later, off the request path,
so it is not part of the figure.

Each measurement times a batch of submissions in a tight loop on the event loop,
then lets the workers empty the queues (not timed) so that no event is ever
dropped. Like `timeit`, it repeats the batch and reports the fastest batch
(the least disturbed by other processes) and the median.

    python bench/core_dispatch.py [--batch 1000] [--repeat 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time

from hookgate import CallEvent, Dispatcher, LaneSettings, PluginRegistry, hookimpl
from hookgate.testing import make_event

PLUGIN_COUNTS = (0, 1, 5)

# Header values to compare: none, then two names of which one matches an active
# plugin when there is one. The proxy passes names already split, trimmed and
# lowercased.
HEADERS: dict[str, tuple[str, ...]] = {
    "no header": (),
    "header, 2 names": ("plugin-0", "nosuch"),
}


class AsyncNoOpLogger:
    """An async plugin that does nothing; it gets an asyncio lane on the event loop."""

    @hookimpl
    async def log_success(self, event: CallEvent) -> None:
        return None


class SyncNoOpLogger:
    """A sync plugin that does nothing; it gets a lane with a thread of its own."""

    @hookimpl
    def log_success(self, event: CallEvent) -> None:
        return None


LOGGER_KINDS = {"async": AsyncNoOpLogger, "sync": SyncNoOpLogger}


async def build_dispatcher(plugin_count: int, backlog: int, kind: str) -> Dispatcher:
    registry = PluginRegistry(strict=True)
    names = [f"plugin-{index}" for index in range(plugin_count)]
    for name in names:
        registry.register(LOGGER_KINDS[kind](), name)
        await registry.setup(name)

    dispatcher = Dispatcher(registry, {name: LaneSettings() for name in names}, backlog=backlog)
    await dispatcher.start()
    return dispatcher


async def measure(plugin_count: int, names: tuple[str, ...], batch: int,
                  repeat: int, kind: str) -> list[float]:
    """Return the cost per event in microseconds of each of `repeat` batches."""
    dispatcher = await build_dispatcher(plugin_count, backlog=batch, kind=kind)
    event = make_event()
    costs = []

    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(batch):
            result = dispatcher.resolve(names)
            dispatcher.submit(event, result.disabled)
        elapsed = time.perf_counter() - started
        costs.append(elapsed / batch * 1e6)

        if not await dispatcher.drain(timeout=30):
            raise RuntimeError(f"queues did not drain within 30 s: {dispatcher.stats()}")

    dropped = sum(stats.dropped for stats in dispatcher.stats().values())
    await dispatcher.close(timeout=5)
    if dropped:
        raise RuntimeError(f"{dropped} events were dropped, so the figures are invalid")
    return costs


def describe_machine() -> str:
    processor = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            models = [line.split(":", 1)[1].strip() for line in cpuinfo
                      if line.startswith("model name")]
        processor = models[0] if models else processor
    except OSError:
        pass  # Not Linux: keep what the platform module reports.
    return (f"{processor}, {os.cpu_count()} CPUs, "
            f"{platform.system()} {platform.release()}, "
            f"Python {platform.python_version()} ({platform.python_implementation()})")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1000,
                        help="submissions per timed batch (default: 1000)")
    parser.add_argument("--repeat", type=int, default=30,
                        help="timed batches per row (default: 30)")
    arguments = parser.parse_args()

    print(f"machine: {describe_machine()}")
    print(f"command: python {' '.join(sys.argv)}")
    print(f"{arguments.repeat} batches of {arguments.batch} events per row; "
          "microseconds per event (resolve + submit)")
    print()
    print("| plugins | active plugins | header | fastest batch (us) | median batch (us) |")
    print("| --- | ---: | --- | ---: | ---: |")
    for kind in LOGGER_KINDS:
        for plugin_count in PLUGIN_COUNTS:
            if kind == "sync" and plugin_count == 0:
                continue  # the same as the async row: no lane at all
            for label, names in HEADERS.items():
                costs = await measure(plugin_count, names, arguments.batch, arguments.repeat,
                                      kind)
                print(f"| {kind} | {plugin_count} | {label} | {min(costs):.2f} | "
                      f"{statistics.median(costs):.2f} |")


if __name__ == "__main__":
    asyncio.run(main())
