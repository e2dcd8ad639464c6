"""Measure what delivering one event to one plugin costs, beyond `Dispatcher.submit`.

`core_dispatch.py` times the request path only (`resolve` plus `submit`). This
script times the rest of the in-process work per event: the lane taking the
event from its queue and running the plugin's hook. A sync hook runs in the
lane's thread and an async hook on the event loop. The hooks do nothing, so the
figure is the dispatch machinery alone: process CPU time (every thread) per
event, from the first submit until the queues are drained.

    python bench/lane_delivery.py [--events 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

from hookgate import Dispatcher, LaneSettings, PluginRegistry, hookimpl
from hookgate.testing import make_event

EVENTS_PER_LOOP_TURN = 32
"""Events submitted between two yields to the loop, as a busy proxy would."""


class SyncNoop:
    @hookimpl
    def log_success(self, event: Any) -> None:
        return None


class AsyncNoop:
    @hookimpl
    async def log_success(self, event: Any) -> None:
        return None


async def _dispatcher_cost(plugins: list[object], events: int) -> float:
    registry = PluginRegistry(strict=False)
    lanes = {}
    for index, plugin in enumerate(plugins):
        name = f"plugin-{index}"
        registry.register(plugin, name)
        await registry.setup(name, {})
        lanes[name] = LaneSettings()
    dispatcher = Dispatcher(registry, lanes, backlog=events + 1000)
    await dispatcher.start()
    event = make_event()
    for _ in range(1000):
        dispatcher.submit(event)
    await dispatcher.drain()

    started = time.process_time()
    for _ in range(0, events, EVENTS_PER_LOOP_TURN):
        for _ in range(EVENTS_PER_LOOP_TURN):
            dispatcher.submit(event)
        await asyncio.sleep(0)
    await dispatcher.drain()
    cpu = time.process_time() - started
    await dispatcher.close(5)
    return cpu / events * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per measurement")
    parser.add_argument("--repeat", type=int, default=3,
                        help="measurements per case; the lowest is shown (default: 3)")
    arguments = parser.parse_args()

    cases: list[tuple[str, Callable[[], Any]]] = [
        ("hookgate-core, 0 plugins", lambda: _dispatcher_cost([], arguments.events)),
        ("hookgate-core, 1 sync no-op plugin",
         lambda: _dispatcher_cost([SyncNoop()], arguments.events)),
        ("hookgate-core, 1 async no-op plugin",
         lambda: _dispatcher_cost([AsyncNoop()], arguments.events)),
        ("hookgate-core, 3 sync no-op plugins",
         lambda: _dispatcher_cost([SyncNoop(), SyncNoop(), SyncNoop()], arguments.events)),
        ("hookgate-core, 3 async no-op plugins",
         lambda: _dispatcher_cost([AsyncNoop(), AsyncNoop(), AsyncNoop()], arguments.events)),
    ]
    print(f"{'case':50s} CPU microseconds per event (lowest of {arguments.repeat})")
    for label, case in cases:
        best = min(asyncio.run(case()) for _ in range(arguments.repeat))
        print(f"{label:50s} {best:8.1f}")


if __name__ == "__main__":
    main()
