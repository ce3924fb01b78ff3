"""Retention and figures: prune deletes the oldest events until one is still needed, offsets
go on past what it deleted, and the figures say who is behind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from eventhub.clock import rfc3339
from eventhub.delivery.states import Status
from eventhub.log.base import Hooks, Store
from tests.conftest import ManualClock
from tests.contract.store.conftest import Backend
from tests.contract.store.samples import event, subscription

DAY = 86400.0
# The trigger every event fires: the first the store numbers (a matcher names only those).
TID = 1


@dataclass
class Indexed:
    store: Store
    clock: ManualClock


@pytest.fixture
async def indexed(backend: Backend) -> AsyncIterator[Indexed]:
    """A store whose every event fires trigger ``TID``, on a clock the test moves."""
    clock = ManualClock()
    store = backend.store(backend.database(), clock, Hooks(matcher=lambda _attributes: [TID]))
    await store.open()
    assert await store.ensure_trigger("km", "t") == TID
    yield Indexed(store, clock)
    await store.close()


async def test_prune_deletes_the_oldest_until_a_live_subscription_needs_one(
    indexed: Indexed,
) -> None:
    store, clock = indexed.store, indexed.clock
    await store.append([event(f"old{i}") for i in range(5)])  # 1..5
    clock.advance(2 * DAY)
    await store.append([event(f"new{i}") for i in range(2)])  # 6..7
    sub = subscription("s", TID)
    sub.cursor = 2  # needs offset 3 on
    await store.save_subscription(sub)
    cutoff = rfc3339(clock.now() - DAY)
    pruned = await store.prune(cutoff, None, 100)
    assert (pruned.deleted, pruned.first_offset, pruned.held_at) == (2, 3, 3)
    first, *_ = await store.read_trigger_after(TID, 0, 10)
    assert first.offset == 3
    sub.status = Status.SUSPENDED  # needs nothing now
    await store.save_subscription(sub)
    pruned = await store.prune(cutoff, None, 2)  # a batch at a time
    assert (pruned.deleted, pruned.first_offset) == (2, 5)
    pruned = await store.prune(cutoff, None, 100)
    assert (pruned.deleted, pruned.first_offset, pruned.held_at) == (1, 6, None)
    assert await store.first_offset() == 6
    assert await store.count_between(TID, 0, 5) == 0


async def test_offsets_go_on_after_everything_was_deleted(indexed: Indexed) -> None:
    store = indexed.store
    await store.append([event("a"), event("b")])
    indexed.clock.advance(2 * DAY)
    pruned = await store.prune(None, 1, 100)  # over any size: everything may go
    assert pruned.deleted == 2
    assert await store.read_after(0, 10) == []
    assert await store.head() == 2 and await store.first_offset() == 3
    (again,) = await store.append([event("a")])  # identity went with its event
    assert (again.offset, again.revision, again.duplicate) == (3, 1, False)


async def test_figures_report_head_size_and_who_is_behind(indexed: Indexed) -> None:
    store = indexed.store
    await store.append([event(str(i)) for i in range(4)])
    found = await store.read_figures([(TID, 1), (TID, 4)])
    assert found.head == 4 and found.database_bytes > 0
    assert set(found.behind) == {(TID, 1)} and found.behind[(TID, 1)].events == 3
    assert found.behind[(TID, 1)].oldest_received_at is not None
