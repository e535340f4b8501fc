"""The faster kopf ToggleSet keeps kopf's semantics for all() and any()."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from apprelease.controller.kopf_toggles import FastToggleSet


async def until(condition: Callable[[], bool], timeout: float = 1.0) -> None:
    """Poll ``condition`` while letting the other tasks run."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.001)


async def none_finish(tasks: list[asyncio.Task[None]], within: float = 0.05) -> bool:
    done, _ = await asyncio.wait(tasks, timeout=within)
    return not done


def waiting(gate: FastToggleSet, state: bool) -> int:
    return len(gate._waiters[state])


def test_all_set_flips_only_when_every_toggle_is_on_or_dropped() -> None:
    async def scenario() -> None:
        gate = FastToggleSet(all)
        assert gate.is_on()  # all([]) is True, as in kopf
        toggles = [await gate.make_toggle(name=str(i)) for i in range(1000)]
        assert not gate.is_on()
        waiters = [asyncio.create_task(gate.wait_for(True)) for _ in range(1000)]
        await until(lambda: waiting(gate, True) == 1000)
        for toggle in toggles[:-1]:
            await gate.drop_toggle(toggle)
        assert await none_finish(waiters)
        await toggles[-1].turn_to(True)
        await asyncio.wait_for(asyncio.gather(*waiters), 1)
        assert gate.is_on()
        await toggles[-1].turn_to(False)
        assert not gate.is_on()
        await gate.drop_toggles([toggles[-1]])
        assert gate.is_on() and len(gate) == 0

    asyncio.run(scenario())


def test_any_set_and_waiting_for_off() -> None:
    async def scenario() -> None:
        paused = FastToggleSet(any)
        assert not paused.is_on()
        first = await paused.make_toggle(True, name="a")
        second = await paused.make_toggle(name="b")
        assert paused.is_on()
        off = asyncio.create_task(paused.wait_for(False))
        await second.turn_to(True)
        await first.turn_to(False)
        assert await none_finish([off])
        await paused.drop_toggle(second)
        await asyncio.wait_for(off, 1)
        assert not paused.is_on()
        await first.wait_for(False)  # the individual toggles still work on their own

    asyncio.run(scenario())


def test_cancelled_waiter_does_not_break_later_wakeups() -> None:
    async def scenario() -> None:
        gate = FastToggleSet(all)
        toggle = await gate.make_toggle()
        cancelled = asyncio.create_task(gate.wait_for(True))
        kept = asyncio.create_task(gate.wait_for(True))
        await until(lambda: waiting(gate, True) == 2)
        cancelled.cancel()
        await until(cancelled.done)
        await gate.drop_toggle(toggle)
        await asyncio.wait_for(kept, 1)

    asyncio.run(scenario())


def test_watch_events_lose_managed_fields_and_last_applied() -> None:
    from apprelease.controller.kopf_slim_events import strip_heavy_metadata

    obj = {
        "metadata": {
            "name": "a",
            "managedFields": [{"manager": "x"}],
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "keep": "1"},
        },
        "spec": {"replicas": 1},
    }
    strip_heavy_metadata(obj)
    assert obj == {"metadata": {"name": "a", "annotations": {"keep": "1"}}, "spec": {"replicas": 1}}
    strip_heavy_metadata({"kind": "Status"})  # error events carry no metadata
