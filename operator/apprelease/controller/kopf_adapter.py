"""Every kopf internal this operator relies on, in one place, for one kopf version range.

kopf's public API does not offer two things the operator needs at scale, so two of its
internals are replaced before ``kopf.run`` (``install()``):

1. ``kopf._cogs.aiokits.aiotoggles.ToggleSet``: a set with O(1) work per change (below).
2. ``kopf._cogs.clients.watching.infinite_watch``: the watch stream, slimmed as it is read.

Internals change without notice between releases, so ``install()`` refuses a kopf outside
``KOPF_REQUIREMENT`` (the same range pyproject.toml pins), and tests/unit/test_kopf_adapter.py
checks the shape of each replaced internal (classes, signatures, the call sites that must
look them up at call time): a kopf upgrade fails there, loudly, not in production.

The ToggleSet (fast restarts with many watched objects): kopf holds every handler back until each index is fully listed. During the initial LIST it
adds one toggle per object to a single ToggleSet (``operator_indexed``), and each object's
worker then waits on that set. In kopf 1.45 every add/drop wakes every waiter and each of
them re-evaluates ``all(...)`` over every toggle: O(objects) wake-ups, each O(objects), for
each of O(objects) changes. Measured: a restart with 1,000 AppReleases (~8,000 watched
objects) spent about a minute there; with 10,000 it would take hours.

This set counts its "on" toggles, so its state costs O(1), and a waiter sleeps on a future
that is resolved only when the set's state flips to what it waits for. Behaviour is the
same for the two functions kopf uses (``all`` and ``any``); any other function falls back
to kopf's own evaluation.

Slim events (managedFields dropped from every object kopf receives, before it holds on to
it): our indices keep slimmed copies only, but kopf keeps each raw object while it is being
processed, and on startup that is all of them at once: every object's worker waits until
every index is listed, each holding its full body. managedFields are a third or more of a
Deployment's JSON and nobody here reads them (kopf neither), so they are removed from the
watch stream as it is read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, MutableMapping
from importlib import metadata
from typing import Any

from kopf._cogs.aiokits import aiotoggles
from kopf._cogs.clients import watching

from ..k8s.observe import LAST_APPLIED

# The kopf releases whose internals this module was written against (pyproject.toml pins
# the same range; a test keeps the two equal).
KOPF_REQUIREMENT = "kopf>=1.45.2,<1.46"
KOPF_LOWEST = (1, 45, 2)
KOPF_BELOW = (1, 46)


class UnsupportedKopf(RuntimeError):
    """The installed kopf is not one whose internals this module replaces safely."""


def kopf_version() -> tuple[int, ...]:
    return tuple(int(part) for part in metadata.version("kopf").split(".")[:3] if part.isdigit())


def check_kopf_version(version: tuple[int, ...] | None = None) -> None:
    version = version if version is not None else kopf_version()
    if not KOPF_LOWEST <= version < KOPF_BELOW:
        raise UnsupportedKopf(
            f"kopf {'.'.join(map(str, version))} is installed, but apprelease.controller.kopf_adapter "
            f"replaces internals of {KOPF_REQUIREMENT} only: check them (tests/unit/test_kopf_adapter.py) "
            "before widening the range")


def install() -> None:
    """Replace both internals (call before kopf.run; idempotent). Refuses another kopf."""
    check_kopf_version()
    aiotoggles.ToggleSet = FastToggleSet  # type: ignore[misc]
    watching.infinite_watch = _slim_infinite_watch


# The fast ToggleSet ----------------------------------------------------------------------


class CountedToggle(aiotoggles.Toggle):
    """A toggle that tells its set when it flips."""

    def __init__(self, state: bool, *, name: str | None, owner: FastToggleSet) -> None:
        super().__init__(state, name=name, condition=owner._condition)
        self._owner = owner

    async def turn_to(self, __state: bool) -> None:
        async with self._condition:
            changed = self._state != bool(__state)
            self._state = bool(__state)
            if changed:
                self._owner._toggle_flipped(self)
            self._condition.notify_all()


class FastToggleSet(aiotoggles.ToggleSet):
    def __init__(self, fn: Callable[[Iterable[bool]], bool]) -> None:
        super().__init__(fn)
        self._on_count = 0
        self._waiters: dict[bool, list[asyncio.Future[None]]] = {True: [], False: []}

    def is_on(self) -> bool:
        if self._fn is all:
            return self._on_count == len(self._toggles)
        if self._fn is any:
            return self._on_count > 0
        return super().is_on()

    async def wait_for(self, __state: bool) -> None:
        wanted = bool(__state)
        while self.is_on() != wanted:
            future = asyncio.get_running_loop().create_future()
            self._waiters[wanted].append(future)
            await future

    async def make_toggle(self, __val: bool = False, *, name: str | None = None) -> aiotoggles.Toggle:
        toggle = CountedToggle(bool(__val), name=name, owner=self)
        async with self._condition:
            self._toggles.add(toggle)
            self._on_count += toggle.is_on()
            self._changed()
        return toggle

    async def drop_toggle(self, toggle: aiotoggles.Toggle) -> None:
        await self.drop_toggles([toggle])

    async def drop_toggles(self, toggles: Iterable[aiotoggles.Toggle]) -> None:
        async with self._condition:
            for toggle in toggles:
                if toggle in self._toggles:
                    self._toggles.discard(toggle)
                    self._on_count -= toggle.is_on()
            self._changed()

    def _toggle_flipped(self, toggle: aiotoggles.Toggle) -> None:
        if toggle in self._toggles:
            self._on_count += 1 if toggle.is_on() else -1
            self._changed()

    def _changed(self) -> None:
        """Wake only the waiters whose state has been reached (and kopf's own condition)."""
        state = self.is_on()
        waiters, self._waiters[state] = self._waiters[state], []
        for future in waiters:
            if not future.done():
                future.set_result(None)
        self._condition.notify_all()


# Slim watch events -----------------------------------------------------------------------

_ORIGINAL = watching.infinite_watch


def strip_heavy_metadata(obj: MutableMapping[str, Any]) -> None:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return
    meta.pop("managedFields", None)
    annotations = meta.get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(LAST_APPLIED, None)


async def _slim_infinite_watch(**kwargs: Any) -> AsyncIterator[Any]:
    async for raw_event in _ORIGINAL(**kwargs):
        obj: Any = raw_event.get("object") if isinstance(raw_event, dict) else None
        if isinstance(obj, dict):
            strip_heavy_metadata(obj)
        yield raw_event
