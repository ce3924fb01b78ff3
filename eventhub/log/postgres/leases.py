"""Leases on PostgreSQL (SPEC §9; the interface is ``delivery/leases.py``): of subscriptions
(kind ``subscription``) and of the partitions process instances are spread over (kind
``partition``, ``processes/partitions.py``). One class, parameterised by a ``Kind``: which
rows, and what there is to lease (a SELECT of ids); the rules below are the same for both.

Why lease rows rather than advisory locks: an advisory lock lives as long as the session
that took it, so holding 100 subscriptions would pin a connection (the pool's would lose
them on any reconnect), a dead process's locks last until PostgreSQL notices the dropped
TCP connection (minutes, not ``lease_seconds``), and a lock cannot be counted per process
for a fair share. Rows expire by the database's clock, are visible to every process, and a
claim is one conditional statement (an ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` the
old lease expired), so never two owners at once.

Every ``lease_seconds / 3`` (sooner when poked) the lease task: heartbeats this node, renews
its leases (what did not renew was lost), counts the live nodes and the subscriptions, and
moves to its fair share ``ceil(subscriptions / live nodes)``: releasing the surplus (so a
joining process gets some; the ones the owner's ``idle`` names first, for partitions those
with no call in flight) or claiming free and expired ones. If renewing keeps failing for
``lease_seconds / 2``, it gives up every lease locally (stops those supervisors), well before
another process may claim them. Releases go through the store's group commit, so the cursor
writes of the stopped supervisors queued before them commit first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
from collections.abc import Awaitable, Callable, Set
from dataclasses import dataclass

from eventhub import tasks
from eventhub.delivery.leases import Changed, Idle
from eventhub.log.postgres.connection import Connection

log = logging.getLogger(__name__)

Write = Callable[[Callable[[Connection], Awaitable[None]]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Kind:
    """What one ``PgLeases`` leases: rows of ``leases`` with ``kind = name``, over the ids
    that ``ids`` (a SELECT of one text column, fixed in code) lists."""

    name: str
    ids: str
    task: str  # the lease task's name (``tasks.Tasks``)


SUBSCRIPTIONS = Kind("subscription", "SELECT id FROM subscriptions", "subscription-leases")

_HEARTBEAT = (
    "INSERT INTO nodes (id, seen_until) VALUES ($1, now() + $2 * interval '1 second')"
    " ON CONFLICT (id) DO UPDATE SET seen_until = excluded.seen_until"
)
_FORGET_NODES = "DELETE FROM nodes WHERE seen_until < now() - interval '1 minute'"
_LEAVE = "DELETE FROM nodes WHERE id = $1"


@dataclass(frozen=True, slots=True)
class _Sql:
    """The statements of one kind ($kind is always the last parameter)."""

    forget: str
    renew: str
    count: str
    claim: str
    claim_one: str
    release: str
    release_all: str


def _sql(kind: Kind) -> _Sql:
    ids = f"({kind.ids}) AS s(id)"
    return _Sql(
        forget=(
            "DELETE FROM leases l WHERE l.kind = $1"
            f" AND NOT EXISTS (SELECT 1 FROM {ids} WHERE s.id = l.id)"
        ),
        renew=(
            "UPDATE leases SET expires_at = now() + $2 * interval '1 second'"
            " WHERE kind = $3 AND owner = $1 RETURNING id"
        ),
        count=(
            "SELECT (SELECT count(*) FROM nodes WHERE seen_until > now()),"
            f" (SELECT count(*) FROM {ids})"
        ),
        # The claim: free ids (no row) and expired leases, up to $3 of them, in a random
        # order so that nodes claiming at once mostly pick different ones. The DO UPDATE's
        # WHERE is re-checked on the row as it is when the conflict is found: a lease
        # someone renewed or claimed meanwhile is left alone.
        claim=(
            "INSERT INTO leases (kind, id, owner, expires_at)"
            f" SELECT $4, s.id, $1, now() + $2 * interval '1 second' FROM {ids}"
            " LEFT JOIN leases l ON l.kind = $4 AND l.id = s.id"
            " WHERE l.id IS NULL OR l.expires_at < now()"
            " ORDER BY random() LIMIT $3"
            " ON CONFLICT (kind, id) DO UPDATE SET owner = excluded.owner,"
            " expires_at = excluded.expires_at WHERE leases.expires_at < now()"
            " RETURNING id"
        ),
        claim_one=(
            "INSERT INTO leases (kind, id, owner, expires_at)"
            " VALUES ($4, $3, $1, now() + $2 * interval '1 second')"
            " ON CONFLICT (kind, id) DO UPDATE SET owner = excluded.owner,"
            " expires_at = excluded.expires_at WHERE leases.expires_at < now()"
            " RETURNING id"
        ),
        release="DELETE FROM leases WHERE owner = $1 AND id = ANY($2) AND kind = $3",
        # Only this kind: the node's other leases are handed back by their own owner, after
        # the parts that use them stopped.
        release_all="DELETE FROM leases WHERE owner = $1 AND kind = $2",
    )


class PgLeases:
    """This process's leases of one kind (``delivery.leases.Leases``): subscriptions, or
    the process instances' partitions (``processes/partitions.py``). The kinds of one
    process share its ``node`` (one heartbeat, one count of live nodes)."""

    def __init__(
        self,
        db: Callable[[], Connection],
        write: Write,
        lease_seconds: float,
        node: str | None = None,
        kind: Kind = SUBSCRIPTIONS,
    ) -> None:
        self.kind = kind
        self._sql = _sql(kind)
        self._db = db
        self._write = write
        self._seconds = lease_seconds
        self.node = node or secrets.token_hex(6)
        self._held: set[str] = set()
        self._renewed_at = 0.0  # loop time at which the last successful renewal was sent
        self._share = 1
        self._live = 1
        self._total = 0
        self._changed: Changed | None = None
        self._idle: Idle | None = None
        self._wake = asyncio.Event()
        self._task: tasks.Watched | None = None
        # A round and a ``take`` never interleave: a round that renewed before a take's
        # claim would count the taken lease as lost.
        self._round = asyncio.Lock()

    def holds(self, sub_id: str) -> bool:
        return sub_id in self._held

    @property
    def held(self) -> Set[str]:
        return frozenset(self._held)

    async def start(self, owner: tasks.Tasks, changed: Changed, idle: Idle | None = None) -> None:
        self._changed = changed
        self._idle = idle
        await self.tick()
        self._task = owner.watch(self.kind.task, self._run)

    def poke(self) -> None:
        self._wake.set()

    async def take(self, sub_id: str) -> bool:
        self._total += 1
        if len(self._held) >= math.ceil(self._total / max(1, self._live)):
            self.poke()  # not ours: whoever is under its share claims it at its next tick
            return False
        async with self._round:
            got = await self._db().fetch(
                self._sql.claim_one, self.node, self._seconds, sub_id, self.kind.name
            )
            if got:
                self._held.add(sub_id)
        return bool(got)

    async def stop(self) -> None:
        if self._changed is None:
            return  # never started (the hub failed to start): nothing to hand back
        self._changed = None
        if self._task is not None:
            await self._task.stop()
            self._task = None
        self._held.clear()
        node, sql, name = self.node, self._sql, self.kind.name

        async def release(conn: Connection) -> None:
            await conn.execute(sql.release_all, node, name)
            await conn.execute(_LEAVE, node)

        try:
            await self._write(release)
        except Exception:
            log.exception("handing the leases back failed; they expire in %g s", self._seconds)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._seconds / 3)
            self._wake.clear()
            try:
                await self.tick()
            except Exception:
                log.warning("renewing the %s leases failed", self.kind.name, exc_info=True)
                if self._held and loop.time() - self._renewed_at > self._seconds / 2:
                    # Someone may claim them soon: stop delivering before that can happen.
                    lost, self._held = set(self._held), set()
                    log.error("lost %d %s leases (cannot renew)", len(lost), self.kind.name)
                    await self._tell(set(), lost)

    async def tick(self) -> None:
        """One round: heartbeat, renew, then move towards the fair share."""
        async with self._round:
            await self._tick()

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        db, sql, name = self._db(), self._sql, self.kind.name
        sent = loop.time()
        await db.execute(_HEARTBEAT, self.node, self._seconds)
        # Leases of deleted subscriptions go first, so they count neither as held nor below.
        await db.execute(_FORGET_NODES)
        await db.execute(sql.forget, name)
        still = {str(r[0]) for r in await db.fetch(sql.renew, self.node, self._seconds, name)}
        self._renewed_at = sent
        lost = self._held - still
        gained = still - self._held  # ours in the table (a retry after a failed renewal)
        self._held = set(still)
        live, total = await db.fetchrow(sql.count)
        self._live, self._total = max(1, int(live)), int(total)
        self._share = math.ceil(self._total / self._live)
        surplus = len(self._held) - self._share
        if surplus > 0:
            released = self._surplus(surplus)
            self._held -= released
            gained -= released
            await self._tell(set(), lost | released)
            lost = set()
            node = self.node

            async def release(conn: Connection) -> None:
                await conn.execute(sql.release, node, list(released), name)

            await self._write(release)
        elif surplus < 0:
            claimed = {
                str(r[0])
                for r in await db.fetch(sql.claim, self.node, self._seconds, -surplus, name)
            }
            self._held |= claimed
            gained |= claimed
        if gained or lost:
            await self._tell(gained, lost)

    def _surplus(self, surplus: int) -> set[str]:
        """Which ``surplus`` leases to release: the idle ones first (when the owner says which
        are), so a joining process repeats no call that was in flight here; then in sorted
        order, as subscriptions always do."""
        held = sorted(self._held)
        if self._idle is not None:
            idle = self._idle(frozenset(self._held))
            held = [i for i in held if i in idle] + [i for i in held if i not in idle]
        return set(held[:surplus])

    async def _tell(self, gained: set[str], lost: set[str]) -> None:
        if self._changed is not None and (gained or lost):
            await self._changed(gained, lost)
