"""The cursor consumer on its own: a trivial handler (it records pages and commits through a
callback) against a real SqliteStore, as a process engine would use it, with no supervisor."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from eventhub import tasks
from eventhub.codec import parse
from eventhub.consume.consumer import Consumer, Outcome, Result, Retry
from eventhub.consume.pages import Pages
from eventhub.consume.permit import Permit
from eventhub.delivery.owners import PerOwner
from eventhub.events import NewEvent, StoredEvent
from eventhub.log.base import Hooks
from eventhub.log.sqlite import SqliteStore
from eventhub.vault import Vault
from tests.conftest import ManualClock

TID = 7  # the consumer's trigger: events of type "match"; every other event is another's


def event(n: int, type_: str = "match") -> NewEvent:
    return parse.parse_binary(
        [
            (b"ce-specversion", b"1.0"),
            (b"ce-id", str(n).encode()),
            (b"ce-source", b"/s"),
            (b"ce-type", type_.encode()),
        ],
        "application/json",
        b"{}",
    )


class Engine:
    """What a process engine would be: a cursor of its own, a handler, a commit callback."""

    def __init__(self, store: SqliteStore, clock: ManualClock, page_size: int) -> None:
        self.clock = clock
        self.cursor = 0
        self.pages: list[list[int]] = []  # offsets of every page handed to ``handle``
        self.commits: list[int] = []  # the cursor after each commit
        self.answers: list[Result | Exception] = []  # scripted; COMMIT once it runs out
        self.gate: asyncio.Event | None = None  # when set, ``handle`` waits for it
        self.handed = asyncio.Event()
        self.semaphore = asyncio.Semaphore(2)
        self.shares = PerOwner(2)
        self.trigger_pages = Pages(store)
        self.consumer = Consumer(
            TID,
            self.trigger_pages,
            Permit(self.semaphore, self.shares, "owner"),
            clock,
            position=lambda: self.cursor,
            handle=self.handle,
            commit=self.commit,
            page_size=page_size,
            read_ahead=5,
        )

    async def handle(self, page: Sequence[StoredEvent]) -> Result:
        self.pages.append([e.offset for e in page])
        self.handed.set()
        if self.gate is not None:
            await self.gate.wait()
        answer = self.answers.pop(0) if self.answers else Outcome.COMMIT
        if isinstance(answer, Exception):
            raise answer
        return answer

    def commit(self, page: Sequence[StoredEvent]) -> None:
        self.cursor = page[-1].offset
        self.commits.append(self.cursor)

    def on_commit(self, tids: set[int]) -> None:
        """The hub's on-commit, for this one consumer."""
        self.trigger_pages.appended(tids)
        if TID in tids:
            self.consumer.wake()

    def permits_free(self) -> bool:
        return not self.semaphore.locked() and self.semaphore._value == 2 and not len(self.shares)


class Relay:
    """The store's on-commit hook, bound late: the store is built before the engine that
    listens (as the hub's hooks call its parts through the hub)."""

    def __init__(self) -> None:
        self.to: Callable[[set[int]], None] | None = None

    def __call__(self, tids: set[int]) -> None:
        if self.to is not None:
            self.to(tids)


@pytest.fixture
def relay() -> Relay:
    return Relay()


@pytest.fixture
async def store(tmp_path: Path, relay: Relay) -> AsyncIterator[SqliteStore]:
    hooks = Hooks(
        matcher=lambda attributes: [TID] if attributes["type"] == "match" else [TID + 1],
        on_commit=relay,
    )
    s = SqliteStore(tmp_path / "log.db", ManualClock(), vault=Vault(b"k" * 32), hooks=hooks)
    await s.open()
    yield s
    await s.close()


def engine_on(store: SqliteStore, relay: Relay, page_size: int = 1) -> Engine:
    engine = Engine(store, ManualClock(), page_size)
    relay.to = engine.on_commit
    return engine


