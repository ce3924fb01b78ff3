"""PostgresStore against a real PostgreSQL (conftest.py starts it): every method, with the
expectations the SQLite store's tests have (tests/unit/test_store.py, test_traces.py,
e2e/test_retention.py), and what only several processes on one database can show: two stores
appending at once get gap-free, strictly increasing offsets and every trigger index row, and
a commit on one wakes the other by NOTIFY."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import orjson
import pytest

from eventhub import errors
from eventhub.clock import rfc3339
from eventhub.codec import parse
from eventhub.delivery.states import Status
from eventhub.errors import SnapshotUnsupported
from eventhub.events import DataKind, NewEvent, digest_of
from eventhub.log.base import Hooks
from eventhub.log.postgres import PostgresStore, schema
from eventhub.log.sqlite import SqliteStore, records
from eventhub.log.store import KeyRecord, SourceRecord, Store
from eventhub.models import Attempt, Subscription
from eventhub.vault import Vault
from tests.conftest import ManualClock

VAULT = Vault(b"k" * 32)
DAY = 86400.0


def event(id_: str, data: bytes = b'{"n": 1}', source: str = "/s", type_: str = "t") -> NewEvent:
    return parse.parse_binary(
        [
            (b"ce-specversion", b"1.0"),
            (b"ce-id", id_.encode()),
            (b"ce-source", source.encode()),
            (b"ce-type", type_.encode()),
        ],
        "application/json",
        data,
    )


def subscription(sub_id: str, tid: int = 1, status: Status = Status.ACTIVE) -> Subscription:
    return Subscription(
        id=sub_id,
        owner="k",
        km="km",
        trigger="t",
        tid=tid,
        name=sub_id,
        uri="http://127.0.0.1:9/hook",
        headers={"X-Token": "hidden"},
        skip_errors=False,
        format="envelope",
        batch_size=1,
        max_retries=0,
        secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        status=status,
        cursor=0,
        created_at="2026-01-01T00:00:00Z",
        updated_at="2026-01-01T00:00:00Z",
    )


async def until(check: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


class Wiring:
    """Hooks a test sets after the store is built (a store takes its hooks at construction):
    each forwards to the attribute of the same name, when set."""

    def __init__(self) -> None:
        self.matcher: Callable[[dict[str, Any]], Iterable[int]] | None = None
        self.on_commit: Callable[[set[int]], None] | None = None
        self.on_appended: Callable[[int], None] | None = None

    def hooks(self) -> Hooks:
        return Hooks(
            matcher=lambda attributes: self.matcher(attributes) if self.matcher else [],
            on_commit=lambda tids: self.on_commit(tids) if self.on_commit else None,
            on_appended=lambda head: self.on_appended(head) if self.on_appended else None,
        )


@pytest.fixture
def wiring() -> Wiring:
    return Wiring()


@pytest.fixture
async def store(pg_dsn: str, clock: ManualClock, wiring: Wiring) -> AsyncIterator[PostgresStore]:
    s = PostgresStore(pg_dsn, clock, vault=VAULT, hooks=wiring.hooks())
    await s.open()
    yield s
    await s.close()


# -- the log -----------------------------------------------------------------------------------


async def test_offsets_increase_and_reads_page(store: PostgresStore) -> None:
    appended = await store.append([event(str(i)) for i in range(5)])
    assert [a.offset for a in appended] == [1, 2, 3, 4, 5]
    page = await store.read_after(2, 2)
    assert [e.offset for e in page] == [3, 4]
    assert await store.head() == 5
    found = await store.read_event(4)
    assert found is not None and found.attributes["id"] == "3"
    assert await store.read_event(6) is None
    assert await store.append([]) == []


async def test_identical_resend_is_a_duplicate_and_changed_content_a_revision(
    store: PostgresStore,
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


async def test_same_identity_twice_in_one_batch(store: PostgresStore) -> None:
    out = await store.append([event("x"), event("x"), event("x", b"[1]")])
    assert [(a.revision, a.duplicate) for a in out] == [(1, False), (1, True), (2, False)]


async def test_concurrent_appends_share_commits_and_keep_their_own_results(
    store: PostgresStore,
) -> None:
    results = await asyncio.gather(*(store.append([event(f"c{i}")]) for i in range(50)))
    offsets = sorted(r[0].offset for r in results)
    assert offsets == list(range(1, 51))
    for i, (appended,) in enumerate(results):
        stored = await store.read_event(appended.offset)
        assert stored is not None and stored.attributes["id"] == f"c{i}"


async def test_data_bytes_and_kind_survive_a_reopen(pg_dsn: str) -> None:
    s = PostgresStore(pg_dsn, ManualClock(), vault=VAULT)
    await s.open()
    attributes = {"specversion": "1.0", "id": "b", "source": "s", "type": "t"}
    await s.append([NewEvent(attributes, b"\x00\xff\x10", DataKind.BINARY, b"d" * 16)])
    await s.close()
    s = PostgresStore(pg_dsn, ManualClock(), vault=VAULT)
    await s.open()
    try:
        (stored,) = await s.read_after(0, 10)
        (next_one,) = await s.append([event("after-reopen")])
    finally:
        await s.close()
    assert stored.data == b"\x00\xff\x10" and stored.kind is DataKind.BINARY
    assert stored.attributes == attributes
    assert next_one.offset == 2


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


async def test_check_writable_commits(store: PostgresStore) -> None:
    await store.check_writable()


# -- the trigger index and wake-ups ------------------------------------------------------------


def by_type(tids: dict[str, int]) -> Callable[[dict[str, Any]], Iterable[int]]:
    return lambda attributes: [tids[attributes["type"]]] if attributes["type"] in tids else []


async def test_trigger_index_and_notify_wake_ups(store: PostgresStore, wiring: Wiring) -> None:
    a = await store.ensure_trigger("km", "a")
    b = await store.ensure_trigger("km", "b")
    assert await store.ensure_trigger("km", "a") == a and a != b
    wiring.matcher = by_type({"ta": a, "tb": b})
    woken: list[set[int]] = []
    heads: list[int] = []
    wiring.on_commit = woken.append
    wiring.on_appended = heads.append
    await store.append([event("1", type_="ta"), event("2", type_="tb"), event("3", type_="x")])
    await store.append([event("4", type_="ta")])
    await until(lambda: bool(heads) and heads[-1] == 4)
    await until(lambda: set().union(*woken) == {a, b})
    assert [e.offset for e in await store.read_trigger_after(a, 0, 10)] == [1, 4]
    assert [e.offset for e in await store.read_trigger_after(a, 1, 10)] == [4]
    assert [e.offset for e in await store.read_trigger_after(b, 0, 10)] == [2]
    assert await store.trigger_head(a) == 4 and await store.trigger_head(b) == 2
    assert await store.trigger_head(999) == 0
    assert await store.count_between(a, 0, 4) == 2 and await store.count_between(a, 1, 3) == 0
    # A duplicate appends nothing: no offset, no wake-up.
    woken.clear()
    (dup,) = await store.append([event("1", type_="ta")])
    assert dup.duplicate
    await store.append([event("5", type_="tb")])  # a later commit that does notify
    await until(lambda: bool(woken))
    assert woken == [{b}]


async def test_event_types_count_classes(store: PostgresStore, clock: ManualClock) -> None:
    await store.append([event("1", type_="a"), event("2", type_="a"), event("3", type_="b")])
    clock.advance(5)
    await store.append([event("4", type_="a")])
    found = await store.event_types()
    assert [(t["type"], t["count"], t["group"]) for t in found] == [("a", 3, None), ("b", 1, None)]
    assert found[0]["lastSeen"] > found[0]["firstSeen"]


# -- several processes on one database -------------------------------------------------------


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


# -- keys and sources ----------------------------------------------------------------------------


async def test_keys_put_list_revoke(store: PostgresStore) -> None:
    k1 = KeyRecord("k1", b"\x01" * 32, "one", "admin", None, "2026-01-01T00:00:00Z")
    k2 = KeyRecord("k2", b"\x02" * 32, "two", "producer", ("/a", "/b"), "2026-01-02T00:00:00Z")
    await store.put_key(k2)
    await store.put_key(k1)
    assert await store.list_keys() == [k1, k2]
    assert await store.revoke_key("k1", "2026-02-01T00:00:00Z")
    assert not await store.revoke_key("k1", "2026-03-01T00:00:00Z")
    assert not await store.revoke_key("nope", "2026-03-01T00:00:00Z")
    (first, _) = await store.list_keys()
    assert first.revoked_at == "2026-02-01T00:00:00Z"


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


# -- knowledge models -------------------------------------------------------------------------


async def test_models_draft_publish_delete(store: PostgresStore) -> None:
    draft = {"name": "Orders", "triggers": {}}
    await store.save_draft("orders", draft, "2026-01-01T00:00:00Z")
    await store.save_draft("orders", {**draft, "name": "Orders 2"}, "2026-01-02T00:00:00Z")
    assert await store.load_models() == [("orders", {**draft, "name": "Orders 2"}, 0)]
    snapshot = {"id": "orders", "version": 1, "triggers": [{"id": "created"}, {"id": "paid"}]}
    tids = await store.publish("orders", snapshot, "2026-01-03T00:00:00Z")
    assert set(tids) == {("orders", "created"), ("orders", "paid")}
    assert await store.trigger_ids() == tids
    assert await store.load_published() == [snapshot]
    assert (await store.load_models())[0][2] == 1
    again = await store.publish(
        "orders", {**snapshot, "version": 2}, "2026-01-04T00:00:00Z"
    )  # same triggers keep their numbers
    assert again == tids
    await store.delete_model("orders")
    assert await store.load_models() == [] and await store.load_published() == []


# -- subscriptions and attempts ----------------------------------------------------------------


async def test_subscriptions_round_trip_with_secrets_sealed(
    store: PostgresStore, pg_dsn: str
) -> None:
    sub = subscription("s1")
    await store.save_subscription(sub)
    (loaded,) = await store.load_subscriptions()
    assert loaded == sub
    conn = await asyncpg.connect(pg_dsn)
    try:
        config, secrets = await conn.fetchrow("SELECT config, secrets FROM subscriptions")
    finally:
        await conn.close()
    assert "hidden" not in config and sub.secret not in secrets
    sub.cursor, sub.status = 7, Status.PAUSED
    await store.save_subscription(sub)
    assert (await store.load_subscriptions())[0] == sub
    await store.save_delivery(sub, Attempt(1, "t", 1, 7, 500, 2.5, "boom", "msg_1"))
    assert [a.error for a in await store.list_attempts("s1", 10)] == ["boom"]
    await store.delete_subscription("s1")
    assert await store.load_subscriptions() == [] and await store.list_attempts("s1", 10) == []


async def test_delivery_records_share_one_write_and_keep_every_attempt(
    store: PostgresStore,
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


# -- retention, backup, figures ----------------------------------------------------------------


async def test_prune_deletes_the_oldest_until_a_live_subscription_needs_one(
    store: PostgresStore, clock: ManualClock, wiring: Wiring
) -> None:
    tid = await store.ensure_trigger("km", "t")
    wiring.matcher = lambda _attributes: [tid]
    await store.append([event(f"old{i}") for i in range(5)])  # 1..5
    clock.advance(2 * DAY)
    await store.append([event(f"new{i}") for i in range(2)])  # 6..7
    sub = subscription("s", tid)
    sub.cursor = 2  # needs offset 3 on
    await store.save_subscription(sub)
    cutoff = rfc3339(clock.now() - DAY)
    pruned = await store.prune(cutoff, None, 100)
    assert (pruned.deleted, pruned.first_offset, pruned.held_at) == (2, 3, 3)
    first, *_ = await store.read_trigger_after(tid, 0, 10)
    assert first.offset == 3
    sub.status = Status.SUSPENDED  # needs nothing now
    await store.save_subscription(sub)
    pruned = await store.prune(cutoff, None, 2)  # a batch at a time
    assert (pruned.deleted, pruned.first_offset) == (2, 5)
    pruned = await store.prune(cutoff, None, 100)
    assert (pruned.deleted, pruned.first_offset, pruned.held_at) == (1, 6, None)
    assert await store.first_offset() == 6
    assert await store.count_between(tid, 0, 5) == 0


async def test_offsets_go_on_after_everything_was_deleted(
    store: PostgresStore, clock: ManualClock
) -> None:
    await store.append([event("a"), event("b")])
    clock.advance(2 * DAY)
    pruned = await store.prune(None, 1, 100)  # over any size: everything may go
    assert pruned.deleted == 2
    assert await store.read_after(0, 10) == []
    assert await store.head() == 2 and await store.first_offset() == 3
    (again,) = await store.append([event("a")])  # identity went with its event
    assert (again.offset, again.revision, again.duplicate) == (3, 1, False)


async def test_snapshot_says_use_pg_dump(store: PostgresStore, tmp_path: Path) -> None:
    with pytest.raises(SnapshotUnsupported, match="pg_dump"):
        await store.snapshot(tmp_path / "copy.db")


async def test_figures_report_head_size_and_who_is_behind(
    store: PostgresStore, wiring: Wiring
) -> None:
    tid = await store.ensure_trigger("km", "t")
    wiring.matcher = lambda _attributes: [tid]
    await store.append([event(str(i)) for i in range(4)])
    found = await store.read_figures([(tid, 1), (tid, 4)])
    assert found.head == 4 and found.database_bytes > 0
    assert set(found.behind) == {(tid, 1)} and found.behind[(tid, 1)].events == 3
    assert found.behind[(tid, 1)].oldest_received_at is not None


# -- traces: the same answers as SQLite's --------------------------------------------------------

STAMPS = [None, "2020-01-01T10:00:00Z", "2020-01-01T11:00:00+01:00", "2019-12-31T23:00:00Z"]


def traced(rng: random.Random) -> NewEvent:
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": rng.choice("abcd"),
        "source": rng.choice(["s1", "s2"]),
        "type": "t",
    }
    trace = rng.choice([None, "t1", "t2", ""])
    if trace is not None:
        attributes["traceid"] = trace
    stamp = rng.choice(STAMPS)
    if stamp is not None:
        attributes["time"] = stamp
    body = orjson.dumps({"x": rng.randrange(3)})
    return NewEvent(attributes, body, DataKind.JSON, digest_of(attributes, body, DataKind.JSON))


async def test_traces_equal_sqlites(
    store: PostgresStore, clock: ManualClock, tmp_path: Path
) -> None:
    sqlite = SqliteStore(tmp_path / "log.db", clock, vault=VAULT)
    await sqlite.open()
    try:
        rng = random.Random(12)
        for _ in range(12):
            batch = [traced(rng) for _ in range(rng.randrange(1, 7))]
            parts = [batch[i : i + 3] for i in range(0, len(batch), 3)]
            # Same flushes on both: the parts of a batch share one commit, as requests do.
            expected = await asyncio.gather(*(sqlite.append(p) for p in parts))
            got = await asyncio.gather(*(store.append(p) for p in parts))
            assert got == expected
        want = await sqlite.list_traces(0, 100)
        assert await store.list_traces(0, 100) == want and want
        assert await store.list_traces(want[0].activity, 100) == want[1:]
        for summary in want:
            assert await store.get_trace(summary.trace_id) == await sqlite.get_trace(
                summary.trace_id
            )
        assert await store.get_trace("none") == []
    finally:
        await sqlite.close()


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
