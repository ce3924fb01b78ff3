"""A large flush of appends runs its row statements in the commit thread, right before its
COMMIT (``log/sqlite/append.py`` ``Deferred``), while the loop goes on: what it promises is
what a flush on the loop promises. Offsets gap-free and in submission order, duplicates and
revisions as before, the trigger index written, the hooks on the loop after the commit, and a
full disk met in the thread rolled back with its offsets handed out again.

Which thread ran a statement is read from SQLite's trace callback on the writer connection:
each test first checks that the statements it means did run in the commit thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import pytest

from eventhub import errors
from eventhub.events import NewEvent
from eventhub.log.base import Hooks
from eventhub.log.sqlite import SqliteStore
from eventhub.log.sqlite.store import DEFER_EVENTS
from tests.conftest import ManualClock
from tests.contract.store.conftest import VAULT
from tests.contract.store.samples import DATA, STAMPS, event, traced

BATCH = 100
BATCHES = -(-DEFER_EVENTS // BATCH) + 2  # enough batches for one flush to be deferred


class Seen:
    """What the hooks and the writer connection's trace saw, and on which thread."""

    def __init__(self) -> None:
        self.loop_thread = threading.get_ident()
        self.inserts: list[int] = []  # the thread of each INSERT INTO events (each row)
        self.appended: list[tuple[int, int]] = []  # (head, thread) of each on_appended
        self.commits: list[tuple[set[int], int]] = []  # (triggers, thread) of each on_commit
        self.tid = 0  # the trigger every event of source /m fires

    def trace(self, statement: str) -> None:
        if statement.startswith("INSERT INTO events "):
            self.inserts.append(threading.get_ident())

    def match(self, attributes: dict[str, Any]) -> list[int]:
        assert threading.get_ident() == self.loop_thread, "the matcher runs on the loop"
        return [self.tid] if attributes["source"] == "/m" else []

    def hooks(self) -> Hooks:
        return Hooks(
            matcher=self.match,
            on_appended=lambda head: self.appended.append((head, threading.get_ident())),
            on_commit=lambda tids: self.commits.append((set(tids), threading.get_ident())),
        )


@asynccontextmanager
async def opened(
    path: Path, seen: Seen, clock: ManualClock | None = None
) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(path, clock or ManualClock(), vault=VAULT, hooks=seen.hooks())
    await store.open()
    try:
        seen.tid = await store.ensure_trigger("m", "t")
        assert store._conn is not None
        store._conn.set_trace_callback(seen.trace)
        yield store
    finally:
        await store.close()


def _batch(n: int, source: str = "/m") -> list[NewEvent]:
    return [event(f"e-{n}-{i}", b'{"n": %d}' % i, source=source) for i in range(BATCH)]


async def test_a_deferred_flush_keeps_offsets_duplicates_index_and_hooks(tmp_path: Path) -> None:
    seen = Seen()
    async with opened(tmp_path / "log.db", seen) as store:
        batches = [_batch(n, "/m" if n % 2 else "/other") for n in range(BATCHES)]
        batches[1] = batches[1][:50] + batches[0][:50]  # half of it already in batch 0: dups
        batches[2][0] = event("e-0-0", b'{"n": "changed"}', source="/other")  # a revision
        receipts = await asyncio.gather(*(store.append(b) for b in batches))

        assert seen.inserts and set(seen.inserts) == {seen.inserts[0]}
        assert seen.inserts[0] != seen.loop_thread, "the rows must be written in the thread"
        # Offsets: gap-free from 1, in submission order, duplicates pointing at the first.
        new = [r.offset for rs in receipts for r in rs if not r.duplicate]
        assert new == list(range(1, len(new) + 1))
        assert [r.duplicate for r in receipts[1]] == [False] * 50 + [True] * 50
        assert [r.offset for r in receipts[1][50:]] == [r.offset for r in receipts[0][:50]]
        assert (receipts[2][0].revision, receipts[2][0].duplicate) == (2, False)
        # The hooks: on the loop, after the commit, the head and every trigger fired.
        assert seen.appended[-1] == (new[-1], seen.loop_thread)
        assert all(thread == seen.loop_thread for _, thread in seen.commits)
        assert set().union(*(tids for tids, _ in seen.commits)) == {seen.tid}
        # Another connection sees every row and the trigger index of the /m events.
        with sqlite3.connect(tmp_path / "log.db") as reader:
            (count,) = reader.execute("SELECT COUNT(*) FROM events").fetchone()
            (indexed,) = reader.execute(
                "SELECT COUNT(*) FROM trigger_events WHERE tid = ?", (seen.tid,)
            ).fetchone()
            (revision,) = reader.execute(
                "SELECT revision FROM event_ids WHERE source = '/other' AND id = 'e-0-0'"
            ).fetchone()
        expected_indexed = sum(
            1
            for b, rs in zip(batches, receipts, strict=True)
            for e, r in zip(b, rs, strict=True)
            if not r.duplicate and e.attributes["source"] == "/m"
        )
        assert (count, indexed, revision) == (len(new), expected_indexed, 2)


