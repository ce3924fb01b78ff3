"""The SQLite store: offsets, identity and revisions, reopening, migrations."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventhub.codec import parse
from eventhub.events import DataKind, NewEvent
from eventhub.log.sqlite import SqliteStore, migrate, records
from eventhub.models import Attempt, Status, Subscription
from eventhub.vault import Vault
from tests.conftest import ManualClock

VAULT = Vault(b"k" * 32)  # one key for every store here, so a reopen opens its secrets


def event(id_: str, data: bytes = b'{"n": 1}', source: str = "/s") -> NewEvent:
    return parse.parse_binary(
        [
            (b"ce-specversion", b"1.0"),
            (b"ce-id", id_.encode()),
            (b"ce-source", source.encode()),
            (b"ce-type", b"t"),
        ],
        "application/json",
        data,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "log.db", ManualClock(), vault=VAULT)
    await s.open()
    yield s
    await s.close()


async def test_offsets_increase_and_reads_page(store: SqliteStore) -> None:
    appended = await store.append([event(str(i)) for i in range(5)])
    assert [a.offset for a in appended] == [1, 2, 3, 4, 5]
    page = await store.read_after(2, 2)
    assert [e.offset for e in page] == [3, 4]
    assert await store.head() == 5


async def test_identical_resend_is_a_duplicate_and_changed_content_a_revision(
    store: SqliteStore,
) -> None:
    (first,) = await store.append([event("a")])
    (again,) = await store.append([event("a")])
    assert again.duplicate and again.offset == first.offset
    (changed,) = await store.append([event("a", b'{"n": 2}')])
    assert not changed.duplicate and changed.revision == 2 and changed.offset > first.offset
    latest = await store.get_latest("/s", "a")
    assert latest is not None and latest.data == b'{"n": 2}' and latest.revision == 2
    assert len(await store.read_after(0, 100)) == 2


async def test_same_identity_twice_in_one_batch(store: SqliteStore) -> None:
    out = await store.append([event("x"), event("x"), event("x", b"[1]")])
    assert [(a.revision, a.duplicate) for a in out] == [(1, False), (1, True), (2, False)]


async def test_data_bytes_and_kind_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    s = SqliteStore(path, ManualClock(), vault=VAULT)
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
    s = SqliteStore(path, ManualClock(), vault=VAULT)
    await s.open()
    (stored,) = await s.read_after(0, 10)
    await s.close()
    assert stored.data == b"\x00\xff\x10" and stored.kind is DataKind.BINARY


def test_migrations_run_once_and_record_the_version(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    assert migrate(conn) >= 1
    version = migrate(conn)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == version
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"events", "event_ids", "api_keys", "sources"} <= tables


def subscription(sub_id: str) -> Subscription:
    return Subscription(
        id=sub_id,
        owner="k",
        km="km",
        trigger="t",
        tid=1,
        name=sub_id,
        uri="http://127.0.0.1:9/hook",
        headers={},
        skip_errors=False,
        format="envelope",
        batch_size=1,
        max_retries=0,
        secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        status=Status.ACTIVE,
        cursor=0,
        created_at="2026-01-01T00:00:00Z",
        updated_at="2026-01-01T00:00:00Z",
    )


async def test_delivery_records_share_one_write_and_keep_every_attempt(
    store: SqliteStore,
) -> None:
    subs = [subscription(f"s{i}") for i in range(3)]
    for sub in subs:
        await store.save_subscription(sub)
    for n in range(1, 131):  # past the attempts kept, so pruning runs inside a batch
        for sub in subs:
            sub.cursor = sub.delivered = sub.attempts = n
            store.record_delivery(sub, Attempt(n, "t", n, n, 200, 1.0, None, f"msg_{n}"))
        if n % 7 == 0:
            await store.save_delivery(subs[0], None)  # an awaited write between batches
    await store.save_delivery(subs[0], None)  # flushes what is queued
    for sub in await store.load_subscriptions():
        assert (sub.cursor, sub.delivered, sub.attempts) == (130, 130, 130)
    for sub in subs:
        attempts = await store.list_attempts(sub.id, 1000)
        assert [a.n for a in attempts][:3] == [130, 129, 128]
        assert len(attempts) >= records.ATTEMPTS_KEPT and len(attempts) < 130
        assert (attempts[0].first_offset, attempts[0].last_offset) == (130, 130)
