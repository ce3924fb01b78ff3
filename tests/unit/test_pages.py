"""The trigger pages that supervisors of one trigger share."""

from __future__ import annotations

import asyncio
from typing import cast

from eventhub.consume.pages import Pages
from eventhub.events import DataKind, StoredEvent
from eventhub.log.base import TriggerIndex


class FakeLog:
    """Trigger -> offsets, and a count of the reads that reached it."""

    def __init__(self) -> None:
        self.offsets: dict[int, list[int]] = {}
        self.reads = 0
        self.gate: asyncio.Event | None = None  # when set, a read waits for it

    def append(self, tid: int, offset: int) -> None:
        self.offsets.setdefault(tid, []).append(offset)

    async def read_trigger_after(self, tid: int, offset: int, limit: int) -> list[StoredEvent]:
        self.reads += 1
        found = [o for o in self.offsets.get(tid, []) if o > offset][:limit]
        if self.gate is not None:
            await self.gate.wait()
        return [StoredEvent(o, 1, {"id": str(o)}, None, DataKind.NONE, "t") for o in found]


def pages_of(log: FakeLog, max_events: int = 4096) -> Pages:
    return Pages(cast(TriggerIndex, log), max_events)


def offsets(page: object) -> list[int]:
    return [e.offset for e in cast(list[StoredEvent], page)]


async def test_readers_of_the_same_page_share_one_read() -> None:
    log = FakeLog()
    log.append(1, 5)
    pages = pages_of(log)
    results = [await pages.read(1, 0, 10) for _ in range(1000)]
    assert log.reads == 1 and all(offsets(r) == [5] for r in results)
    assert offsets(await pages.read(1, 0, 1)) == [5] and log.reads == 2  # another size
    assert offsets(await pages.read(2, 0, 10)) == [] and log.reads == 3  # another trigger


async def test_an_append_to_the_trigger_drops_its_pages_only() -> None:
    log = FakeLog()
    pages = pages_of(log)
    assert offsets(await pages.read(1, 0, 10)) == []
    assert offsets(await pages.read(2, 0, 10)) == []
    log.append(1, 7)
    pages.appended({1})
    assert offsets(await pages.read(1, 0, 10)) == [7]
    await pages.read(2, 0, 10)
    assert log.reads == 3


async def test_a_read_overtaken_by_a_commit_is_not_kept() -> None:
    log = FakeLog()
    log.gate = asyncio.Event()
    pages = pages_of(log)
    slow = asyncio.create_task(pages.read(1, 0, 10))  # reads before the append
    await asyncio.sleep(0)
    log.append(1, 3)
    pages.appended({1})
    log.gate.set()
    assert offsets(await slow) == []  # what it read, for its own caller
    assert offsets(await pages.read(1, 0, 10)) == [3]  # not served from the stale read


async def test_the_cache_stays_within_its_bound() -> None:
    log = FakeLog()
    for offset in range(1, 101):
        log.append(1, offset)
    pages = pages_of(log, max_events=40)
    for after in range(0, 100, 5):
        await pages.read(1, after, 5)
    assert pages.held <= 40
    await pages.read(1, 0, 30)  # more than a quarter of the bound: read, not kept
    assert pages.held <= 40
    pages.appended({1})
    assert pages.held == 0
