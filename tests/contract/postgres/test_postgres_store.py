"""What only PostgreSQL has, or only several processes on one database can show (the store's
contract, for both backends, is ``tests/contract/store``): migrations racing at start, two
stores appending at once get gap-free, strictly increasing offsets and wake each other by
NOTIFY, a reader paging by offset never skips a late commit, secrets sealed at rest, a start
with another key refused, backups by ``pg_dump``, and wake-ups after a lost LISTEN
connection."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest

from eventhub import errors
from eventhub.codec import parse
from eventhub.errors import SnapshotUnsupported
from eventhub.log.base import Hooks
from eventhub.log.postgres import PostgresStore, schema
from eventhub.log.store import SourceRecord, Store
from eventhub.vault import Vault
from tests.conftest import ManualClock
from tests.contract.store.conftest import VAULT
from tests.contract.store.samples import event, subscription


async def until(check: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


class Wiring:
    """Hooks a test sets after the store is built (a store takes its hooks at construction):
    each forwards to the attribute of the same name, when set."""

    def __init__(self) -> None:
        self.matcher: Callable[[dict[str, object]], list[int]] | None = None
        self.on_commit: Callable[[set[int]], None] | None = None

    def hooks(self) -> Hooks:
        return Hooks(
            matcher=lambda attributes: self.matcher(attributes) if self.matcher else [],
            on_commit=lambda tids: self.on_commit(tids) if self.on_commit else None,
        )


@pytest.fixture
def wiring() -> Wiring:
    return Wiring()


@pytest.fixture
async def store(pg_dsn: str, wiring: Wiring) -> AsyncIterator[PostgresStore]:
    s = PostgresStore(pg_dsn, ManualClock(), vault=VAULT, hooks=wiring.hooks())
    await s.open()
    yield s
    await s.close()


# -- migrations ----------------------------------------------------------------------------------


async def test_migrations_run_once_and_record_the_version(pg_dsn: str) -> None:
    stores = [PostgresStore(pg_dsn, ManualClock(), vault=VAULT) for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))  # three processes starting at once
    for s in stores:
        await s.close()
    conn = await asyncpg.connect(pg_dsn)
    try:
        versions = [r[0] for r in await conn.fetch("SELECT version FROM schema_version")]
        tables = {
            r[0]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
    finally:
        await conn.close()
    assert versions == [n for n, _ in schema._migrations()]
    assert {"events", "event_ids", "api_keys", "sources", "trigger_events", "log_head"} <= tables


# -- several processes on one database -----------------------------------------------------------


async def test_two_processes_appending_at_once_get_gap_free_offsets_and_wake_each_other(
    pg_dsn: str,
) -> None:
    wirings = Wiring(), Wiring()
    one = PostgresStore(pg_dsn, ManualClock(), vault=VAULT, hooks=wirings[0].hooks())
    two = PostgresStore(pg_dsn, ManualClock(), vault=VAULT, hooks=wirings[1].hooks())
    await one.open()
    await two.open()
    try:
        tid = await one.ensure_trigger("km", "all")
        for w in wirings:
            w.matcher = lambda _attributes: [tid]
        heard_by_two: list[set[int]] = []
        wirings[1].on_commit = heard_by_two.append
        # Two processes, each with many concurrent requests (one group commit each flush).
        sent = await asyncio.gather(
            *(
                s.append([event(f"{name}-{i}-{j}") for j in range(1 + i % 3)])
                for i in range(60)
                for name, s in (("one", one), ("two", two))
            )
        )
        offsets = sorted(a.offset for batch in sent for a in batch)
        assert offsets == list(range(1, len(offsets) + 1)), "gap-free, each offset once"
        log = await one.read_after(0, 1000)
        assert [e.offset for e in log] == offsets
        indexed = [e.offset for e in await two.read_trigger_after(tid, 0, 1000)]
        assert indexed == offsets, "every event in the trigger index"
        # Ids were sent in order within each request: one request's events are consecutive.
        for batch in sent:
            assert [a.offset for a in batch] == list(
                range(batch[0].offset, batch[0].offset + len(batch))
            )
        heard_by_two.clear()
        await one.append([event("only-one")])  # a commit on one process...
        await until(lambda: {tid} in heard_by_two)  # ...wakes the other's supervisors
        assert await two.head() == len(offsets) + 1
    finally:
        await one.close()
        await two.close()


async def test_a_reader_never_sees_a_later_offset_before_an_earlier_one(pg_dsn: str) -> None:
    """Offsets commit in order across processes: a reader paging by offset never skips."""
    one = PostgresStore(pg_dsn, ManualClock(), vault=VAULT)
    two = PostgresStore(pg_dsn, ManualClock(), vault=VAULT)
    await one.open()
    await two.open()
    try:
        stop = asyncio.Event()
        seen: list[int] = []

        async def follow() -> None:
            cursor = 0
            while not stop.is_set() or cursor < await one.head():
                page = await one.read_after(cursor, 100)
                for e in page:
                    seen.append(e.offset)
                    cursor = e.offset
                await asyncio.sleep(0)

        async def produce(s: PostgresStore, name: str) -> None:
            for i in range(40):
                await s.append([event(f"{name}{i}")])

        reader = asyncio.create_task(follow())
        try:
            await asyncio.gather(produce(one, "a"), produce(two, "b"), produce(two, "c"))
        finally:
            stop.set()
            await reader
        assert seen == list(range(1, 121))
    finally:
        await one.close()
        await two.close()


# -- keys ----------------------------------------------------------------------------------------


async def test_sources_are_sealed_at_rest(store: PostgresStore, pg_dsn: str) -> None:
    source = SourceRecord("/orders", "s3cret-value", True, "2026-01-01T00:00:00Z", 1024)
    await store.put_source(source)
    await store.put_source(SourceRecord("/a", "other", False, "2026-01-01T00:00:00Z"))
    assert await store.list_sources() == [
        SourceRecord("/a", "other", False, "2026-01-01T00:00:00Z"),
        source,
    ]
    conn = await asyncpg.connect(pg_dsn)
    try:
        raw = await conn.fetchval("SELECT secret FROM sources WHERE name = '/orders'")
    finally:
        await conn.close()
    assert "s3cret-value" not in raw
    assert await store.delete_source("/a") and not await store.delete_source("/a")
    assert [s.name for s in await store.list_sources()] == ["/orders"]


async def test_a_start_with_another_key_is_refused(store: PostgresStore, pg_dsn: str) -> None:
    other = PostgresStore(pg_dsn, ManualClock(), vault=Vault(b"x" * 32))
    with pytest.raises(errors.VaultError):
        await other.open()
    await other.close()


# -- secrets sealed at rest ----------------------------------------------------------------------


async def test_subscription_secrets_are_sealed_at_rest(store: PostgresStore, pg_dsn: str) -> None:
    sub = subscription("s1")
    await store.save_subscription(sub)
    assert await store.load_subscriptions() == [sub]
    conn = await asyncpg.connect(pg_dsn)
    try:
        config, secrets = await conn.fetchrow("SELECT config, secrets FROM subscriptions")
    finally:
        await conn.close()
    assert "hidden" not in config and sub.secret not in secrets


# -- backups -------------------------------------------------------------------------------------


async def test_snapshot_says_use_pg_dump(store: PostgresStore, tmp_path: Path) -> None:
    with pytest.raises(SnapshotUnsupported, match="pg_dump"):
        await store.snapshot(tmp_path / "copy.db")


# -- wake-ups ----------------------------------------------------------------------------------


async def test_wake_ups_survive_a_lost_listen_connection(
    store: PostgresStore, pg_dsn: str, wiring: Wiring
) -> None:
    """The server drops the LISTEN connection: the store listens again and wakes every
    trigger once (a commit meanwhile may have gone unheard), then hears commits as before."""
    tid = await store.ensure_trigger("km", "t")
    wiring.matcher = lambda _attributes: [tid]
    woken: list[set[int]] = []
    wiring.on_commit = woken.append
    conn = await asyncpg.connect(pg_dsn)
    try:
        killed = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
        )
    finally:
        await conn.close()
    assert killed == 1
    await until(lambda: {tid} in woken, seconds=10)  # the wake-all after reconnecting
    woken.clear()
    await store.append([event("after")])
    await until(lambda: {tid} in woken)


def _conforms(store: PostgresStore) -> Store:
    """mypy checks here that PostgresStore implements the storage port, method for method."""
    return store


# -- the flush's round trips ---------------------------------------------------------------------


async def test_a_flush_of_appends_is_four_round_trips_and_notifies_its_triggers(
    store: PostgresStore, wiring: Wiring
) -> None:
    """Round trips are most of a flush's time on PostgreSQL (append.py): BEGIN with the head's
    lock, one read, one write carrying the NOTIFY, COMMIT; whatever the batch fires."""
    tid = await store.ensure_trigger("km", "all")
    wiring.matcher = lambda _attributes: [tid]
    heard: list[set[int]] = []
    wiring.on_commit = heard.append
    traced = parse.parse_binary(
        [
            (b"ce-specversion", b"1.0"),
            (b"ce-id", b"traced"),
            (b"ce-source", b"/s"),
            (b"ce-type", b"t"),
            (b"ce-traceid", b"trace-1"),
        ],
        "application/json",
        b"{}",
    )
    await store.append([event("warm-up")])  # asyncpg prepares each statement once
    sent: list[str] = []
    # The writer's connection (asyncpg's, beyond our Session protocol): what one flush
    # sends, in order.
    writer: Any = store._conn
    assert writer is not None
    with writer.query_logger(lambda q: sent.append(q.query)):
        appended = await store.append([event("a"), traced, event("b")])
        assert [a.offset for a in appended] == [2, 3, 4]
        assert len(sent) == 4, sent
        await until(lambda: {tid} in heard)  # the NOTIFY went with the write
        # Duplicates only: nothing written, nothing notified.
        sent.clear()
        again = await store.append([event("a"), event("b")])
        assert [(a.offset, a.duplicate) for a in again] == [(2, True), (4, True)]
        assert len(sent) == 3, sent
    assert [e.offset for e in await store.read_trigger_after(tid, 0, 10)] == [1, 2, 3, 4]
    (member,) = await store.get_trace("trace-1")
    assert member.offset == 3
    assert await store.head() == 4
