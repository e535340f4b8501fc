"""The work queue: de-duplication, re-processing, priority, delays."""

from __future__ import annotations

import asyncio

from apprelease.controller.queue import MAX_BACKOFF_SECONDS, WorkQueue


def test_dedup_priority_and_dirty_requeue() -> None:
    async def scenario() -> list[str]:
        queue: WorkQueue[str] = WorkQueue()
        for key in ("a", "b", "a", "c"):
            queue.add(key)
        queue.add("c", urgent=True)  # already waiting: jumps ahead
        queue.add("d", urgent=True)
        order = []
        for _ in range(4):
            key = await queue.get()
            order.append(key)
            if key == "c":
                queue.add("c")  # changed while processing: processed again after done()
            queue.done(key)
        order.append(await queue.get())
        return order

    assert asyncio.run(scenario()) == ["c", "d", "a", "b", "c"]


def test_an_edit_during_processing_stays_urgent() -> None:
    async def scenario() -> list[str]:
        queue: WorkQueue[str] = WorkQueue()
        queue.add("a")
        key = await queue.get()
        queue.add("a", urgent=True)  # a user edit lands while a routine pass runs
        queue.add("a")  # ... followed by a routine wake-up: still urgent
        queue.add("b")
        queue.add("c")
        queue.done(key)
        return [await queue.get() for _ in range(3)]

    assert asyncio.run(scenario()) == ["a", "b", "c"]


def test_add_after_keeps_the_earliest_schedule_and_backoff_grows() -> None:
    async def scenario() -> tuple[str, float, float]:
        queue: WorkQueue[str] = WorkQueue()
        queue.add_after("x", 0.2)
        queue.add_after("x", 0.05)
        queue.add_after("x", 5)
        key = await asyncio.wait_for(queue.get(), timeout=2)
        first = queue.retry_later("y")
        second = queue.retry_later("y")
        queue.forget("y")
        return key, first, second

    assert asyncio.run(scenario()) == ("x", 0.5, 1.0)


def test_back_off_is_capped_without_overflow_after_days_of_failures() -> None:
    """0.5 * 2 ** 1024 overflowed a float at the 1,025th failure of one key (~34 h of retries),
    inside the worker's except clause: the worker died. The cap applies before the power."""

    async def scenario() -> list[float]:
        queue: WorkQueue[str] = WorkQueue()
        delays = [queue.retry_later("k") for _ in range(5000)]
        queue.forget("k")
        return delays

    delays = asyncio.run(scenario())
    assert delays[:3] == [0.5, 1.0, 2.0]
    assert max(delays) == delays[-1] == MAX_BACKOFF_SECONDS
