"""``PostgresStore``: the storage port of ``SqliteStore`` (same methods, parameters, results
and semantics) on a PostgreSQL database that several eventhub processes share (SPEC §9).

Three kinds of connection, each for one job: the writer's (one connection, flushed by
``GroupCommitWriter``: many requests, one transaction, as on SQLite), the listener's
(``wakeup.py``: LISTEN), and a pool for reads and rare admin statements.

What differs from SQLite, and why:

- Offsets: the one-row ``log_head`` is locked by every append and held to its COMMIT
  (``append.py`` says why a sequence would not do), so appends from all processes commit in
  offset order, gap-free.
- Wake-ups: a commit that appended notifies (``wakeup.py``); ``on_commit`` and ``on_appended``
  are called when the notification arrives, on every process, the writer's own included.
- Durability is PostgreSQL's (``synchronous_commit``); a full disk (SQLSTATE 53100) fails the
  flush with ``errors.InsufficientStorage``, as on SQLite.
- Backups are ``pg_dump``'s: ``snapshot`` refuses (``SnapshotUnsupported``).
- ``on_instances`` and ``on_emitted`` stay local to the process that committed. A commit
  that made instances Running (a start, a wake) or set a due time also sends ``NOTIFY
  eventhub_instance`` (``wakeup.Nudges``), which reaches the other processes as
  ``on_instance_ids``: the holder of each instance's partition drives it
  (``processes/partitions.py``). Definitions saved or deleted send ``NOTIFY
  eventhub_process`` (``on_definition`` elsewhere); one whose start filters are in the
  match index also moves ``catalogue_version`` (below), and ``reload_matcher`` brings the
  engine's start filters up to date too.
- Keys, sources and the catalogue: every write of one notifies ``eventhub_changed`` in its
  transaction (``wakeup.py``), so the other processes reload that part (``on_change``). The
  keyring and the sources follow within milliseconds of the COMMIT; a request that reaches
  another process in those milliseconds is answered as before the change.
- The match index, though, must not lag: an event appended on B just after A published a
  model must fire its triggers, or subscriptions on it miss the event for good. So a publish
  or delete also moves ``log_head.catalogue_version``, under the row lock every append takes
  first, and the append reads the version with the identities, in the first statement
  after the lock (no round trip of its own). When it moved since this process last looked, the append reloads the match
  index (``reload_matcher``) before it matches anything, still holding the lock, so no other
  change of the catalogue can commit meanwhile: every event is matched against exactly the
  models published before it was appended, whichever process published them. No window
  remains. The cost is the reload (three reads of the catalogue, on the pool; only changed
  models are compiled again) in the first append after each change: 3-6 ms measured with 10
  to 100 models of 5 triggers; the appends of other processes wait for it, as for any
  append. An append when nothing changed pays nothing (throughput unchanged within noise).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]
import orjson

from eventhub import errors, tasks, traces
from eventhub.clock import Clock, rfc3339
from eventhub.errors import DatabaseUnavailable, SnapshotUnsupported
from eventhub.events import Appended, DataKind, NewEvent, StoredEvent
from eventhub.log import dsn, figures, retention, sealing
from eventhub.log.base import NO_HOOKS, Hooks, StepNames
from eventhub.log.commit import Clock as CommitClock
from eventhub.log.commit import Emit
from eventhub.log.postgres import append, rows, schema, wakeup
from eventhub.log.postgres import instances as pg_instances
from eventhub.log.postgres import retention as pg_retention
from eventhub.log.postgres.connection import Connection, Session, affected
from eventhub.log.postgres.leases import Kind, PgLeases
from eventhub.log.store import KeyRecord, Pruned, SourceRecord
from eventhub.log.writer import GroupCommitWriter
from eventhub.models import Attempt, Subscription
from eventhub.processes import definitions
from eventhub.processes.instances import (
    CORRELATION_ATTRIBUTE,
    Advanced,
    Entry,
    Instance,
    Opened,
    State,
    Then,
)
from eventhub.vault import Vault

log = logging.getLogger(__name__)

R = TypeVar("R")

_EVENT_COLUMNS = "event_offset, revision, attributes, data, data_kind, received_at"
_DISK_FULL = "53100"  # SQLSTATE disk_full


def _storage_error(exc: BaseException) -> errors.InsufficientStorage | None:
    if getattr(exc, "sqlstate", None) == _DISK_FULL:
        return errors.InsufficientStorage(
            "the database's disk is full; nothing of this request was stored, retry later"
        )
    return None


def _event_from_row(row: Sequence[Any]) -> StoredEvent:
    offset, revision, attributes, data, kind, received_at = row
    return StoredEvent(
        int(offset), int(revision), orjson.loads(attributes), data, DataKind(kind), received_at
    )


class _Append:
    """An append waiting in the writer's queue; ``_write`` merges all of them in a flush."""

    __slots__ = ("events", "result")

    def __init__(self, events: Sequence[NewEvent]) -> None:
        self.events = events
        self.result: list[Appended] = []


