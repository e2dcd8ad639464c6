"""Garbage-collector settings for a process that serves requests for a long time.

CPython's cyclic collector runs its youngest generation after every 700 net
container allocations and now and then walks every object the process holds. A
proxy request allocates a few hundred containers, so the collector runs every
request or two, and its full collections walk the tens of thousands of objects
that imports and startup created, which never become garbage. Measured on the
benchmark machine (2 cores, one pinned worker, no loggers), the defaults cost
about a sixth of the throughput and most of the p99 latency.

After startup, hookgate therefore moves every object that exists then into the
collector's permanent generation (`gc.freeze`) and runs the youngest generation
after 10,000 allocations. Cyclic garbage is still collected; it waits longer.
`hookgate_settings.gc_tuning: false` keeps Python's defaults.
"""

from __future__ import annotations

import gc
import logging

__all__ = ["YOUNG_THRESHOLD", "tune_for_serving"]

logger = logging.getLogger(__name__)

YOUNG_THRESHOLD = 10_000
"""Net container allocations between two collections of the youngest generation."""


def tune_for_serving() -> None:
    """Freeze what startup created and collect the youngest generation less often."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, oldest)
    logger.debug("garbage collector: %d startup objects frozen, thresholds %s",
                 gc.get_freeze_count(), gc.get_threshold())