def count_reads(store: SqliteStore) -> list[int]:
    """Instruments the store's trigger reads (the real method still answers)."""
    reads = [0]
    real: Callable[..., Any] = store.read_trigger_after

    async def read(tid: int, offset: int, limit: int) -> list[StoredEvent]:
        reads[0] += 1
        result: list[StoredEvent] = await real(tid, offset, limit)
        return result

    store.read_trigger_after = read  # type: ignore[method-assign]
    return reads


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_a_commit_of_the_trigger_wakes_it_and_nothing_else_does(
    store: SqliteStore, relay: Relay
) -> None:
    engine = engine_on(store, relay)
    reads = count_reads(store)
    run = asyncio.create_task(engine.consumer.run())
    try:
        await until(lambda: reads[0] == 1)  # found nothing: now it waits
        await store.append([event(1, "other")])  # another trigger's commit
        await asyncio.sleep(0.2)  # ample for a poll or a wrong wake-up to read again
        assert reads[0] == 1 and engine.pages == [] and engine.permits_free()
        await store.append([event(2)])
        await until(lambda: engine.commits == [2])
        assert engine.pages == [[2]]
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)


async def test_pages_come_in_offset_order_across_page_and_read_boundaries(
    store: SqliteStore, relay: Relay
) -> None:
    # 13 events of the trigger among others': pages of 3 from reads of 5.
    await store.append([event(n, "match" if n % 4 else "other") for n in range(1, 18)])
    mine = [e.offset for e in await store.read_trigger_after(TID, 0, 100)]
    assert len(mine) == 13
    engine = engine_on(store, relay, page_size=3)
    run = asyncio.create_task(engine.consumer.run())
    try:
        await until(lambda: engine.cursor == mine[-1])
        assert [o for page in engine.pages for o in page] == mine
        assert [len(p) for p in engine.pages] == [3, 2, 3, 2, 3]  # a read of 5: 3 then 2
        assert engine.commits == [page[-1] for page in engine.pages]
        await store.append([event(100)])  # and on, after a wake-up
        await until(lambda: len(engine.commits) == 6)
        assert engine.pages[-1] == [mine[-1] + 1]
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)


async def test_the_cursor_moves_only_on_a_commit(store: SqliteStore, relay: Relay) -> None:
    await store.append([event(n) for n in (1, 2, 3)])
    engine = engine_on(store, relay)
    clock = engine.clock
    engine.answers = [Retry(30.0), Outcome.COMMIT, Outcome.MOVED, Outcome.STOP]
    run = asyncio.create_task(engine.consumer.run())
    # A retry: the page is not committed, and the backoff holds no permit.
    await until(lambda: clock.sleepers() == 1)
    assert engine.pages == [[1]] and engine.cursor == 0 and engine.permits_free()
    clock.advance(30.0)
    # The same page again, committed; the next one MOVED without a commit (the handler did
    # not move it: the consumer must not either, and reads again from the cursor); then STOP
    # ends the run with the cursor where it was.
    await asyncio.wait_for(run, 5)
    assert engine.pages == [[1], [1], [2], [2]]
    assert engine.cursor == 1 and engine.commits == [1] and engine.permits_free()


async def test_a_crash_in_the_handler_restarts_from_the_in_memory_cursor(
    store: SqliteStore, relay: Relay
) -> None:
    await store.append([event(n) for n in range(1, 7)])
    engine = engine_on(store, relay, page_size=2)
    engine.answers = [Outcome.COMMIT, RuntimeError("handler bug")]
    crashes: list[str] = []
    owner = tasks.Tasks()
    watched = owner.watch(
        "consumer", engine.consumer.run, lambda exc, delay: crashes.append(tasks.describe(exc))
    )
    try:
        await until(lambda: engine.cursor == 6)
        assert crashes == ["RuntimeError: handler bug"]
        # The crashed page [3, 4] is handed again, nothing before it, nothing lost.
        assert engine.pages == [[1, 2], [3, 4], [3, 4], [5, 6]]
        assert engine.commits == [2, 4, 6] and watched.crashes == 1
    finally:
        await watched.stop()
    assert engine.permits_free()


async def test_a_stop_during_a_page_leaves_the_cursor_and_releases_the_permit(
    store: SqliteStore, relay: Relay
) -> None:
    await store.append([event(n) for n in (1, 2)])
    engine = engine_on(store, relay)
    engine.gate = asyncio.Event()  # the handler never finishes its page
    owner = tasks.Tasks()
    watched = owner.watch("consumer", engine.consumer.run)
    await asyncio.wait_for(engine.handed.wait(), 5)
    assert not engine.permits_free()  # a page in hand holds its permit
    await watched.stop()
    assert engine.cursor == 0 and engine.commits == [] and engine.permits_free()
    # A new run hands the same page again: at least once.
    engine.gate = None
    again = owner.watch("consumer", engine.consumer.run)
    try:
        await until(lambda: engine.cursor == 2)
        assert engine.pages == [[1], [1], [2]]
    finally:
        await again.stop()