async def test_a_full_disk_met_in_the_commit_thread_rolls_back_and_gives_offsets_back(
    tmp_path: Path,
) -> None:
    seen = Seen()
    async with opened(tmp_path / "log.db", seen) as store:
        first = await store.append(_batch(-1))
        assert set(seen.inserts) == {seen.loop_thread}, "a small flush stays on the loop"
        seen.inserts.clear()
        writer = store._conn
        assert writer is not None
        (count,) = writer.execute("PRAGMA page_count").fetchone()
        writer.execute(f"PRAGMA max_page_count = {count + 2}")  # room for little more

        outcomes = await asyncio.gather(
            *(store.append(_batch(n)) for n in range(BATCHES)), return_exceptions=True
        )
        assert all(isinstance(o, errors.InsufficientStorage) for o in outcomes), outcomes
        assert seen.inserts, "the full disk must be met while writing the rows"
        assert seen.loop_thread not in seen.inserts, "and in the thread"
        assert not writer.in_transaction

        writer.execute("PRAGMA max_page_count = 1073741823")  # space returns
        again = await asyncio.gather(*(store.append(_batch(n)) for n in range(BATCHES)))
        offsets = [r.offset for rs in [first, *again] for r in rs]
        assert offsets == list(range(1, len(offsets) + 1)), "no gap, nothing half-written"
        assert not any(r.duplicate for rs in again for r in rs)
        assert seen.appended[-1][0] == offsets[-1]


@pytest.mark.parametrize("close_at_once", [True, False])
async def test_close_waits_for_a_deferred_flush_in_flight(
    tmp_path: Path, close_at_once: bool
) -> None:
    """``close`` lets a flush whose rows are being written in the thread finish: whatever
    append returned is in the database afterwards."""
    seen = Seen()
    async with opened(tmp_path / "log.db", seen) as store:
        pending = [asyncio.ensure_future(store.append(_batch(n))) for n in range(BATCHES)]
        await asyncio.sleep(0)  # queued
        if not close_at_once:
            while not seen.inserts:  # the thread has started writing the rows
                await asyncio.sleep(0.001)
    done = [p.result() for p in pending if not p.cancelled() and p.exception() is None]
    assert done, "the queued appends were flushed by close"
    with sqlite3.connect(tmp_path / "log.db") as reader:
        stored = {offset for (offset,) in reader.execute("SELECT event_offset FROM events")}
    assert {r.offset for rs in done for r in rs} <= stored


def _mixed(n: int) -> list[NewEvent]:
    """A batch of traced and untraced events over two sources, with revisions and repeats
    of earlier batches' events (so traces are left and joined across and within flushes)."""
    out = []
    for i in range(BATCH):
        key = (n * BATCH + i) % 240  # ids come back every 240 events: revisions, repeats
        trace = None if key % 3 == 0 else f"trace-{key % 7}"
        stamp = STAMPS[key % len(STAMPS)]
        data = (key + n // 3) % len(DATA)  # the same data for some repeats, not for others
        source = "/m" if key % 2 else "/other"
        out.append(traced(source, f"id-{key}", trace, stamp, data))
    return out


_TABLES = {
    "events": "event_offset",
    "event_ids": "source, id",
    "trace_members": "source, id",
    "traces": "trace_id",
    "trigger_events": "tid, event_offset",
    "event_types": "type, source, grp",
}


def _dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with closing(sqlite3.connect(path)) as conn:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
            for table, order in _TABLES.items()
        }


async def test_a_deferred_flush_writes_what_flushes_on_the_loop_write(tmp_path: Path) -> None:
    """The same batches, in the same order: once all in one deferred flush, once a batch a
    flush (each below ``DEFER_EVENTS``: on the loop). Every table the append path writes
    ends the same, receipts too."""
    batches = [_mixed(n) for n in range(BATCHES)]
    deferred, on_loop = Seen(), Seen()
    clock = ManualClock()  # one time for both: received_at is in the rows
    async with opened(tmp_path / "deferred.db", deferred, clock) as store:
        together = await asyncio.gather(*(store.append(b) for b in batches))
    async with opened(tmp_path / "loop.db", on_loop, clock) as store:
        one_by_one = [await store.append(b) for b in batches]
    assert deferred.loop_thread not in deferred.inserts
    assert set(on_loop.inserts) == {on_loop.loop_thread}
    assert together == one_by_one
    assert any(r.duplicate for rs in together for r in rs)
    assert any(r.revision > 1 for rs in together for r in rs)
    first, second = _dump(tmp_path / "deferred.db"), _dump(tmp_path / "loop.db")
    assert all(first[table] for table in _TABLES), "every table written"
    assert first == second
