"""Garbage-collector pauses: measured, and kept short once the caches are loaded.

A full (generation 2) collection walks every tracked object and stops every thread while it
does. The operator's caches hold hundreds of thousands of long-lived objects, so at 1,000
AppReleases each walk took 100 to 180 ms every 15 to 30 s, landing on whichever edit was being
handled. Objects that survive a full collection are the caches: freezing them (moving them
out of the collector's sight, as Instagram does after start-up) leaves later full
collections only what is new. Frozen objects are still freed by reference counting; only
cyclic garbage among them would linger, so every UNFREEZE_SECONDS one full collection
looks at everything again.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

from .. import metrics

log = logging.getLogger("apprelease.gc")

UNFREEZE_SECONDS = 600.0
SLOW_SECONDS = 0.1


class PauseKeeper:
    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._started = 0.0
        self._looked_at_all = clock()

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        seconds = time.perf_counter() - self._started
        generation = int(info.get("generation", 0))
        metrics.GC_PAUSE_SECONDS.labels(str(generation)).observe(seconds)
        if seconds >= SLOW_SECONDS:
            log.info("gc generation %d took %.0f ms", generation, seconds * 1000)
        if generation != 2:
            return
        if self._clock() - self._looked_at_all >= UNFREEZE_SECONDS:
            gc.unfreeze()  # the next full collection looks at everything once
            self._looked_at_all = self._clock()
        else:
            gc.freeze()


def install() -> PauseKeeper:
    keeper = PauseKeeper()
    gc.callbacks.append(keeper)
    return keeper
