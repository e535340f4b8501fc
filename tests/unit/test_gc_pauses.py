"""Survivors of a full collection are frozen; a periodic pass looks at everything again."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from apprelease.controller.gc_pauses import UNFREEZE_SECONDS, PauseKeeper


@pytest.fixture
def keeper() -> Iterator[tuple[PauseKeeper, list[float]]]:
    now = [1000.0]
    keeper = PauseKeeper(clock=lambda: now[0])
    gc.callbacks.append(keeper)
    # Only the collections the test makes: an automatic one (any thread allocating, e.g. a
    # server thread an earlier test left winding down) would freeze at the wrong moment.
    gc.disable()
    try:
        yield keeper, now
    finally:
        gc.enable()
        gc.callbacks.remove(keeper)
        gc.unfreeze()


def test_full_collection_freezes_survivors_and_young_ones_do_not(keeper) -> None:
    gc.unfreeze()
    cached = [{"n": i} for i in range(1000)]  # a cache: survives every collection
    gc.collect(1)
    assert gc.get_freeze_count() == 0
    gc.collect(2)
    frozen = gc.get_freeze_count()
    assert frozen >= len(cached)
    del cached  # reference counting still frees frozen objects
    assert gc.get_freeze_count() < frozen


def test_every_unfreeze_interval_one_full_collection_sees_everything(keeper) -> None:
    _, now = keeper
    gc.collect()
    assert gc.get_freeze_count() > 0
    now[0] += UNFREEZE_SECONDS
    gc.collect()
    assert gc.get_freeze_count() == 0  # unfrozen: this collection's successor walks all
    gc.collect()
    assert gc.get_freeze_count() > 0  # and the interval starts again
