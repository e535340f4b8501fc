"""The kopf adapter (controller/kopf_adapter.py): the kopf internals it replaces still have the
shape it was written against (a kopf upgrade fails here, loudly), and its replacements keep
kopf's semantics (the ToggleSet for all() and any(); the watch stream minus heavy metadata)."""

from __future__ import annotations

import asyncio
import inspect
import re
import tomllib
from collections.abc import Callable
from importlib import metadata
from typing import Any

import pytest
from kopf._cogs.aiokits import aiotoggles
from kopf._cogs.clients import watching
from kopf._core.reactor import orchestration, queueing, running

from apprelease.controller import kopf_adapter
from apprelease.controller.kopf_adapter import FastToggleSet, UnsupportedKopf, strip_heavy_metadata
from tests.support import ROOT


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


# The shape of kopf's internals ------------------------------------------------------------


def test_the_installed_kopf_is_the_range_the_adapter_and_pyproject_name() -> None:
    kopf_adapter.check_kopf_version()  # raises outside the range
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert kopf_adapter.KOPF_REQUIREMENT in dependencies, "widen pyproject's kopf pin and the adapter together"
    installed = tuple(int(p) for p in metadata.version("kopf").split(".")[:3])
    assert kopf_adapter.KOPF_LOWEST <= installed < kopf_adapter.KOPF_BELOW


@pytest.mark.parametrize("version", [(1, 45, 1), (1, 46, 0), (2, 0, 0)])
def test_another_kopf_is_refused_before_anything_is_replaced(version: tuple[int, ...],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kopf_adapter, "kopf_version", lambda: version)
    original = aiotoggles.ToggleSet
    with pytest.raises(UnsupportedKopf, match=re.escape(kopf_adapter.KOPF_REQUIREMENT)):
        kopf_adapter.install()
    assert aiotoggles.ToggleSet is original


def _parameters(function: Any) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


POSITIONAL = inspect.Parameter.POSITIONAL_OR_KEYWORD
KEYWORD = inspect.Parameter.KEYWORD_ONLY
EMPTY = inspect.Parameter.empty


def test_kopfs_toggle_set_is_the_one_the_fast_set_replaces() -> None:
    """FastToggleSet overrides every method of kopf's set that changes or reads its toggles,
    and reaches into _fn, _toggles and _condition: a new method or attribute breaks it."""
    assert _parameters(aiotoggles.ToggleSet.__init__) == [("self", POSITIONAL, EMPTY), ("fn", POSITIONAL, EMPTY)]
    assert _parameters(aiotoggles.ToggleSet.make_toggle) == [
        ("self", POSITIONAL, EMPTY), ("_ToggleSet__val", POSITIONAL, False), ("name", KEYWORD, None)]
    methods = {name for name, value in vars(aiotoggles.ToggleSet).items() if callable(value)}
    assert methods == {"__init__", "__repr__", "__len__", "__iter__", "__contains__", "__bool__", "is_on",
                       "is_off", "wait_for", "make_toggle", "drop_toggle", "drop_toggles"}
    overridden = {name for name in vars(FastToggleSet) if callable(vars(FastToggleSet)[name])}
    assert {"is_on", "wait_for", "make_toggle", "drop_toggle", "drop_toggles"} <= overridden

    async def shape() -> None:
        kopfs = aiotoggles.ToggleSet(all)
        assert set(vars(kopfs)) == {"_condition", "_toggles", "_fn"}
        toggle = await kopfs.make_toggle(name="t")
        assert {"_condition", "_state", "_name"} <= set(vars(toggle))
        assert toggle._condition is kopfs._condition

    asyncio.run(shape())
    assert _parameters(aiotoggles.Toggle.__init__) == [
        ("self", POSITIONAL, EMPTY), ("_Toggle__state", POSITIONAL, False), ("name", KEYWORD, None),
        ("condition", KEYWORD, None)]
    assert {name for name, value in vars(aiotoggles.Toggle).items() if callable(value)} == {
        "__init__", "__repr__", "__bool__", "is_on", "is_off", "turn_to", "wait_for"}


def test_kopfs_watch_stream_is_the_one_the_slim_stream_wraps() -> None:
    assert _parameters(watching.infinite_watch) == [
        ("settings", KEYWORD, EMPTY), ("resource", KEYWORD, EMPTY), ("namespace", KEYWORD, EMPTY),
        ("operator_paused", KEYWORD, None), ("_iterations", KEYWORD, None)]
    assert inspect.isasyncgenfunction(watching.infinite_watch)


@pytest.mark.parametrize("module, call", [
    (orchestration, "aiotoggles.ToggleSet(all)"),
    (running, "aiotoggles.ToggleSet(any)"),
    (queueing, "watching.infinite_watch("),
])
def test_kopf_looks_the_replaced_internals_up_when_it_calls_them(module: Any, call: str) -> None:
    """A replacement works only if kopf reads the module attribute at call time (not a name
    it imported once): these are the call sites install() relies on."""
    assert call in inspect.getsource(module)


def test_install_replaces_both_internals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aiotoggles, "ToggleSet", aiotoggles.ToggleSet)  # restored afterwards
    monkeypatch.setattr(watching, "infinite_watch", watching.infinite_watch)
    kopf_adapter.install()
    kopf_adapter.install()  # idempotent
    assert aiotoggles.ToggleSet is FastToggleSet
    assert watching.infinite_watch is kopf_adapter._slim_infinite_watch
    assert kopf_adapter._ORIGINAL is not kopf_adapter._slim_infinite_watch
