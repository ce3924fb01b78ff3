"""Keys and sources: what is put comes back (a source's secret opened again), revocation and
deletion say whether they found anything, and both survive a reopen."""

from __future__ import annotations

from eventhub.log.records import KeyRecord, SourceRecord
from tests.conftest import ManualClock
from tests.contract.store.conftest import Backend


async def test_keys_and_sources_round_trip_and_survive_a_reopen(backend: Backend) -> None:
    database = backend.database()
    store = backend.store(database, ManualClock())
    await store.open()
    key = KeyRecord("k1", b"h" * 32, "ci", "producer", ("/a", "/b"), "2026-01-01T00:00:00Z")
    admin = KeyRecord("k0", b"i" * 32, "root", "admin", None, "2025-12-31T00:00:00Z")
    source = SourceRecord("/a", "whsec_secret", True, "2026-01-01T00:00:00Z", 1024)
    try:
        await store.put_key(key)
        await store.put_key(admin)
        await store.put_source(source)
        await store.put_source(SourceRecord("/b", "s2", False, "2026-01-02T00:00:00Z"))
        assert await store.revoke_key("k1", "2026-02-01T00:00:00Z")
        assert not await store.revoke_key("k1", "2026-03-01T00:00:00Z")  # already revoked
        assert not await store.revoke_key("nope", "2026-03-01T00:00:00Z")
        assert await store.delete_source("/b")
        assert not await store.delete_source("/b")
    finally:
        await store.close()
    store = backend.store(database, ManualClock())
    await store.open()
    try:
        keys = await store.list_keys()
        sources = await store.list_sources()
    finally:
        await store.close()
    revoked = KeyRecord(
        "k1",
        b"h" * 32,
        "ci",
        "producer",
        ("/a", "/b"),
        "2026-01-01T00:00:00Z",
        "2026-02-01T00:00:00Z",
    )
    assert keys == [admin, revoked]  # by creation time
    assert sources == [source]