class _Deliveries:
    """Successful deliveries waiting for the next flush: one queued write for all of them."""

    __slots__ = ("attempts", "subs", "written")

    def __init__(self) -> None:
        self.subs: dict[str, Subscription] = {}
        self.attempts: list[tuple[str, Attempt]] = []
        self.written = False  # from now on, a new delivery starts the next batch

    async def __call__(self, conn: Connection) -> None:
        # Idempotent, so the writer may run it again alone after a failed group commit.
        self.written = True
        await rows.save_progress_of(conn, self.subs.values())
        await rows.add_attempts(conn, self.attempts)


class _Emitting:
    """A write that may append events of its own (an instance's lifecycle events) in the
    same transaction: ``fn(connection, emit, clock)``."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[Connection, Emit, CommitClock], Awaitable[Any]]) -> None:
        self.fn = fn


WriteOp = Callable[[Connection], Awaitable[Any]] | _Append | _Emitting
Matcher = Callable[[dict[str, Any]], Iterable[int]]


class PostgresStore:
    def __init__(
        self,
        dsn: str,
        clock: Clock,
        *,
        vault: Vault,
        observe_commit: Callable[[int, float], None] | None = None,
        pool_size: int = 8,
        hooks: Hooks = NO_HOOKS,
    ) -> None:
        self._dsn = dsn
        self._clock = clock
        self._vault = vault  # seals secrets on write, opens them at load (log/sealing.py)
        self._observe_commit = observe_commit
        self._pool_size = pool_size
        self._conn: Session | None = None  # the writer's
        self._writer_pid = 0
        self._pool: Any = None  # asyncpg.Pool: read through ``_db`` (typed)
        self._writer: GroupCommitWriter[WriteOp, Any] | None = None
        self._listener: tasks.Watched | None = None
        self._deliveries: _Deliveries | None = None  # the batch record_delivery fills
        self._written_deliveries: _Deliveries | None = None  # the one before it
        self._seen_head = 0  # the highest head notified so far: on_appended never goes back
        self._hooks = hooks  # what the store calls, as on SqliteStore (log/base.py)
        # The catalogue version the matcher was last brought up to (-1: never, so the first
        # append reloads it, whatever was loaded before).
        self._catalogue_version = -1
        self._moved_catalogue = False  # a write of the flush under way moved it
        self._nudges: wakeup.Nudges | None = None  # the flush under way's (``_write``)
        self.node = secrets.token_hex(6)  # this process in ``nodes``: every kind of lease

    # -- lifecycle ---------------------------------------------------------------------------

    async def _connect(self) -> Session:
        conn: Session = await asyncpg.connect(self._dsn)
        return conn

    async def open(self, owner: tasks.Tasks | None = None) -> None:
        """Migrate, check the vault's key, connect, and start the writer and the listener,
        watched by ``owner`` (the hub's) or by a private one. Returns once this process
        listens, so no commit after ``open`` goes unheard."""
        owner = owner or tasks.Tasks()
        try:
            conn = await self._connect()
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # At start: one line naming host and database, never the password (log/dsn.py).
            reason = dsn.scrub(str(exc) or type(exc).__name__, self._dsn)
            raise DatabaseUnavailable(
                f"setting 'database': cannot connect to {dsn.where(self._dsn)}: {reason}"
            ) from None
        try:
            await schema.migrate(conn)
            await schema.check_vault(conn, self._vault)
            self._seen_head = int(await conn.fetchval("SELECT last_offset FROM log_head"))
        except asyncpg.PostgresError as exc:
            # E.g. no right to create the tables: one line at start, as for a failed connect.
            await conn.close()
            reason = dsn.scrub(str(exc) or type(exc).__name__, self._dsn)
            raise DatabaseUnavailable(
                f"setting 'database': {dsn.where(self._dsn)}: {reason}"
            ) from None
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        self._writer_pid = conn.get_server_pid()  # our own notifications come from it
        self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=self._pool_size)
        self._writer = GroupCommitWriter(self._write, "log-writer", self._observe_commit)
        self._writer.start(owner)
        listener = wakeup.Listener(
            self._connect,
            self._woken,
            self._wake_all,
            self._subscription_changed,
            on_instances=self._instances_nudged,
            on_process=self._definition_changed,
            on_change=self._changed,
        )
        self._listener = owner.watch("log-listener", listener.run)
        await asyncio.wait_for(listener.ready.wait(), timeout=30)

    async def close(self) -> None:
        """Release everything, each step on its own: a failure is logged, the rest runs."""
        writer, listener = self._writer, self._listener
        self._writer = self._listener = None
        with _logged("stopping the writer"):
            if writer is not None:
                await writer.stop()  # flushes what is queued
        with _logged("stopping the listener"):
            if listener is not None:
                await listener.stop()
        with _logged("closing the pool"):
            if self._pool is not None:
                await self._pool.close()
        self._pool = None
        with _logged("closing the writer connection"):
            if self._conn is not None:
                await self._conn.close()
        self._conn = None

    @property
    def _db(self) -> Connection:
        """The pool, for reads and autocommit statements."""
        assert self._pool is not None, "store is not open"
        pool: Connection = self._pool
        return pool

    def _woken(self, head: int, tids: set[int]) -> None:
        """A commit (of any process) appended up to ``head``, firing ``tids``."""
        if head > self._seen_head:
            self._seen_head = head
            if self._hooks.on_appended is not None:
                self._hooks.on_appended(head)
        if tids and self._hooks.on_commit is not None:
            self._hooks.on_commit(tids)

    async def _wake_all(self) -> None:
        """After the listener reconnected: whatever it missed, every trigger wakes once."""
        tids = {int(r[0]) for r in await self._db.fetch("SELECT tid FROM triggers")}
        self._woken(await self.head(), tids)
        if self._hooks.on_subscription is not None:
            # Actions of other processes went unheard too: every copy is reloaded.
            for row in await self._db.fetch("SELECT id FROM subscriptions"):
                self._hooks.on_subscription(str(row[0]))
        if self._hooks.on_change is not None:
            for kind in wakeup.CHANGE_KINDS:  # keys, sources and the catalogue, reloaded whole
                self._hooks.on_change(kind, None)
        if self._hooks.on_definition is not None:
            self._hooks.on_definition(None)
        if self._hooks.on_instance_ids is not None:
            running = {i.id for i in await pg_instances.running(self._db)}
            self._hooks.on_instance_ids(running, await pg_instances.next_due(self._db))

    # -- the group commit --------------------------------------------------------------------

    async def write(self, op: Callable[[Connection], Awaitable[R]]) -> R:
        """Run ``op`` inside the next group commit; return its result once committed."""
        result: R = await self._writer_or_fail().submit(op)
        return result

    async def transact(self, fn: Callable[[Connection, Emit, CommitClock], Awaitable[R]]) -> R:
        """Run ``fn`` inside the next group commit, with ``emit`` to append events in the
        same transaction; return its result once committed."""
        result: R = await self._writer_or_fail().submit(_Emitting(fn))
        return result

    async def append(self, events: Sequence[NewEvent]) -> list[Appended]:
        if not events:
            return []
        result: list[Appended] = await self._writer_or_fail().submit(_Append(events))
        return result

    def _writer_or_fail(self) -> GroupCommitWriter[WriteOp, Any]:
        assert self._writer is not None, "store is not open"
        return self._writer

    async def _write(self, ops: list[WriteOp]) -> list[Any]:
        """One transaction for every queued write (runs in the writer's task): the events of
        every append together (``append.py``), those naming a process instance correlated
        next, then the other writes in queue order, the lifecycle events they emitted, and
        the notification of what the flush appended and fired."""
        conn = await self._writer_conn()
        now = self._clock.now()
        clock = CommitClock(now, rfc3339(now))
        matched: set[int] = set()
        correlated: pg_instances.Correlated | None = None
        emitted: list[NewEvent] = []
        emit = emitted.extend
        nudges = self._nudges = wakeup.Nudges()
        checked: list[int] = []  # the catalogue version this flush matched at, once read
        self._moved_catalogue = False

        async def at_catalogue(version: int) -> None:
            # Only the first lock of the flush: later, the version moves by our own writes.
            if checked:
                return
            checked.append(version)
            if version != self._catalogue_version and self._hooks.reload_matcher is not None:
                await self._hooks.reload_matcher()

        appends = [op for op in ops if isinstance(op, _Append)]
        # Round trips are most of a flush's time (append.py): no ``conn.transaction()``,
        # whose BEGIN is one of its own; a flush that appends takes the head's lock with it.
        await conn.execute(append.BEGIN_LOCKED if appends else "BEGIN")
        try:
            if appends:
                merged = [event for op in appends for event in op.events]
                appended, _ = await append.append_rows(
                    conn,
                    merged,
                    clock.text,
                    self._hooks.matcher,
                    matched,
                    False,
                    at_catalogue,
                    locked=True,
                )
                if self._hooks.step_names is not None and any(
                    CORRELATION_ATTRIBUTE in e.attributes for e in merged
                ):
                    correlated = await pg_instances.correlate_appended(
                        conn,
                        emit,
                        list(zip(merged, appended, strict=True)),
                        self._hooks.step_names,
                        clock,
                    )
                    appended = [
                        a if word is None else dataclasses.replace(a, correlation=word)
                        for a, word in zip(appended, correlated.receipts, strict=True)
                    ]
                    nudges.add((w.instance.id for w in correlated.woken), correlated.earliest)
                start = 0
                for each in appends:
                    each.result = appended[start : start + len(each.events)]
                    start += len(each.events)
            results: list[Any] = []
            for op in ops:
                if isinstance(op, _Append):
                    results.append(op.result)
                elif isinstance(op, _Emitting):
                    results.append(await op.fn(conn, emit, clock))
                else:
                    results.append(await op(conn))
            if emitted:
                # It notifies the new head with every trigger the flush fired, as the
                # appends' own statement did with theirs.
                await append.append_rows(
                    conn,
                    emitted,
                    clock.text,
                    self._hooks.matcher,
                    matched,
                    True,
                    at_catalogue,
                    locked=bool(appends),
                )
            await nudges.notify(conn)
            await conn.execute("COMMIT")
            if checked and not self._moved_catalogue:
                # Committed: the matcher is at this version. (If this flush moved it, the
                # model's own process installs the change after the commit, so the next
                # append reloads anyway rather than trust an index not yet updated.)
                self._catalogue_version = checked[0]
        except BaseException as exc:
            for queued in ops:
                if isinstance(queued, _Deliveries):
                    queued.written = True  # later deliveries start a batch that is queued
            with _logged("rolling back a failed flush"):
                if not conn.is_closed():
                    await conn.execute("ROLLBACK")
            full = _storage_error(exc)
            if full is None:
                raise
            raise full from exc
        finally:
            self._nudges = None
        if emitted and self._hooks.on_emitted is not None:
            self._hooks.on_emitted(emitted)
        if (
            correlated is not None
            and (correlated.woken or correlated.earliest is not None)
            and self._hooks.on_instances is not None
        ):
            self._hooks.on_instances(correlated.woken, correlated.earliest)
        return results

    async def _writer_conn(self) -> Session:
        """The writer's connection, connected again if it was lost (a restarted server)."""
        if self._conn is None or self._conn.is_closed():
            self._conn = await self._connect()
            self._writer_pid = self._conn.get_server_pid()
        return self._conn

    async def check_writable(self) -> None:
        """Raise unless a real write commits now (``/readyz``): the transaction takes a
        transaction id, so its COMMIT writes and flushes a WAL record."""
        await self.write(lambda conn: conn.fetchval("SELECT txid_current()"))

    # -- the log -----------------------------------------------------------------------------

    async def read_after(self, offset: int, limit: int) -> list[StoredEvent]:
        found = await self._db.fetch(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE event_offset > $1"
            " ORDER BY event_offset LIMIT $2",
            offset,
            limit,
        )
        return [_event_from_row(row) for row in found]

    async def get_latest(self, source: str, id: str) -> StoredEvent | None:
        row = await self._db.fetchrow(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE event_offset ="
            " (SELECT latest_offset FROM event_ids WHERE source = $1 AND id = $2)",
            source,
            id,
        )
        return None if row is None else _event_from_row(row)

    async def read_event(self, offset: int) -> StoredEvent | None:
        """The event at ``offset``, if the log still holds it."""
        found = await self.read_after(offset - 1, 1)
        return found[0] if found and found[0].offset == offset else None

    async def head(self) -> int:
        """The highest offset ever handed out, whatever retention deleted."""
        return int(await self._db.fetchval("SELECT last_offset FROM log_head WHERE id = 1"))

    async def list_traces(self, after: int, limit: int) -> list[traces.TraceSummary]:
        if after <= 0:
            found = await self._db.fetch(
                "SELECT trace_id, events, first_time, last_time, activity FROM traces"
                " ORDER BY activity DESC LIMIT $1",
                limit,
            )
        else:
            found = await self._db.fetch(
                "SELECT trace_id, events, first_time, last_time, activity FROM traces"
                " WHERE activity < $1 ORDER BY activity DESC LIMIT $2",
                after,
                limit,
            )
        return [traces.TraceSummary(r[0], int(r[1]), r[2], r[3], int(r[4])) for r in found]

    async def get_trace(self, trace_id: str) -> list[traces.TraceMember]:
        found = await self._db.fetch(
            "SELECT e.event_offset, e.source, e.id, e.type, m.time, e.attributes, e.revision,"
            " e.data, e.data_kind FROM trace_members AS m"
            " JOIN events AS e ON e.event_offset = m.event_offset"
            " WHERE m.trace_id = $1 ORDER BY m.time_key, m.event_offset",
            trace_id,
        )
        out = []
        for offset, source, id_, type_, time, attributes, revision, data, kind in found:
            group = orjson.loads(attributes).get("group")
            out.append(
                traces.TraceMember(
                    int(offset),
                    source,
                    id_,
                    type_,
                    time,
                    group if isinstance(group, str) else None,
                    int(revision),
                    data,
                    DataKind(kind),
                )
            )
        return out

    # -- the trigger index -------------------------------------------------------------------

    async def read_trigger_after(self, tid: int, offset: int, limit: int) -> list[StoredEvent]:
        """The next events of one trigger after ``offset``, in offset order."""
        found = await self._db.fetch(
            "SELECT e.event_offset, e.revision, e.attributes, e.data, e.data_kind, e.received_at"
            " FROM trigger_events t JOIN events e ON e.event_offset = t.event_offset"
            " WHERE t.tid = $1 AND t.event_offset > $2 ORDER BY t.event_offset LIMIT $3",
            tid,
            offset,
            limit,
        )
        return [_event_from_row(row) for row in found]

    async def trigger_head(self, tid: int) -> int:
        return await rows.trigger_head(self._db, tid)

    async def count_between(self, tid: int, after: int, upto: int) -> int:
        return await rows.count_between(self._db, tid, after, upto)

    async def event_types(self) -> list[dict[str, Any]]:
        return await rows.event_types(self._db)

    # -- retention, backup, figures ----------------------------------------------------------

    async def first_offset(self) -> int:
        return int(await self._db.fetchval(pg_retention.FIRST_OFFSET))

    async def prune(self, older_than: str | None, max_bytes: int | None, limit: int) -> Pruned:
        """As ``SqliteStore.prune``: what may go is read on the pool, off the commit path;
        only the DELETEs of one batch join a group commit."""
        db = self._db
        needed, head = await db.fetchrow(pg_retention.NEEDED_AND_HEAD)
        oversize = max_bytes is not None and int(await db.fetchval(pg_retention.USED_BYTES)) > (
            max_bytes
        )
        bound = int(head) + 1 if needed is None else int(needed)
        oldest = [
            (int(r[0]), str(r[1])) for r in await db.fetch(pg_retention.OLDEST_BELOW, bound, limit)
        ]
        upto = retention.deletable(oldest, older_than, oversize)
        deleted = 0
        if upto is not None:
            through = upto
            deleted = await self.write(lambda conn: pg_retention.delete_through(conn, through))
        held = None
        if needed is not None and len(oldest) < limit and (upto is None or upto == oldest[-1][0]):
            received = await db.fetchval(
                "SELECT received_at FROM events WHERE event_offset = $1", bound
            )
            if received is not None and (
                oversize or (older_than is not None and received < older_than)
            ):
                held = bound
        return Pruned(deleted, await self.first_offset(), held)

    async def snapshot(self, target: Path) -> None:
        raise SnapshotUnsupported(SnapshotUnsupported.ADVICE)

    async def read_figures(self, positions: Iterable[figures.Position]) -> figures.Figures:
        """What ``/metrics`` reads, in one read-only snapshot. ``wal_bytes`` is 0: the WAL
        is the server's, shared by every database on it, not this hub's."""
        wanted = set(positions)
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            head = int(await conn.fetchval("SELECT last_offset FROM log_head WHERE id = 1"))
            size = int(await conn.fetchval(pg_retention.USED_BYTES))
            behind = await _behind(conn, wanted)
            instances = {
                str(r[0]): int(r[1])
                for r in await conn.fetch("SELECT state, COUNT(*) FROM instances GROUP BY state")
            }
        return figures.Figures(head, size, 0, instances, behind)

    # -- keys and sources: rare admin statements -----------------------------------------------
    # Written by the writer, not the pool: the notification that tells the other processes
    # must come from the writer's connection, by whose pid this process knows its own.

    async def put_key(self, key: KeyRecord) -> None:
        await self.write(lambda conn: self._put_key(conn, key))

    async def _put_key(self, conn: Connection, key: KeyRecord) -> None:
        await conn.execute(
            "INSERT INTO api_keys (key_id, hash, name, role, sources, created_at, revoked_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (key_id) DO UPDATE SET"
            " hash = excluded.hash, name = excluded.name, role = excluded.role,"
            " sources = excluded.sources, created_at = excluded.created_at,"
            " revoked_at = excluded.revoked_at",
            key.key_id,
            key.hash,
            key.name,
            key.role,
            None if key.sources is None else orjson.dumps(list(key.sources)).decode(),
            key.created_at,
            key.revoked_at,
        )
        await wakeup.notify_change(conn, "key", key.key_id)

    async def revoke_key(self, key_id: str, at: str) -> bool:
        async def op(conn: Connection) -> bool:
            status = await conn.execute(
                "UPDATE api_keys SET revoked_at = $1 WHERE key_id = $2 AND revoked_at IS NULL",
                at,
                key_id,
            )
            if affected(status) == 0:
                return False
            await wakeup.notify_change(conn, "key", key_id)
            return True

        return await self.write(op)

    async def list_keys(self) -> list[KeyRecord]:
        found = await self._db.fetch(
            "SELECT key_id, hash, name, role, sources, created_at, revoked_at FROM api_keys"
            " ORDER BY created_at, key_id"
        )
        return [
            KeyRecord(
                r[0],
                bytes(r[1]),
                r[2],
                r[3],
                None if r[4] is None else tuple(orjson.loads(r[4])),
                r[5],
                r[6],
            )
            for r in found
        ]

    async def put_source(self, source: SourceRecord) -> None:
        await self.write(lambda conn: self._put_source(conn, source))

    async def _put_source(self, conn: Connection, source: SourceRecord) -> None:
        await conn.execute(
            "INSERT INTO sources (name, secret, require_signature, created_at, max_body_bytes)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO UPDATE SET"
            " secret = excluded.secret, require_signature = excluded.require_signature,"
            " created_at = excluded.created_at, max_body_bytes = excluded.max_body_bytes",
            source.name,
            self._vault.seal(source.secret, sealing.source_secret(source.name)),
            source.require_signature,
            source.created_at,
            source.max_body_bytes,
        )
        await wakeup.notify_change(conn, "source", source.name)

    async def delete_source(self, name: str) -> bool:
        async def op(conn: Connection) -> bool:
            if affected(await conn.execute("DELETE FROM sources WHERE name = $1", name)) == 0:
                return False
            await wakeup.notify_change(conn, "source", name)
            return True

        return await self.write(op)

    async def list_sources(self) -> list[SourceRecord]:
        found = await self._db.fetch(
            "SELECT name, secret, require_signature, created_at, max_body_bytes FROM sources"
            " ORDER BY name"
        )
        return [
            SourceRecord(
                r[0],
                self._vault.unseal(r[1], sealing.source_secret(r[0])),
                bool(r[2]),
                r[3],
                None if r[4] is None else int(r[4]),
            )
            for r in found
        ]

    # -- knowledge models and triggers ---------------------------------------------------------

    async def load_models(self) -> list[tuple[str, dict[str, Any], int]]:
        return await rows.load_models(self._db)

    async def load_published(self) -> list[dict[str, Any]]:
        return await rows.load_published(self._db)

    # Every write notifies "model <km>" (the other processes reload the catalogue); those
    # that change what matches events (publish, delete) also move the catalogue's version,
    # which appends read (the module's docstring says why).

    async def save_draft(self, km: str, draft: dict[str, Any], now: str) -> None:
        async def op(conn: Connection) -> None:
            await rows.save_draft(conn, km, draft, now)
            await wakeup.notify_change(conn, "model", km)

        await self.write(op)

    async def publish(
        self, km: str, snapshot: dict[str, Any], now: str
    ) -> dict[tuple[str, str], int]:
        async def op(conn: Connection) -> dict[tuple[str, str], int]:
            await self._move_catalogue(conn)
            await rows.publish(conn, km, snapshot, now)
            await wakeup.notify_change(conn, "model", km)
            return await rows.trigger_ids(conn)

        return await self.write(op)

    async def delete_model(self, km: str) -> None:
        async def op(conn: Connection) -> None:
            await self._move_catalogue(conn)
            await rows.delete_model(conn, km)
            await wakeup.notify_change(conn, "model", km)

        await self.write(op)

    async def _move_catalogue(self, conn: Connection) -> None:
        """First in a write that changes what matches: takes the log head's row lock, as
        appends do first (one lock order, so no deadlock), and moves the version they read."""
        self._moved_catalogue = True
        await conn.execute(
            "UPDATE log_head SET catalogue_version = catalogue_version + 1 WHERE id = 1"
        )

    async def trigger_ids(self) -> dict[tuple[str, str], int]:
        return await rows.trigger_ids(self._db)

    async def ensure_trigger(self, km: str, trigger: str) -> int:
        async def op(conn: Connection) -> int:
            tid, made = await rows.ensure_trigger(conn, km, trigger)
            if made:  # a new number: the others' trigger ids must know it
                await wakeup.notify_change(conn, "model", km)
            return tid

        return await self.write(op)

    # -- subscriptions and attempts ------------------------------------------------------------

    async def save_subscription(self, sub: Subscription) -> None:
        async def op(conn: Connection) -> None:
            await rows.save_subscription(conn, sub, self._vault)
            await wakeup.notify_subscription(conn, sub.id)  # the other processes reload it

        await self.write(op)

    async def save_delivery(self, sub: Subscription, attempt: Attempt | None) -> None:
        """The subscription's new cursor and counters, and the attempt that moved them."""

        async def op(conn: Connection) -> None:
            await rows.save_progress_of(conn, [sub])
            if attempt is not None:
                await rows.add_attempts(conn, [(sub.id, attempt)])

        await self.write(op)

    def record_delivery(self, sub: Subscription, attempt: Attempt | None) -> None:
        """``save_delivery`` without waiting for the commit; the records that arrive before
        the next flush share one queued write."""
        batch = self._deliveries
        if batch is None or batch.written:
            # The writer flushes one batch at a time, so the one before may still be
            # committing, and none older (``_settle_attempts``).
            self._written_deliveries = batch
            batch = self._deliveries = _Deliveries()
            self._writer_or_fail().enqueue(batch)
        batch.subs[sub.id] = sub
        if attempt is not None:
            batch.attempts.append((sub.id, attempt))

    async def delete_subscription(self, sub_id: str) -> None:
        async def op(conn: Connection) -> None:
            await rows.delete_subscription(conn, sub_id)
            await wakeup.notify_subscription(conn, sub_id)

        await self.write(op)

    def leases(self, lease_seconds: float, kind: Kind | None = None) -> PgLeases:
        """This process's subscription leases on this database (open the store first), or
        its leases of another ``kind`` (the instances' partitions), as the same node."""
        if kind is None:
            return PgLeases(lambda: self._db, self.write, lease_seconds, self.node)
        return PgLeases(lambda: self._db, self.write, lease_seconds, self.node, kind)

    def _nudge(self, ids: Iterable[str] = (), due: float | None = None) -> None:
        """Inside a flush: tell the holders of these instances (``wakeup.Nudges``)."""
        assert self._nudges is not None, "only inside a flush"
        self._nudges.add(ids, due)

    def _instances_nudged(self, pid: int, payload: str) -> None:
        """A notification of ``eventhub_instance``: only another process's is news (this
        process's commits reach its engine by ``on_instances`` and the writes' results)."""
        if pid == self._writer_pid:
            return
        stopped = wakeup.parse_stopped(payload)
        if stopped is not None:
            if self._hooks.on_instances_cancelled is not None:
                self._hooks.on_instances_cancelled(stopped)
            return
        if self._hooks.on_instance_ids is None:
            return
        try:
            ids, due = wakeup.parse_instances(payload)
        except ValueError:
            log.warning("ignored a malformed %s notification", wakeup.INSTANCE_CHANNEL)
            return
        self._hooks.on_instance_ids(ids, due)

    def _definition_changed(self, pid: int, definition_id: str) -> None:
        if pid != self._writer_pid and self._hooks.on_definition is not None:
            self._hooks.on_definition(definition_id)

    def _changed(self, pid: int, payload: str) -> None:
        """A notification of ``wakeup.CHANGE_CHANNEL``: only another process's is news."""
        if pid == self._writer_pid or self._hooks.on_change is None:
            return
        change = wakeup.parse_change(payload)
        if change is None:
            log.warning("ignored a malformed %s notification: %r", wakeup.CHANGE_CHANNEL, payload)
            return
        self._hooks.on_change(*change)

    def _subscription_changed(self, pid: int, sub_id: str) -> None:
        """A notification of ``subscription_channel``: only another process's is news."""
        if pid != self._writer_pid and self._hooks.on_subscription is not None:
            self._hooks.on_subscription(sub_id)

    async def load_subscriptions(self, ids: Collection[str] | None = None) -> list[Subscription]:
        return await rows.load_subscriptions(self._db, self._vault, ids)

    async def list_attempts(self, sub_id: str, limit: int) -> list[Attempt]:
        await self._settle_attempts(sub_id)
        return await rows.list_attempts(self._db, sub_id, limit)

    async def _settle_attempts(self, sub_id: str) -> None:
        """Attempts of ``sub_id`` recorded without waiting (``record_delivery``) and not yet
        committed are committed first, so a read lists every attempt whose effect (the
        delivered count, the cursor) the subscription already shows: an empty write queued
        after them returns once they are durable."""
        if any(
            batch is not None and sub_id in batch.subs
            for batch in (self._deliveries, self._written_deliveries)
        ):
            await self.write(_nothing)

    # -- process definitions and instances (SPEC §6.2; postgres/instances.py) ------------------

    def _names(self) -> StepNames:
        assert self._hooks.step_names is not None, "the process engine is not attached"
        return self._hooks.step_names

    async def load_definitions(
        self,
    ) -> tuple[list[definitions.Stored], list[definitions.Definition]]:
        return await pg_instances.load_definitions(self._db, self._vault)

    async def save_definition(self, stored: definitions.Stored) -> tuple[int, int]:
        filters = stored.definition.start.filters is not None

        async def op(conn: Connection) -> tuple[int, int]:
            await self._move_starts(conn, stored.definition.id, filters)
            saved = await pg_instances.save_definition(conn, stored, self._vault)
            await wakeup.notify_process(conn, stored.definition.id)  # the others reload it
            return saved

        return await self.write(op)

    async def delete_definition(self, definition_id: str) -> None:
        async def op(conn: Connection) -> None:
            await self._move_starts(conn, definition_id, False)
            await pg_instances.delete_definition(conn, definition_id)
            await wakeup.notify_process(conn, definition_id)

        await self.write(op)

    async def _move_starts(self, conn: Connection, definition_id: str, filters: bool) -> None:
        """A definition's start filters are in the match index too: a change of them moves
        the catalogue version like a publish, so every append after the COMMIT, on any
        process, matches the new start (``processes/starting.py``: ``refresh_starts``)."""
        if await pg_instances.move_starts(conn, definition_id, filters):
            self._moved_catalogue = True

    async def definition_starts(self) -> dict[str, tuple[int, int]]:
        return await pg_instances.definition_starts(self._db)

    async def start_instances(
        self, definition_id: str, cursor: int, started: Sequence[tuple[Instance, str | None]]
    ) -> list[str]:
        async def op(conn: Connection, emit: Emit, clock: CommitClock) -> list[str]:
            ids = await pg_instances.start(conn, emit, definition_id, cursor, started, clock)
            self._nudge(ids)  # to the holders of their partitions
            return ids

        return await self.transact(op)

    async def advance_instance(
        self,
        instance_id: str,
        step: int,
        variables: dict[str, Any],
        entries: Sequence[Entry],
        then: Then | None = None,
    ) -> Advanced:
        names = self._names()

        async def op(conn: Connection, emit: Emit, clock: CommitClock) -> Advanced:
            advanced = await pg_instances.advance(
                conn, emit, instance_id, step, variables, entries, names, clock, then
            )
            if then is not None and then.timeout is not None:
                self._waited(advanced.opened, then.timeout, clock)
            return advanced

        return await self.transact(op)

    async def note_instance(self, instance_id: str, entries: Sequence[Entry]) -> None:
        await self.write(lambda conn: pg_instances.note(conn, instance_id, entries))

    async def open_wait(
        self, instance_id: str, step: int, type_: str, timeout_seconds: float | None
    ) -> Opened | None:
        names = self._names()

        async def op(conn: Connection, emit: Emit, clock: CommitClock) -> Opened | None:
            opened = await pg_instances.open_wait(
                conn, emit, instance_id, step, names, type_, timeout_seconds, clock
            )
            if timeout_seconds is not None:
                self._waited(opened, timeout_seconds, clock)
            return opened

        return await self.transact(op)

    def _waited(self, opened: Opened | None, timeout: float, clock: CommitClock) -> None:
        """A wait opened asleep with a timeout: the timer's holder must hear of its due."""
        if opened is not None and opened.offset is None:
            self._nudge(due=clock.now + timeout)

    async def finish_instance(
        self,
        instance_id: str,
        expect: Sequence[State],
        state: State,
        reason: str | None = None,
        step: int | None = None,
    ) -> Instance | None:
        names = self._names()

        async def finish(conn: Connection, emit: Emit, clock: CommitClock) -> Instance | None:
            ended = await pg_instances.finish(
                conn, emit, instance_id, expect, state, names, clock, reason, step
            )
            if ended is not None and state is State.CANCELLED:
                # Its holder may be another process, still calling or retrying: it stops.
                assert self._nudges is not None, "only inside a flush"
                self._nudges.stopped.add(instance_id)
            return ended

        return await self.transact(finish)

    async def expire_instances(self, limit: int) -> int:
        names = self._names()
        return await self.transact(
            lambda conn, emit, clock: pg_instances.expire(conn, emit, names, clock, limit)
        )

    async def next_due(self) -> float | None:
        return await pg_instances.next_due(self._db)

    async def get_instance(self, instance_id: str) -> Instance | None:
        return await pg_instances.get_instance(self._db, instance_id)

    async def load_instance(self, instance_id: str) -> Instance | None:
        return await pg_instances.load_instance(self._db, instance_id)

    async def list_instances(
        self, definition: str | None, state: State | None, after: int, limit: int
    ) -> list[Instance]:
        return await pg_instances.list_instances(self._db, definition, state, after, limit)

    async def running_instances(self) -> list[Instance]:
        return await pg_instances.running(self._db)

    async def live_instances(self, definition_id: str) -> list[str]:
        return await pg_instances.live_of(self._db, definition_id)

    async def list_unrouted(self, after: int, limit: int) -> list[dict[str, Any]]:
        return await pg_instances.list_unrouted(self._db, after, limit)


async def _behind(
    conn: Connection, positions: set[figures.Position]
) -> dict[figures.Position, figures.Behind]:
    """As ``log/figures.py``'s: how far each position is behind its trigger's head."""
    heads: dict[int, int] = {}
    out: dict[figures.Position, figures.Behind] = {}
    for tid, cursor in positions:
        if tid not in heads:
            heads[tid] = await rows.trigger_head(conn, tid)
        if cursor >= heads[tid]:
            continue
        count, first = await conn.fetchrow(
            "SELECT COUNT(*), MIN(event_offset) FROM trigger_events"
            " WHERE tid = $1 AND event_offset > $2",
            tid,
            cursor,
        )
        received = await conn.fetchval(
            "SELECT received_at FROM events WHERE event_offset = $1", first
        )
        out[(tid, cursor)] = figures.Behind(int(count), None if received is None else received)
    return out


@contextlib.contextmanager
def _logged(step: str) -> Iterator[None]:
    """Run one step of a shutdown; a failure is logged and the next step runs anyway."""
    try:
        yield
    except Exception:
        log.exception("%s failed", step)


async def _nothing(_conn: Connection) -> None:
    """A write that writes nothing: it commits after everything queued before it."""
