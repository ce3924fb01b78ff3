"""The SQLite store holds the records of deliveries that caught up with their trigger (a
fan-out) before queuing their write; those with more to deliver are queued at once, so a
crash re-delivers only what was in flight. Nothing held is ever lost to a read or a stop."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from eventhub.log.base import Hooks
from eventhub.log.sqlite import SqliteStore
from eventhub.log.sqlite import store as sqlite_store
from eventhub.models import Attempt, Subscription
from tests.conftest import ManualClock
from tests.contract.store.conftest import VAULT
from tests.contract.store.samples import event, subscription


def _every_event_fires_trigger_1(_attributes: dict[str, Any]) -> list[int]:
    return [1]


@pytest.fixture(autouse=True)
def held_for_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    # Longer than any test: a record that is held shows up only by what releases it.
    monkeypatch.setattr(sqlite_store, "DELIVERIES_HOLD", 60.0)


def _store(path: Path) -> SqliteStore:
    hooks = Hooks(matcher=_every_event_fires_trigger_1)
    return SqliteStore(path, ManualClock(), vault=VAULT, hooks=hooks)


@pytest.fixture
async def opened(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = _store(tmp_path / "log.db")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def _delivered(sub: Subscription, offset: int) -> Attempt:
    sub.cursor = sub.latest_succeed_offset = offset
    sub.delivered += 1
    sub.attempts += 1
    return Attempt(sub.attempts, "t", offset, offset, 200, 1.0, None, f"msg_{offset}")


def _cursor_on_disk(path: Path, sub_id: str) -> int:
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT cursor FROM subscriptions WHERE id = ?", (sub_id,)).fetchone()
    return int(row[0])


async def _two_events_and_a_subscription(store: SqliteStore) -> tuple[Subscription, int, int]:
    sub = subscription("s")
    await store.save_subscription(sub)
    first, last = await store.append([event("e1"), event("e2")])
    return sub, first.offset, last.offset


async def test_a_subscription_behind_its_trigger_is_written_at_once(
    opened: SqliteStore, tmp_path: Path
) -> None:
    sub, first, _ = await _two_events_and_a_subscription(opened)
    opened.record_delivery(sub, _delivered(sub, first))  # one more to deliver: not held
    async with asyncio.timeout(5):
        while _cursor_on_disk(tmp_path / "log.db", "s") != first:
            await asyncio.sleep(0.01)


async def test_a_caught_up_subscription_is_held_and_listed_and_goes_with_the_next_write(
    opened: SqliteStore, tmp_path: Path
) -> None:
    sub, _, last = await _two_events_and_a_subscription(opened)
    opened.record_delivery(sub, _delivered(sub, last))
    async with asyncio.timeout(5):  # a read lists it: the read releases it
        assert [a.last_offset for a in await opened.list_attempts("s", 10)] == [last]
    assert _cursor_on_disk(tmp_path / "log.db", "s") == last

    other = subscription("other")
    await opened.save_subscription(other)
    opened.record_delivery(other, _delivered(other, last))
    await opened.save_delivery(sub, None)  # any write: the held record goes first
    assert _cursor_on_disk(tmp_path / "log.db", "other") == last


async def test_a_stop_writes_what_is_held(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    store = _store(path)
    await store.open()
    try:
        sub, _, last = await _two_events_and_a_subscription(store)
        store.record_delivery(sub, _delivered(sub, last))
    finally:
        await store.close()
    again = _store(path)
    await again.open()
    try:
        (loaded,) = await again.load_subscriptions()
        assert loaded.cursor == last
        assert [a.last_offset for a in await again.list_attempts("s", 10)] == [last]
    finally:
        await again.close()


async def test_a_second_delivery_of_a_held_subscription_queues_both(
    opened: SqliteStore, tmp_path: Path
) -> None:
    sub, first, last = await _two_events_and_a_subscription(opened)
    opened.record_delivery(sub, _delivered(sub, last))  # caught up: held
    opened.record_delivery(sub, _delivered(sub, last))  # again (a replay, say): queued
    async with asyncio.timeout(5):
        while _cursor_on_disk(tmp_path / "log.db", "s") != last:
            await asyncio.sleep(0.01)
    assert first < last
