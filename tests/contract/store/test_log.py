"""The event log: offsets, identity and revisions, reads, a reopen."""

from __future__ import annotations

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
    assert len(await store.read_after(0, 100)) == 2


async def test_same_identity_twice_in_one_batch(store: Store) -> None:
    out = await store.append([event("x"), event("x"), event("x", b"[1]")])
    assert [(a.revision, a.duplicate) for a in out] == [(1, False), (1, True), (2, False)]


async def test_data_bytes_and_kind_survive_a_reopen(backend: Backend) -> None:
    database = backend.database()
    s = backend.store(database, ManualClock())
    await s.open()
    await s.append(
        [
            NewEvent(
                {"specversion": "1.0", "id": "b", "source": "s", "type": "t"},
                b"\x00\xff\x10",
                DataKind.BINARY,
                b"d" * 16,
            )
        ]
    )
    await s.close()
    s = backend.store(database, ManualClock())
    await s.open()
    try:
        (stored,) = await s.read_after(0, 10)
        assert await s.head() == 1 and await s.first_offset() == 1
    finally:
        await s.close()
    assert stored.data == b"\x00\xff\x10" and stored.kind is DataKind.BINARY
