"""Subscription leases on a real PostgreSQL (``log/postgres/leases.py``): three stores on one
database stand for three processes. Fair shares, a joining node gets some, a claim never takes
a live lease, an expired one is taken over, a stop hands back at once, a deleted subscription's
lease goes, and a new subscription is taken by its creator only when under its share."""

from __future__ import annotations

from collections.abc import AsyncIterator, Set

import asyncpg  # type: ignore[import-untyped]
import pytest

from eventhub import tasks
from eventhub.log.postgres import PostgresStore
from eventhub.log.postgres.leases import Kind, PgLeases
from tests.conftest import ManualClock
from tests.contract.store.conftest import VAULT
from tests.contract.store.samples import subscription

LEASE = 30.0  # the rounds are driven by hand: nothing expires unless a test says so


class Node:
    """One 'process': a store, its leases, and what it was told it gained and lost."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        self.leases: PgLeases = store.leases(LEASE)
        self.gained: set[str] = set()
        self.lost: set[str] = set()

    async def changed(self, gained: Set[str], lost: Set[str]) -> None:
        assert not (gained & lost)
        self.gained |= gained
        self.lost |= lost

    async def start(self, owner: tasks.Tasks) -> None:
        await self.leases.start(owner, self.changed)


@pytest.fixture
async def nodes(pg_dsn: str) -> AsyncIterator[list[Node]]:
    owner = tasks.Tasks()
    stores = [PostgresStore(pg_dsn, ManualClock(), vault=VAULT) for _ in range(3)]
    for s in stores:
        await s.open(owner)
    yield [Node(s) for s in stores]
    for s in stores:
        await s.close()
    await owner.stop()


async def table(dsn: str) -> dict[str, str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT id, owner FROM leases WHERE expires_at > now()")
    finally:
        await conn.close()
    return {r["id"]: r["owner"] for r in rows}


async def test_shares_rebalance_take_over_and_hand_back(pg_dsn: str, nodes: list[Node]) -> None:
    a, b, c = nodes
    owner = tasks.Tasks()
    try:
        for i in range(10):
            await a.store.save_subscription(subscription(f"s{i}"))
        await a.start(owner)
        assert a.leases.held == {f"s{i}" for i in range(10)} == a.gained
        await b.start(owner)  # b joins: it sees a holding all, claims nothing yet
        assert b.leases.held == set()
        await a.leases.tick()  # a sees two live nodes: releases its surplus
        assert len(a.leases.held) == 5 and len(a.lost) == 5
        await b.leases.tick()
        assert len(b.leases.held) == 5
        assert a.leases.held.isdisjoint(b.leases.held)
        rows = await table(pg_dsn)
        assert len(rows) == 10
        assert {s for s, n in rows.items() if n == a.leases.node} == a.leases.held

        # A claim never takes a live lease: c, under its share, finds nothing free.
        await c.start(owner)
        assert c.leases.held == set()
        assert await table(pg_dsn) == rows

        # b dies: its leases expire (by the database's clock), its heartbeat stops. c's next
        # round (two live nodes, share 5) takes them over; a's are left alone.
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute(
                "UPDATE leases SET expires_at = now() - interval '1 second' WHERE owner = $1",
                b.leases.node,
            )
            await conn.execute("DELETE FROM nodes WHERE id = $1", b.leases.node)
        finally:
            await conn.close()
        b_held = set(b.leases.held)
        await c.leases.tick()
        assert c.leases.held == b_held and c.gained == b_held
        assert a.leases.held.isdisjoint(c.leases.held)
        # b, not dead after all, renews: what it held is gone, and it is told so.
        await b.leases.tick()
        assert b.leases.held == set() and b.lost == b_held
        await b.leases.stop()

        # A deleted subscription's lease goes with it at the next round.
        gone = sorted(c.leases.held)[0]
        await a.store.delete_subscription(gone)
        await c.leases.tick()
        assert gone not in c.leases.held and gone not in await table(pg_dsn)
        assert len(c.leases.held) == 4

        # A new subscription: its creator, under its share, takes it at once.
        await a.store.save_subscription(subscription("new"))
        assert await c.leases.take("new") is True
        assert c.leases.holds("new")

        # A graceful stop hands every lease back at once: c's next round takes them all.
        await a.leases.stop()
        assert a.leases.node not in set((await table(pg_dsn)).values())
        await c.leases.tick()
        assert len(c.leases.held) == 10
    finally:
        await owner.stop()


async def test_partition_leases_beside_subscription_leases(pg_dsn: str, nodes: list[Node]) -> None:
    """The instances' partitions are leased by the same class, as another kind on the same
    node: shared fairly, and neither kind's rounds or hand-back touch the other's rows."""
    a, b, _ = nodes
    kind = Kind("partition", "SELECT g::text FROM generate_series(0, 31) AS g", "partitions")
    owner = tasks.Tasks()
    try:
        await a.store.save_subscription(subscription("s0"))
        await a.start(owner)
        a_parts = a.store.leases(LEASE, kind)
        b_parts = b.store.leases(LEASE, kind)
        assert a_parts.node == a.leases.node  # one node: one heartbeat, one count
        told: list[tuple[Set[str], Set[str]]] = []

        async def changed(gained: Set[str], lost: Set[str]) -> None:
            told.append((gained, lost))

        await a_parts.start(owner, changed)
        assert a_parts.held == {str(p) for p in range(32)} and told == [(a_parts.held, set())]
        assert a.leases.held == {"s0"}  # the subscription's lease is its own kind's
        await b_parts.start(owner, changed)
        await a_parts.tick()
        await b_parts.tick()
        assert len(a_parts.held) == len(b_parts.held) == 16
        assert a_parts.held.isdisjoint(b_parts.held)
        await a.leases.tick()  # a subscription round renews only subscriptions
        assert a.leases.held == {"s0"} and len(a_parts.held) == 16
        # A hand-back of partitions leaves the node's subscription lease in place.
        await a_parts.stop()
        rows = await kinds(pg_dsn)
        assert rows.get(("subscription", "s0")) == a.leases.node
        assert a.leases.node not in {n for (k, _), n in rows.items() if k == "partition"}
        await b_parts.tick()
        assert len(b_parts.held) == 32
    finally:
        await owner.stop()


async def kinds(dsn: str) -> dict[tuple[str, str], str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT kind, id, owner FROM leases WHERE expires_at > now()")
    finally:
        await conn.close()
    return {(r["kind"], r["id"]): r["owner"] for r in rows}


async def test_a_rebalance_releases_idle_partitions_first(pg_dsn: str, nodes: list[Node]) -> None:
    """When a process joins, the others release their surplus: the partitions their owner
    calls idle first (no instance task: no call in flight to repeat), busy ones only when
    the idle ones are too few. Sorted order alone would release "0" and "1" here."""
    a, b, _ = nodes
    kind = Kind("partition", "SELECT g::text FROM generate_series(0, 3) AS g", "partitions")
    owner = tasks.Tasks()
    busy = {"0", "1"}
    asked: list[Set[str]] = []

    def idle(held: Set[str]) -> set[str]:
        asked.append(held)
        return set(held) - busy

    async def changed(gained: Set[str], lost: Set[str]) -> None:
        return None

    try:
        a_parts = a.store.leases(LEASE, kind)
        b_parts = b.store.leases(LEASE, kind)
        await a_parts.start(owner, changed, idle)
        assert a_parts.held == {"0", "1", "2", "3"}
        await b_parts.start(owner, changed)  # joins: a holds every partition
        await a_parts.tick()  # share 2: the busy ones stay, the idle ones go
        assert a_parts.held == busy and asked[-1] == {"0", "1", "2", "3"}
        await b_parts.tick()
        assert b_parts.held == {"2", "3"}

        # Fewer idle than the surplus: the idle first, then busy ones (sorted order).
        busy = {"0", "1"}
        await b_parts.stop()
        await a_parts.tick()
        assert a_parts.held == {"0", "1", "2", "3"}
        busy = {"0", "1", "2"}
        await b_parts.start(owner, changed)
        await a_parts.tick()
        assert a_parts.held == {"1", "2"}  # "3" (idle) and "0" (first of the busy) went
    finally:
        await owner.stop()
