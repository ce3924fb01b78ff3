"""The event log: offsets, identity and revisions, reads, event classes, a reopen."""

from __future__ import annotations

import asyncio

from eventhub.events import DataKind, NewEvent
from eventhub.log.base import Store
from tests.conftest import ManualClock
from tests.contract.store.conftest import Backend
from tests.contract.store.samples import event


async def test_offsets_increase_and_reads_page(store: Store) -> None:
    appended = await store.append([event(str(i)) for i in range(5)])
    assert [a.offset for a in appended] == [1, 2, 3, 4, 5]
    page = await store.read_after(2, 2)
    assert [e.offset for e in page] == [3, 4]
    assert await store.head() == 5
    found = await store.read_event(4)
    assert found is not None and found.id == "3"
    assert await store.read_event(6) is None
    assert await store.append([]) == []


async def test_identical_resend_is_a_duplicate_and_changed_content_a_revision(
    store: Store,
) -> None:
    (first,) = await store.append([event("a")])
    (again,) = await store.append([event("a")])
    assert again.duplicate and again.offset == first.offset
    (changed,) = await store.append([event("a", b'{"n": 2}')])
    assert not changed.duplicate and changed.revision == 2 and changed.offset > first.offset
    latest = await store.get_latest("/s", "a")
    assert latest is not None and latest.data == b'{"n": 2}' and latest.revision == 2
    assert await store.get_latest("/s", "nope") is None
    assert len(await store.read_after(0, 100)) == 2


async def test_same_identity_twice_in_one_batch(store: Store) -> None:
    out = await store.append([event("x"), event("x"), event("x", b"[1]")])
    assert [(a.revision, a.duplicate) for a in out] == [(1, False), (1, True), (2, False)]


async def test_concurrent_appends_share_commits_and_keep_their_own_results(
    store: Store,
) -> None:
    results = await asyncio.gather(*(store.append([event(f"c{i}")]) for i in range(50)))
    offsets = sorted(r[0].offset for r in results)
    assert offsets == list(range(1, 51))
    for i, (appended,) in enumerate(results):
        stored = await store.read_event(appended.offset)
        assert stored is not None and stored.id == f"c{i}"


async def test_event_types_count_classes(backend: Backend) -> None:
    clock = ManualClock()
    store = backend.store(backend.database(), clock)
    await store.open()
    try:
        await store.append([event("1", type_="a"), event("2", type_="a"), event("3", type_="b")])
        clock.advance(5)
        await store.append([event("4", type_="a")])
        found = await store.event_types()
    finally:
        await store.close()
    assert [(t["type"], t["count"], t["group"]) for t in found] == [("a", 3, None), ("b", 1, None)]
    assert found[0]["lastSeen"] > found[0]["firstSeen"]


async def test_a_small_write_commits(store: Store) -> None:
    await store.check_writable()


async def test_data_bytes_and_kind_survive_a_reopen(backend: Backend) -> None:
    database = backend.database()
    s = backend.store(database, ManualClock())
    await s.open()
    attributes = {"specversion": "1.0", "id": "b", "source": "s", "type": "t"}
    await s.append([NewEvent(attributes, b"\x00\xff\x10", DataKind.BINARY, b"d" * 16)])
    await s.close()
    s = backend.store(database, ManualClock())
    await s.open()
    try:
        (stored,) = await s.read_after(0, 10)
        assert await s.head() == 1 and await s.first_offset() == 1
        (next_one,) = await s.append([event("after-reopen")])
    finally:
        await s.close()
    assert stored.data == b"\x00\xff\x10" and stored.kind is DataKind.BINARY
    assert stored.attributes == attributes
    assert next_one.offset == 2
