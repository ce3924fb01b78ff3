"""The SQLite store: WAL, schema migrations (``schema.py``), a group-commit writer (rows in
``append.py``), checkpoints off the commit path (``checkpointer.py``).

Three connections, each for one job: the writer (plain ``sqlite3``, flushed on the loop by
``GroupCommitWriter``), a reader (``aiosqlite``, so long reads never block the loop), and a
checkpointer (``aiosqlite``) that folds the WAL back into the database in the background, so
no ingest commit ever pays for a checkpoint.

A flush writes its rows on the loop (per-row work must not pay a thread hand-off each) and
hands only a durable ``COMMIT`` to a thread of its own: its fsync takes milliseconds on a
slow disk, and sqlite3 lets go of the GIL for it, so the loop parses and delivers meanwhile
instead of standing still. No one hears of a flush's rows before its ``COMMIT`` returns,
and nothing else uses the writer connection while a transaction is open (``_quiet``).

A full disk (SQLITE_FULL, while writing rows, at the COMMIT in the commit thread, or as the
WAL grows) fails the whole flush with ``errors.InsufficientStorage``: the transaction is rolled
back (SQLite may already have done so itself), the offsets it handed out are handed out again,
and reads, on their own connections, go on. The checkpointer survives its own failures, and
after a full disk it truncates the WAL as soon as it can, to give the space back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import sqlite3
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from eventhub import files, tasks, traces
from eventhub.clock import Clock, rfc3339
from eventhub.events import Appended, NewEvent, StoredEvent
from eventhub.log import commit, figures, retention, sealing
from eventhub.log.base import NO_HOOKS, Hooks, StepNames
from eventhub.log.records import KeyRecord, Pruned, SourceRecord
from eventhub.log.sqlite import admin, instances, reads, records
from eventhub.log.sqlite.append import Append, Emitting, WriteOp, append_rows
from eventhub.log.sqlite.checkpointer import Checkpointer
from eventhub.log.sqlite.connections import (
    logged,
    open_async,
    open_pages,
    open_writer,
    storage_error,
    vacuum_into,
)
from eventhub.log.sqlite.deliveries import Deliveries, save_delivery
from eventhub.log.sqlite.schema import migrate
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

# How long the records of deliveries that caught up are held before their write is queued, and
# how many attempts queue it at once (``record_delivery``): ~5 ms of the loop for the write.
DELIVERIES_HOLD = 0.05
DELIVERIES_HELD = 512


def _probe(cur: sqlite3.Cursor) -> None:
    """The smallest real write: page 1 rewritten with the value it holds (a WAL frame)."""
    (version,) = cur.execute("PRAGMA user_version").fetchone()
    cur.execute(f"PRAGMA user_version = {int(version)}")


class SqliteStore:
    def __init__(
        self,
        path: Path,
        clock: Clock,
        synchronous: str = "full",
        checkpoint_interval: float = 1.0,
        *,
        vault: Vault,
        observe_commit: Callable[[int, float], None] | None = None,
        hooks: Hooks = NO_HOOKS,
    ) -> None:
        self._path = path
        self._observe_commit = observe_commit  # the group commit's sizes and times: metrics
        self._vault = vault  # seals secrets on write, opens them at load (log/sealing.py)
        self._clock = clock
        self._synchronous = synchronous.upper()
        self._conn: sqlite3.Connection | None = None
        self._pages: sqlite3.Connection | None = None
        self._durable_commit = self._synchronous == "FULL"  # the pragma open() sets
        self._reader: aiosqlite.Connection | None = None
        self._checkpoints = Checkpointer(path, self._synchronous, checkpoint_interval)
        self._writer: GroupCommitWriter[WriteOp, Any] | None = None
        self._hooks = hooks  # what the store calls: which triggers fire, who to tell
        self._deliveries: Deliveries | None = None  # the batch record_delivery fills
        self._written_deliveries: Deliveries | None = None  # the one before it
        self._hold: asyncio.TimerHandle | None = None  # queues a held batch when it expires
        # Per trigger, an offset at or after its last event (the head of the flush that last
        # appended to it): a cursor there has caught up (``record_delivery``). Unknown until
        # a commit appends to the trigger: until then every record is queued at once.
        self._heads: dict[int, int] = {}
        self._last_offset = 0
        self._committer: concurrent.futures.ThreadPoolExecutor | None = None
        self._quiet = asyncio.Event()  # set: no transaction is open on the writer connection
        self._snapshots = asyncio.Lock()  # one backup at a time: each takes a database's room

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self, owner: tasks.Tasks | None = None) -> None:
        """Open the connections and start the writer and the checkpointer, watched by
        ``owner`` (the hub's) or by a private one."""
        owner = owner or tasks.Tasks()
        # Before SQLite opens anything: it gives -wal and -shm the database file's mode.
        files.secure_database(self._path)
        conn = open_writer(self._path, self._synchronous)
        migrate(conn)
        sealing.seal_plaintext(conn, self._vault)
        # Offsets are handed out here and never reused: the next one follows the highest ever
        # given (AUTOINCREMENT's record of it survives the deletion of old events).
        self._last_offset = int(
            conn.execute(
                "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0),"
                " COALESCE((SELECT MAX(event_offset) FROM events), 0))"
            ).fetchone()[0]
        )
        self._conn = conn
        self._committer = concurrent.futures.ThreadPoolExecutor(1, "log-commit")
        self._quiet.set()
        self._pages = open_pages(self._path)
        self._reader = await open_async(self._path, self._synchronous)
        self._writer = GroupCommitWriter(self._write, "log-writer", self._observe_commit)
        self._writer.start(owner)
        await self._checkpoints.open(owner)

    async def close(self) -> None:
        """Release everything, whatever failed before or fails now: each step on its own, so
        a full disk at the last checkpoint still closes every connection and thread."""
        self._queue_deliveries()  # a held batch goes with the last flush
        writer, self._writer = self._writer, None
        with logged("stopping the writer"):
            if writer is not None:
                await writer.stop()  # flushes what is queued
        with logged("stopping the commit thread"):
            if self._committer is not None:
                self._committer.shutdown(wait=True)  # a COMMIT still running finishes first
                self._committer = None
        with logged("stopping the checkpointer"):
            await self._checkpoints.stop()
        with logged("closing a connection"):
            if self._reader is not None:
                await self._reader.close()
        self._reader = None
        with logged("closing a connection"):
            await self._checkpoints.close()
        with logged("closing the pages connection"):
            if self._pages is not None:
                self._pages.close()
        self._pages = None
        main, self._conn = self._conn, None
        if main is not None:
            try:
                with logged("checkpointing the WAL at close"):
                    if main.in_transaction:
                        main.execute("ROLLBACK")
                    main.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                with logged("closing the writer connection"):
                    main.close()

    # -- the log -----------------------------------------------------------------------------

    async def write(self, op: Callable[[sqlite3.Cursor], R]) -> R:
        """Run ``op`` inside the next group commit; return its result once committed."""
        result: R = await self._writer_or_fail().submit(op)
        return result

    async def transact(self, fn: Callable[[sqlite3.Cursor, commit.Emit, commit.Clock], R]) -> R:
        """Run ``fn`` inside the next group commit, with ``emit`` to append events in the
        same transaction; return its result once committed."""
        result: R = await self._writer_or_fail().submit(Emitting(fn))
        return result

    async def append(self, events: Sequence[NewEvent]) -> list[Appended]:
        if not events:
            return []
        result: list[Appended] = await self._writer_or_fail().submit(Append(events))
        return result

    def append_soon(self, events: Sequence[NewEvent]) -> asyncio.Future[list[Appended]]:
        """``append`` without a coroutine: ``events`` (not empty) queued for the next group
        commit; the future resolves once that commit is durable. For the ingest path served
        from the HTTP protocol's callbacks (api/_direct.py), which has no coroutine to await
        in: a task and a chain of awaiting frames a request cost it ~10% of its CPU."""
        future: asyncio.Future[list[Appended]] = self._writer_or_fail().queue(Append(events))
        return future

    def _writer_or_fail(self) -> GroupCommitWriter[WriteOp, Any]:
        """The writer, for a write about to be queued: held deliveries are queued first, so
        they share its commit and keep their place before it."""
        assert self._writer is not None, "store is not open"
        if self._hold is not None:
            self._queue_deliveries()
        return self._writer

    async def _write(self, ops: list[WriteOp]) -> list[Any]:
        """One transaction for every queued write (runs in the writer's task).

        The events of every append in the flush go through ``append_rows`` together, so a
        flush of 50 single-event requests costs one identity query, not 50. Those that name
        a process instance are correlated next, in the same transaction (the receipt says
        what became of them); then the other writes run, in the order they were queued."""
        assert self._conn is not None
        cur = self._conn.cursor()
        hooks = self._hooks
        last_offset = self._last_offset
        matched: set[int] = set()
        appends = [op for op in ops if isinstance(op, Append)]
        emitting = any(isinstance(op, Emitting) for op in ops)
        self._set_durability(bool(appends) or emitting)
        now = self._clock.now()
        clock = commit.Clock(now, rfc3339(now))
        correlated: instances.Correlated | None = None

        emitted: list[NewEvent] = []  # lifecycle events of the flush's writes: one append
        emit = emitted.extend

        self._quiet.clear()
        try:
            cur.execute("BEGIN IMMEDIATE")
            try:
                if appends:
                    merged = [event for op in appends for event in op.events]
                    appended, self._last_offset = append_rows(
                        cur, merged, clock.text, matched, self._last_offset, hooks.matcher
                    )
                    if hooks.step_names is not None and any(
                        CORRELATION_ATTRIBUTE in e.attributes for e in merged
                    ):
                        correlated = instances.correlate_appended(
                            cur,
                            emit,
                            list(zip(merged, appended, strict=True)),
                            hooks.step_names,
                            clock,
                        )
                        appended = [
                            a if word is None else dataclasses.replace(a, correlation=word)
                            for a, word in zip(appended, correlated.receipts, strict=True)
                        ]
                    start = 0
                    for op in appends:
                        op.result = appended[start : start + len(op.events)]
                        start += len(op.events)
                results = [
                    op.result
                    if isinstance(op, Append)
                    else op.fn(cur, emit, clock)
                    if isinstance(op, Emitting)
                    else op(cur)
                    for op in ops
                ]
                if emitted:
                    _, self._last_offset = append_rows(
                        cur, emitted, clock.text, matched, self._last_offset, hooks.matcher, True
                    )
                if self._durable_commit:
                    await self._commit()
                else:
                    cur.execute("COMMIT")  # no fsync in WAL at synchronous=normal: microseconds
            except asyncio.CancelledError:
                raise  # the COMMIT, if it started, ends in its thread; close() waits for it
            except BaseException as exc:
                self._last_offset = last_offset  # the offsets handed out were not used
                self._roll_back()
                for queued in ops:
                    if isinstance(queued, Deliveries):
                        # Closed, so later deliveries start a batch that is queued; this one
                        # may be dropped (a cursor not saved only re-delivers).
                        queued.written = True
                full = storage_error(exc)
                if full is None:
                    raise
                self._checkpoints.squeezed = True
                raise full from exc
        finally:
            self._quiet.set()
        self._checkpoints.dirty = True
        if self._last_offset > last_offset and hooks.on_appended is not None:
            hooks.on_appended(self._last_offset)
        if emitted and hooks.on_emitted is not None:
            hooks.on_emitted(emitted)
        for tid in matched:
            self._heads[tid] = self._last_offset
        if matched and hooks.on_commit is not None:
            hooks.on_commit(matched)
        if (
            correlated is not None
            and (correlated.woken or correlated.earliest is not None)
            and hooks.on_instances is not None
        ):
            hooks.on_instances(correlated.woken, correlated.earliest)
        return results

    def _roll_back(self) -> None:
        """Roll back the flush's transaction, if SQLite has not already: on a full disk or an
        I/O error it may have, and a ROLLBACK then fails with "no transaction is active"."""
        assert self._conn is not None
        if not self._conn.in_transaction:
            return
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("rollback of a failed flush failed")

    async def check_writable(self) -> None:
        """Raise unless a real (one-page) write commits now: for ``/readyz``."""
        await self.write(_probe)

    async def _commit(self) -> None:
        """``COMMIT`` in the commit thread; returns once it is durable. Only for commits that
        fsync: the hand-off costs tens of microseconds of the loop's time, more than a
        commit without an fsync takes."""
        assert self._conn is not None and self._committer is not None
        done = asyncio.get_running_loop().run_in_executor(
            self._committer, self._conn.execute, "COMMIT"
        )
        # Shielded: a cancelled writer must not leave the thread's COMMIT unobserved.
        await asyncio.shield(done)

    async def _quiet_now(self) -> None:
        """Return when no flush has a transaction open on the writer connection: a statement
        run then would join it, and could read rows whose COMMIT may still fail."""
        while not self._quiet.is_set():
            await self._quiet.wait()

    def _set_durability(self, events: bool) -> None:
        """With ``synchronous = full``, only commits that hold events pay for an fsync. A
        commit of cursors and attempts alone survives a crash of the process either way (WAL,
        synchronous = normal); after a power loss it could only roll a cursor back, which
        re-delivers and never skips."""
        want = events and self._synchronous == "FULL"
        if want != self._durable_commit:
            assert self._conn is not None
            self._conn.execute(f"PRAGMA synchronous = {'FULL' if want else 'NORMAL'}")
            self._durable_commit = want

    async def read_after(self, offset: int, limit: int) -> list[StoredEvent]:
        assert self._reader is not None
        return await reads.read_after(self._reader, offset, limit)

    async def get_latest(self, source: str, id: str) -> StoredEvent | None:
        assert self._reader is not None
        return await reads.get_latest(self._reader, source, id)

    async def list_traces(self, after: int, limit: int) -> list[traces.TraceSummary]:
        assert self._reader is not None
        return await reads.list_traces(self._reader, after, limit)

    async def get_trace(self, trace_id: str) -> list[traces.TraceMember]:
        assert self._reader is not None
        return await reads.get_trace(self._reader, trace_id)

    async def read_figures(self, positions: Iterable[figures.Position]) -> figures.Figures:
        """What ``/metrics`` reads of the database, in a thread on a connection of its own."""
        return await asyncio.to_thread(figures.read, self._path, list(positions))

    async def head(self) -> int:
        return int(await self._scalar(reads.HEAD))

    async def _scalar(
        self, sql: str, params: Sequence[Any] = (), conn: aiosqlite.Connection | None = None
    ) -> Any:
        """The first column of the first row of a read (on the reader connection, unless
        ``conn`` says which)."""
        conn = conn or self._reader
        assert conn is not None
        return await reads.scalar(conn, sql, params)

    # -- retention and backup (log/retention.py) -------------------------------------------------

    async def first_offset(self) -> int:
        return int(await self._scalar(retention.FIRST_OFFSET))

    async def prune(self, older_than: str | None, max_bytes: int | None, limit: int) -> Pruned:
        """What may go is worked out off the commit path, on the checkpointer's connection
        (idle but for a PRAGMA a second: the bound over 10,000 subscriptions takes ~30 ms,
        which API reads on the reader connection would queue behind); only the DELETEs of one
        batch join a group commit. Needs only move forward (log/retention.py), so a bound
        read a moment before the write still holds when it commits."""
        conn = self._checkpoints.conn
        assert conn is not None
        async with conn.execute(retention.NEEDED_AND_HEAD) as cursor:
            needed, head = await cursor.fetchone() or (None, 0)
        oversize = (
            max_bytes is not None and await self._scalar(retention.USED_BYTES, (), conn) > max_bytes
        )
        bound = int(head) + 1 if needed is None else int(needed)
        async with conn.execute(retention.OLDEST_BELOW, (bound, limit)) as cursor:
            rows = [(int(r[0]), str(r[1])) for r in await cursor.fetchall()]
        upto = retention.deletable(rows, older_than, oversize)
        deleted = 0
        if upto is not None:
            through = upto
            deleted = await self.write(lambda cur: retention.delete_through(cur, through))
        held = None
        if needed is not None and len(rows) < limit and (upto is None or upto == rows[-1][0]):
            # Every event below the bound went: would the needed one have gone too?
            received = await self._scalar(
                "SELECT received_at FROM events WHERE event_offset = ?", (bound,), conn
            )
            if received is not None and (
                oversize or (older_than is not None and received < older_than)
            ):
                held = bound
        return Pruned(deleted, await self.first_offset(), held)

    async def snapshot(self, target: Path) -> None:
        async with self._snapshots:
            try:
                await asyncio.to_thread(vacuum_into, self._path, target)
            except sqlite3.Error as exc:
                full = storage_error(exc)
                if full is None:
                    raise
                raise full from exc

    # -- keys and sources --------------------------------------------------------------------
    # Rare admin writes: they go through the writer connection directly, between flushes (an
    # autocommit statement each, after any flush's COMMIT has returned).

    async def _execute(self, statement: Callable[[sqlite3.Connection], int]) -> int:
        await self._quiet_now()
        assert self._conn is not None
        try:
            return statement(self._conn)
        except sqlite3.Error as exc:
            full = storage_error(exc)
            if full is None:
                raise
            raise full from exc

    async def put_key(self, key: KeyRecord) -> None:
        await self._execute(lambda conn: admin.put_key(conn, key))

    async def revoke_key(self, key_id: str, at: str) -> bool:
        return await self._execute(lambda conn: admin.revoke_key(conn, key_id, at)) > 0

    async def list_keys(self) -> list[KeyRecord]:
        assert self._conn is not None
        await self._quiet_now()
        return admin.list_keys(self._conn)

    async def put_source(self, source: SourceRecord) -> None:
        await self._execute(lambda conn: admin.put_source(conn, source, self._vault))

    async def delete_source(self, name: str) -> bool:
        return await self._execute(lambda conn: admin.delete_source(conn, name)) > 0

    async def list_sources(self) -> list[SourceRecord]:
        assert self._conn is not None
        await self._quiet_now()
        return admin.list_sources(self._conn, self._vault)

    # -- catalog, subscriptions, attempts ------------------------------------------------------
    # Reads of these small tables run on the writer's connection between flushes (microseconds);
    # writes join the group commit.

    async def _read(self, fn: Callable[[sqlite3.Cursor], R]) -> R:
        await self._quiet_now()
        assert self._conn is not None
        return fn(self._conn.cursor())

    async def load_models(self) -> list[tuple[str, dict[str, Any], int]]:
        return await self._read(records.load_models)

    async def load_published(self) -> list[dict[str, Any]]:
        return await self._read(records.load_published)

    async def save_draft(self, km: str, draft: dict[str, Any], now: str) -> None:
        await self.write(lambda cur: records.save_draft(cur, km, draft, now))

    async def publish(
        self, km: str, snapshot: dict[str, Any], now: str
    ) -> dict[tuple[str, str], int]:
        def op(cur: sqlite3.Cursor) -> dict[tuple[str, str], int]:
            records.publish(cur, km, snapshot, now)
            return records.trigger_ids(cur)

        return await self.write(op)

    async def delete_model(self, km: str) -> None:
        await self.write(lambda cur: records.delete_model(cur, km))

    async def trigger_ids(self) -> dict[tuple[str, str], int]:
        return await self._read(records.trigger_ids)

    async def ensure_trigger(self, km: str, trigger: str) -> int:
        def op(cur: sqlite3.Cursor) -> int:
            cur.execute("INSERT OR IGNORE INTO triggers (km, trigger) VALUES (?, ?)", (km, trigger))
            (tid,) = cur.execute(
                "SELECT tid FROM triggers WHERE km = ? AND trigger = ?", (km, trigger)
            ).fetchone()
            return int(tid)

        return await self.write(op)

    async def save_subscription(self, sub: Subscription) -> None:
        await self.write(lambda cur: records.save_subscription(cur, sub, self._vault))

    async def save_delivery(self, sub: Subscription, attempt: Attempt | None) -> None:
        """The subscription's new cursor and counters, and the attempt that moved them."""
        await self.write(lambda cur: save_delivery(cur, sub, attempt))

    async def delete_subscription(self, sub_id: str) -> None:
        await self.write(lambda cur: records.delete_subscription(cur, sub_id))

    async def load_subscriptions(self, ids: Collection[str] | None = None) -> list[Subscription]:
        return await self._read(lambda cur: records.load_subscriptions(cur, self._vault, ids))

    async def list_attempts(self, sub_id: str, limit: int) -> list[Attempt]:
        await self._settle_attempts(sub_id)
        return await self._read(lambda cur: records.list_attempts(cur, sub_id, limit))

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

    async def trigger_head(self, tid: int) -> int:
        return await self._read(lambda cur: records.trigger_head(cur, tid))

    async def count_between(self, tid: int, after: int, upto: int) -> int:
        return await self._read(lambda cur: records.count_between(cur, tid, after, upto))

    async def event_types(self) -> list[dict[str, Any]]:
        return await self._read(records.event_types)

    async def read_trigger_after(self, tid: int, offset: int, limit: int) -> list[StoredEvent]:
        """The next events of one trigger after ``offset``, in offset order."""
        assert self._pages is not None
        return reads.read_trigger_after(self._pages, tid, offset, limit)

    def record_delivery(self, sub: Subscription, attempt: Attempt | None) -> None:
        """Like ``save_delivery``, without waiting for the commit: for a cursor moving forward
        after a 2xx, where a crash before the commit only means a re-delivery.

        The records share one write (two ``executemany`` for hundreds of deliveries). A
        subscription with more to deliver queues that write at once, so a crash re-delivers
        only what was in flight, as before. One that has caught up with its trigger (a
        fan-out: 10,000 subscriptions each delivering the one new event) lets the write wait
        for up to ``DELIVERIES_HOLD`` seconds, ``DELIVERIES_HELD`` attempts, its own next
        delivery, or any other write (it goes first, in the same commit): a commit's cost is
        in the pages it dirties (a subscription's row, its attempts' leaf), and queued as soon
        as the writer was free a fan-out committed ~50 deliveries at a time, at ~3x the cost
        a delivery of 500 (measured on a copy of the schema). A crash in that window
        re-delivers that subscription's last page, once. A read of the attempts
        (``_settle_attempts``) queues a write, so it still lists them all."""
        batch = self._deliveries
        if batch is None or batch.written:
            # The writer flushes one batch at a time, so the one before may still be
            # committing, and none older (``_settle_attempts``).
            assert self._writer is not None, "store is not open"
            self._written_deliveries = batch
            batch = self._deliveries = Deliveries()
        again = sub.id in batch.subs
        batch.subs[sub.id] = sub
        if attempt is not None:
            batch.attempts.append((sub.id, attempt))
        if batch.queued:
            return  # it fills on until the writer takes it
        head = self._heads.get(sub.tid)
        if again or head is None or sub.cursor < head or len(batch.attempts) >= DELIVERIES_HELD:
            self._queue_deliveries()
        elif self._hold is None:
            self._hold = asyncio.get_running_loop().call_later(
                DELIVERIES_HOLD, self._queue_deliveries
            )

    def _queue_deliveries(self) -> None:
        """Hand the held batch, if any, to the writer (it fills on until it is written)."""
        hold, self._hold = self._hold, None
        if hold is not None:
            hold.cancel()
        batch = self._deliveries
        if batch is not None and not batch.queued and self._writer is not None:
            batch.queued = True
            self._writer.enqueue(batch)

    # -- process definitions and instances (SPEC §6.2; log/sqlite/instances.py) ---------------------

    def _names(self) -> StepNames:
        assert self._hooks.step_names is not None, "no process engine: no step_names hook"
        return self._hooks.step_names

    async def load_definitions(
        self,
    ) -> tuple[list[definitions.Stored], list[definitions.Definition]]:
        return await self._read(lambda cur: instances.load_definitions(cur, self._vault))

    async def save_definition(self, stored: definitions.Stored) -> tuple[int, int]:
        return await self.write(lambda cur: instances.save_definition(cur, stored, self._vault))

    async def delete_definition(self, definition_id: str) -> None:
        await self.write(lambda cur: instances.delete_definition(cur, definition_id))

    async def definition_starts(self) -> dict[str, tuple[int, int]]:
        return await self._read(instances.definition_starts)

    async def start_instances(
        self, definition_id: str, cursor: int, started: Sequence[tuple[Instance, str | None]]
    ) -> list[str]:
        return await self.transact(
            lambda cur, emit, clock: instances.start(
                cur, emit, definition_id, cursor, started, clock
            )
        )

    async def advance_instance(
        self,
        instance_id: str,
        step: int,
        variables: dict[str, Any],
        entries: Sequence[Entry],
        then: Then | None = None,
    ) -> Advanced:
        names = self._names()
        return await self.transact(
            lambda cur, emit, clock: instances.advance(
                cur, emit, instance_id, step, variables, entries, names, clock, then
            )
        )

    async def note_instance(self, instance_id: str, entries: Sequence[Entry]) -> None:
        await self.write(lambda cur: instances.note(cur, instance_id, entries))

    async def open_wait(
        self, instance_id: str, step: int, type_: str, timeout_seconds: float | None
    ) -> Opened | None:
        names = self._names()
        return await self.transact(
            lambda cur, emit, clock: instances.open_wait(
                cur, emit, instance_id, step, names, type_, timeout_seconds, clock
            )
        )

    async def finish_instance(
        self,
        instance_id: str,
        expect: Sequence[State],
        state: State,
        reason: str | None = None,
        step: int | None = None,
    ) -> Instance | None:
        names = self._names()
        return await self.transact(
            lambda cur, emit, clock: instances.finish(
                cur, emit, instance_id, expect, state, names, clock, reason, step
            )
        )

    async def expire_instances(self, limit: int) -> int:
        names = self._names()
        return await self.transact(
            lambda cur, emit, clock: instances.expire(cur, emit, names, clock, limit)
        )

    async def next_due(self) -> float | None:
        return await self._read(instances.next_due)

    async def get_instance(self, instance_id: str) -> Instance | None:
        return await self._read(lambda cur: instances.get_instance(cur, instance_id))

    async def load_instance(self, instance_id: str) -> Instance | None:
        return await self._read(lambda cur: instances.load_instance(cur, instance_id))

    async def list_instances(
        self, definition: str | None, state: State | None, after: int, limit: int
    ) -> list[Instance]:
        return await self._read(
            lambda cur: instances.list_instances(cur, definition, state, after, limit)
        )

    async def running_instances(self) -> list[Instance]:
        return await self._read(instances.running)

    async def live_instances(self, definition_id: str) -> list[str]:
        return await self._read(lambda cur: instances.live_of(cur, definition_id))

    async def list_unrouted(self, after: int, limit: int) -> list[dict[str, Any]]:
        return await self._read(lambda cur: instances.list_unrouted(cur, after, limit))

    async def read_event(self, offset: int) -> StoredEvent | None:
        """The event at ``offset``, if the log still holds it."""
        found = await self.read_after(offset - 1, 1)
        return found[0] if found and found[0].offset == offset else None


def _nothing(_cur: sqlite3.Cursor) -> None:
    """A write that writes nothing: it commits after everything queued before it."""
