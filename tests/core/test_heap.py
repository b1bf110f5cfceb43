"""The daemon's heap keeper: full collections on its schedule, nothing kept longer than that."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from watchdog.heap import HeapKeeper


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the cyclic collector frees it


@pytest.fixture
def keeper() -> Iterator[HeapKeeper]:
    before = gc.get_threshold()
    k = HeapKeeper(full_every=3)
    try:
        yield k
    finally:
        k.release()
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == 0


def test_it_collects_after_the_first_tick_and_then_every_nth(keeper: HeapKeeper) -> None:
    counts = []
    for _ in range(7):
        keeper.after_tick()
        counts.append(keeper.collections)
    assert counts == [1, 1, 1, 2, 2, 2, 3]
    assert gc.get_freeze_count() > 0  # what survived is frozen: the automatic passes skip it


def test_a_cycle_dropped_while_frozen_is_freed_by_the_next_full_collection(keeper: HeapKeeper) -> None:
    held = [_Node()]
    gone = weakref.ref(held[0])
    keeper.after_tick()  # the node is alive: it survives the collection and is frozen
    held.clear()  # now it is garbage, but only a cycle holds it
    gc.collect()
    assert gone() is not None  # frozen: no collection sees it …
    keeper.after_tick()
    keeper.after_tick()
    assert gone() is not None
    keeper.after_tick()  # … until the keeper's next full collection, which unfreezes first
    assert gone() is None


def test_the_oldest_generation_is_left_to_the_keeper_and_handed_back(keeper: HeapKeeper) -> None:
    own = gc.get_threshold()
    keeper.after_tick()
    assert gc.get_threshold()[:2] == own[:2]  # the young generations keep their schedule
    assert gc.get_threshold()[2] > 10**6
    keeper.release()
    assert gc.get_threshold() == own
    assert gc.get_freeze_count() == 0


def test_a_keeper_needs_a_positive_interval() -> None:
    with pytest.raises(ValueError, match="full_every"):
        HeapKeeper(full_every=0)
