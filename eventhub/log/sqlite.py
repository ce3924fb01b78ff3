"""The SQLite store: WAL, schema migrations, a group-commit writer, checkpoints off the
commit path.

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
import contextlib
import dataclasses
import importlib.resources
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import orjson

from eventhub import errors, files, tasks, traces
from eventhub.clock import Clock, rfc3339
from eventhub.events import Appended, DataKind, NewEvent, StoredEvent
from eventhub.log import figures, instances, records, retention, sealing
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
    Woken,
)
from eventhub.vault import Vault

log = logging.getLogger(__name__)

_EVENT_COLUMNS = "event_offset, revision, attributes, data, data_kind, received_at"

_UPSERT_ID = (
    "INSERT INTO event_ids (source, id, latest_offset, revision, digest) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (source, id) DO UPDATE SET latest_offset = excluded.latest_offset,"
    " revision = excluded.revision, digest = excluded.digest"
)
_KEYS_PER_QUERY = 400
_SQLITE_FULL = 13  # "database or disk is full": the disk, or max_page_count


def storage_error(exc: BaseException) -> errors.InsufficientStorage | None:
    """The 507 a SQLite error stands for, if it says the storage is full."""
    if isinstance(exc, sqlite3.Error) and (exc.sqlite_errorcode & 0xFF) == _SQLITE_FULL:
        return errors.InsufficientStorage(
            "the database's disk is full; nothing of this request was stored, retry later"
        )
    return None


def _probe(cur: sqlite3.Cursor) -> None:
    """The smallest real write: page 1 rewritten with the value it holds (a WAL frame)."""
    (version,) = cur.execute("PRAGMA user_version").fetchone()
    cur.execute(f"PRAGMA user_version = {int(version)}")


def _latest_of(
    cur: sqlite3.Cursor, keys: set[tuple[str, str]]
) -> dict[tuple[str, str], tuple[int, int, bytes]]:
    """(latest offset, revision, digest) of every already known (source, id) among ``keys``."""
    found: dict[tuple[str, str], tuple[int, int, bytes]] = {}
    ordered = list(keys)
    for start in range(0, len(ordered), _KEYS_PER_QUERY):
        chunk = ordered[start : start + _KEYS_PER_QUERY]
        marks = ",".join(["(?, ?)"] * len(chunk))
        rows = cur.execute(
            "SELECT e.source, e.id, e.latest_offset, e.revision, e.digest"
            f" FROM (VALUES {marks}) AS k CROSS JOIN event_ids AS e"
            " ON e.source = k.column1 AND e.id = k.column2",
            [part for key in chunk for part in key],
        )
        for source, id_, offset, revision, digest in rows:
            found[(source, id_)] = (offset, revision, digest)
    return found


_INSERT_EVENT = (
    "INSERT INTO events (event_offset, source, id, revision, type, attributes, data, data_kind,"
    " received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

_JOIN_TRACE = (
    "INSERT INTO trace_members (source, id, trace_id, time_key, time, event_offset)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
_LEAVE_TRACE = "DELETE FROM trace_members WHERE source = ? AND id = ?"
_COUNT_JOINS = (
    "INSERT INTO traces (trace_id, events, first_key, first_time, last_key, last_time, activity)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (trace_id) DO UPDATE SET"
    " events = events + excluded.events,"
    " first_time = CASE WHEN excluded.first_key < first_key THEN excluded.first_time"
    " ELSE first_time END,"
    " first_key = min(first_key, excluded.first_key),"
    " last_time = CASE WHEN excluded.last_key >= last_key THEN excluded.last_time"
    " ELSE last_time END,"
    " last_key = max(last_key, excluded.last_key),"
    " activity = max(activity, excluded.activity)"
)


def _write_members(
    cur: sqlite3.Cursor, leave: Iterable[tuple[str, str]], joins: Iterable[tuple[Any, ...]]
) -> None:
    """A flush's trace memberships in three executemany: ``leave`` (every (source, id) that
    was in the log before the flush and has a new revision: out of its trace, if any; the
    trigger of 0005_traces.sql recomputes that trace), then ``joins`` (the final membership
    row of each event with a traceid, none of them a member now), then one summary upsert
    per trace joined. The joins have higher offsets than every member already there, so
    they only push a trace's bounds and activity outwards (ties in time go to the higher
    offset: trace order is time, then offset)."""
    leave = list(leave)
    if leave:
        cur.executemany(_LEAVE_TRACE, leave)
    rows = sorted(joins, key=lambda r: r[5])
    if not rows:
        return
    cur.executemany(_JOIN_TRACE, rows)
    summary: dict[str, list[Any]] = {}
    for _, _, trace, key, time, offset in rows:  # by offset: each row the latest so far
        found = summary.get(trace)
        if found is None:
            summary[trace] = [trace, 1, key, time, key, time, offset]
            continue
        found[1] += 1
        if key < found[2]:
            found[2], found[3] = key, time
        if key >= found[4]:
            found[4], found[5] = key, time
        found[6] = offset
    cur.executemany(_COUNT_JOINS, list(summary.values()))


R = TypeVar("R")


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

    def __call__(self, cur: sqlite3.Cursor) -> None:
        # Idempotent, so the writer may run it again alone after a failed group commit:
        # progress is each subscription's current state, attempts replace themselves.
        self.written = True
        records.save_progress_of(cur, self.subs.values())
        records.add_attempts(cur, self.attempts)


class _Emitting:
    """A write that may append events of its own (an instance's lifecycle events) in the
    same transaction: ``fn(cursor, emit, clock)``."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[sqlite3.Cursor, instances.Emit, instances.Clock], Any]):
        self.fn = fn


# A write: runs inside the group commit's transaction, on the writer's cursor.
WriteOp = Callable[[sqlite3.Cursor], Any] | _Append | _Emitting
Matcher = Callable[[dict[str, Any]], Iterable[int]]


def _migrations() -> list[tuple[int, str]]:
    folder = importlib.resources.files("eventhub.log") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text("utf-8")))
    return sorted(found)


def _statements(script: str) -> Iterator[str]:
    """The statements of a migration, one at a time: split at ``;`` line ends, joined again
    while SQLite says a piece is incomplete (a trigger's body holds ``;`` line ends too)."""
    pending = ""
    for piece in script.split(";\n"):
        pending += piece + ";\n"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending
            pending = ""
    if pending.strip(" \n;"):
        yield pending


def _trace_existing_events(conn: sqlite3.Connection) -> None:
    """Schema 5: the events already in the log join their traces, as if appended now (one
    pass over the latest revisions, once, at the upgrade; the trace time key needs Python)."""
    rows = conn.execute(
        "SELECT e.source, e.id, e.attributes, e.received_at, e.event_offset FROM event_ids AS i"
        " JOIN events AS e ON e.event_offset = i.latest_offset ORDER BY e.event_offset"
    )
    members = []
    for source, id_, attributes, received_at, offset in rows:
        parsed = orjson.loads(attributes)
        trace = traces.trace_of(parsed)
        if trace is not None:
            time = parsed.get("time")
            stamp = time if isinstance(time, str) else received_at
            members.append((source, id_, trace, traces.time_key(stamp), stamp, offset))
    _write_members(conn.cursor(), (), members)


# Python steps of a migration, in its transaction, after its SQL.
_AFTER_MIGRATION: dict[int, Callable[[sqlite3.Connection], None]] = {5: _trace_existing_events}


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to the newest version, one migration a transaction."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    for number, script in _migrations():
        if number <= version:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(script):
                conn.execute(statement)
            after = _AFTER_MIGRATION.get(number)
            if after is not None:
                after(conn)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.info("database migrated to schema version %d", number)
        version = number
    return int(version)


def _event_from_row(row: Sequence[Any]) -> StoredEvent:
    offset, revision, attributes, data, kind, received_at = row
    return StoredEvent(
        offset, revision, orjson.loads(attributes), data, DataKind(kind), received_at
    )


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
    ) -> None:
        self._path = path
        self._observe_commit = observe_commit  # the group commit's sizes and times: metrics
        self._vault = vault  # seals secrets on write, opens them at load (log/sealing.py)
        self._clock = clock
        self._synchronous = synchronous.upper()
        self._checkpoint_interval = checkpoint_interval
        self._conn: sqlite3.Connection | None = None
        self._pages: sqlite3.Connection | None = None
        self._durable_commit = self._synchronous == "FULL"  # the pragma open() sets
        self._reader: aiosqlite.Connection | None = None
        self._checkpoint_conn: aiosqlite.Connection | None = None
        self._writer: GroupCommitWriter[WriteOp, Any] | None = None
        # Set by the hub: which triggers an event matches, and who to tell after a commit.
        self.matcher: Matcher | None = None
        self.on_commit: Callable[[set[int]], None] | None = None
        # Set by the process engine: step ids for history lines, and who to tell after a
        # commit that woke instances or buffered events for them (earliest new expiry).
        self.step_names: instances.StepNames | None = None
        self.on_instances: Callable[[list[Woken], float | None], None] | None = None
        # Set by the hub: the log's new head after every commit that appended (long polls).
        self.on_appended: Callable[[int], None] | None = None
        # Set by the hub: the lifecycle events a commit made, once committed (ops/logs.py).
        self.on_emitted: Callable[[list[NewEvent]], None] | None = None
        self._checkpointer: tasks.Watched | None = None
        self._squeezed = False  # a write failed on a full disk: truncate the WAL when possible
        self._deliveries: _Deliveries | None = None  # the batch record_delivery fills
        self._dirty = False
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
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        conn.execute("PRAGMA wal_autocheckpoint = 0")  # the checkpointer task does it
        conn.execute("PRAGMA busy_timeout = 5000")
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
        # Trigger pages are small and read constantly by supervisors: a plain connection on
        # the loop reads one in microseconds, where a thread hand-off costs ~100 us.
        self._pages = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        self._pages.execute("PRAGMA busy_timeout = 5000")
        self._reader = await self._connect()
        self._writer = GroupCommitWriter(self._write, "log-writer", self._observe_commit)
        self._writer.start(owner)
        self._checkpoint_conn = await self._connect()
        self._checkpointer = owner.watch("log-checkpointer", self._checkpoint_loop)

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self._path, isolation_level=None)
        await conn.execute("PRAGMA busy_timeout = 5000")
        await conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        return conn

    async def close(self) -> None:
        """Release everything, whatever failed before or fails now: each step on its own, so
        a full disk at the last checkpoint still closes every connection and thread."""
        writer, checkpointer = self._writer, self._checkpointer
        self._writer = self._checkpointer = None
        with _logged("stopping the writer"):
            if writer is not None:
                await writer.stop()  # flushes what is queued
        with _logged("stopping the commit thread"):
            if self._committer is not None:
                self._committer.shutdown(wait=True)  # a COMMIT still running finishes first
                self._committer = None
        with _logged("stopping the checkpointer"):
            if checkpointer is not None:
                await checkpointer.stop()
        for conn in (self._reader, self._checkpoint_conn):
            with _logged("closing a connection"):
                if conn is not None:
                    await conn.close()
        self._reader = self._checkpoint_conn = None
        with _logged("closing the pages connection"):
            if self._pages is not None:
                self._pages.close()
        self._pages = None
        main, self._conn = self._conn, None
        if main is not None:
            try:
                with _logged("checkpointing the WAL at close"):
                    if main.in_transaction:
                        main.execute("ROLLBACK")
                    main.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                with _logged("closing the writer connection"):
                    main.close()

    async def _checkpoint_loop(self) -> None:
        """Fold the WAL into the database when something was written. A failed checkpoint
        (a full disk) is logged and tried again on the next tick; after a full disk the
        checkpoint also truncates the WAL, so the space it took comes back."""
        assert self._checkpoint_conn is not None
        while True:
            await asyncio.sleep(self._checkpoint_interval)
            if not (self._dirty or self._squeezed):
                continue
            self._dirty = False
            squeezed = self._squeezed
            mode = "TRUNCATE" if squeezed else "PASSIVE"
            try:
                async with self._checkpoint_conn.execute(f"PRAGMA wal_checkpoint({mode})") as c:
                    row = await c.fetchone()
            except sqlite3.Error as exc:
                self._dirty = True
                log.warning(
                    "checkpoint failed, retrying in %g s: %s", self._checkpoint_interval, exc
                )
                continue
            if squeezed and row is not None and row[0] == 0:
                self._squeezed = False
                log.info("WAL truncated after a full disk")

    # -- the log -----------------------------------------------------------------------------

    async def write(self, op: Callable[[sqlite3.Cursor], R]) -> R:
        """Run ``op`` inside the next group commit; return its result once committed."""
        result: R = await self._writer_or_fail().submit(op)
        return result

    async def transact(
        self, fn: Callable[[sqlite3.Cursor, instances.Emit, instances.Clock], R]
    ) -> R:
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
        """One transaction for every queued write (runs in the writer's task).

        The events of every append in the flush go through ``_append_rows`` together, so a
        flush of 50 single-event requests costs one identity query, not 50. Those that name
        a process instance are correlated next, in the same transaction (the receipt says
        what became of them); then the other writes run, in the order they were queued."""
        assert self._conn is not None
        cur = self._conn.cursor()
        last_offset = self._last_offset
        matched: set[int] = set()
        appends = [op for op in ops if isinstance(op, _Append)]
        emitting = any(isinstance(op, _Emitting) for op in ops)
        self._set_durability(bool(appends) or emitting)
        now = self._clock.now()
        clock = instances.Clock(now, rfc3339(now))
        correlated: instances.Correlated | None = None

        emitted: list[NewEvent] = []  # lifecycle events of the flush's writes: one append
        emit = emitted.extend

        self._quiet.clear()
        try:
            cur.execute("BEGIN IMMEDIATE")
            try:
                if appends:
                    merged = [event for op in appends for event in op.events]
                    appended = self._append_rows(cur, merged, clock.text, matched)
                    if self.step_names is not None and any(
                        CORRELATION_ATTRIBUTE in e.attributes for e in merged
                    ):
                        correlated = instances.correlate_appended(
                            cur,
                            emit,
                            list(zip(merged, appended, strict=True)),
                            self.step_names,
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
                    if isinstance(op, _Append)
                    else op.fn(cur, emit, clock)
                    if isinstance(op, _Emitting)
                    else op(cur)
                    for op in ops
                ]
                if emitted:
                    self._append_rows(cur, emitted, clock.text, matched, fresh=True)
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
                    if isinstance(queued, _Deliveries):
                        # Closed, so later deliveries start a batch that is queued; this one
                        # may be dropped (a cursor not saved only re-delivers).
                        queued.written = True
                full = storage_error(exc)
                if full is None:
                    raise
                self._squeezed = True
                raise full from exc
        finally:
            self._quiet.set()
        self._dirty = True
        if self._last_offset > last_offset and self.on_appended is not None:
            self.on_appended(self._last_offset)
        if emitted and self.on_emitted is not None:
            self.on_emitted(emitted)
        if matched and self.on_commit is not None:
            self.on_commit(matched)
        if (
            correlated is not None
            and (correlated.woken or correlated.earliest is not None)
            and self.on_instances is not None
        ):
            self.on_instances(correlated.woken, correlated.earliest)
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

    def _append_rows(
        self,
        cur: sqlite3.Cursor,
        events: Sequence[NewEvent],
        received_at: str,
        matched: set[int],
        fresh: bool = False,
    ) -> list[Appended]:
        # Identity for the whole batch in one query, then two executemany: a statement per
        # row would cost three times as much (PERF-NOTES.md: batch, never per row). The hub's
        # own events (``fresh``: a random id each) are new by construction: no query.
        known = {} if fresh else _latest_of(cur, {(e.source, e.id) for e in events})
        touched: dict[tuple[str, str], tuple[int, int, bytes]] = {}
        out: list[Appended] = []
        rows: list[tuple[Any, ...]] = []
        classes: dict[tuple[str, str, str], int] = {}
        links: list[tuple[int, int]] = []
        # Trace membership: the final row of each (source, id) with a traceid, and the ones
        # that were in the log before this flush and get a new revision (_write_members).
        members: dict[tuple[str, str], tuple[Any, ...]] = {}
        leave: list[tuple[str, str]] = []
        first_new = self._last_offset + 1
        offset = self._last_offset
        for event in events:
            key = (event.source, event.id)
            previous = known.get(key)
            if previous is not None and previous[2] == event.digest:
                out.append(Appended(previous[0], previous[1], duplicate=True))
                continue
            offset += 1
            revision = 1 if previous is None else previous[1] + 1
            known[key] = touched[key] = (offset, revision, event.digest)
            out.append(Appended(offset, revision, duplicate=False))
            attributes = event.attributes
            rows.append(
                (
                    offset,
                    key[0],
                    key[1],
                    revision,
                    event.type,
                    orjson.dumps(attributes),
                    event.data,
                    int(event.kind),
                    received_at,
                )
            )
            if previous is not None:
                # A new revision leaves its trace, if any, and joins again below if it has
                # a traceid: a re-ingest costs a primary-key probe, a new event nothing.
                if previous[0] < first_new:
                    leave.append(key)
                else:
                    members.pop(key, None)  # an earlier revision in this very flush
            trace = attributes.get("traceid")
            if trace is not None and isinstance(trace, str) and trace:
                time = attributes.get("time")
                stamp = time if isinstance(time, str) else received_at
                members[key] = (key[0], key[1], trace, traces.time_key(stamp), stamp, offset)
            group = attributes.get("group")
            cls = (event.type, key[0], group if isinstance(group, str) else "")
            classes[cls] = classes.get(cls, 0) + 1
            if self.matcher is not None:
                for tid in self.matcher(attributes):
                    links.append((tid, offset))
                    matched.add(tid)
        self._last_offset = offset
        if rows:
            cur.executemany(_INSERT_EVENT, rows)
            cur.executemany(
                _UPSERT_ID, [(s, i, off, rev, dig) for (s, i), (off, rev, dig) in touched.items()]
            )
        if members or leave:
            _write_members(cur, leave, members.values())
        if links:
            cur.executemany("INSERT INTO trigger_events (tid, event_offset) VALUES (?, ?)", links)
        if classes:
            cur.executemany(
                "INSERT INTO event_types (type, source, grp, count, first_seen, last_seen)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (type, source, grp) DO UPDATE SET"
                " count = count + excluded.count, last_seen = excluded.last_seen",
                [(t, s, g, n, received_at, received_at) for (t, s, g), n in classes.items()],
            )
        return out

    async def read_after(self, offset: int, limit: int) -> list[StoredEvent]:
        assert self._reader is not None
        async with self._reader.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE event_offset > ?"
            " ORDER BY event_offset LIMIT ?",
            (offset, limit),
        ) as cursor:
            rows = await cursor.fetchall()
        return [_event_from_row(row) for row in rows]

    async def get_latest(self, source: str, id: str) -> StoredEvent | None:
        assert self._reader is not None
        async with self._reader.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE event_offset ="
            " (SELECT latest_offset FROM event_ids WHERE source = ? AND id = ?)",
            (source, id),
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None else _event_from_row(row)

    async def list_traces(self, after: int, limit: int) -> list[traces.TraceSummary]:
        """Up to ``limit`` traces by activity, descending, below ``after`` (0: from the top);
        an index read of the summary table."""
        assert self._reader is not None
        where = "" if after <= 0 else "WHERE activity < ?"
        params = (limit,) if after <= 0 else (after, limit)
        async with self._reader.execute(
            "SELECT trace_id, events, first_time, last_time, activity FROM traces"
            f" {where} ORDER BY activity DESC LIMIT ?",
            params,
        ) as cursor:
            rows = await cursor.fetchall()
        return [traces.TraceSummary(*row) for row in rows]

    async def get_trace(self, trace_id: str) -> list[traces.TraceMember]:
        """The current revision of every event in the trace, in trace order, with its data
        (empty: no such trace). Reads the trace's members only, through its index."""
        assert self._reader is not None
        async with self._reader.execute(
            "SELECT e.event_offset, e.source, e.id, e.type, m.time, e.attributes, e.revision,"
            " e.data, e.data_kind FROM trace_members AS m"
            " JOIN events AS e ON e.event_offset = m.event_offset"
            " WHERE m.trace_id = ? ORDER BY m.time_key, m.event_offset",
            (trace_id,),
        ) as cursor:
            rows = await cursor.fetchall()
        out = []
        for offset, source, id_, type_, time, attributes, revision, data, kind in rows:
            group = orjson.loads(attributes).get("group")
            out.append(
                traces.TraceMember(
                    offset,
                    source,
                    id_,
                    type_,
                    time,
                    group if isinstance(group, str) else None,
                    revision,
                    data,
                    DataKind(kind),
                )
            )
        return out

    async def read_figures(self, positions: Iterable[figures.Position]) -> figures.Figures:
        """What ``/metrics`` reads of the database, in a thread on a connection of its own."""
        return await asyncio.to_thread(figures.read, self._path, list(positions))

    async def head(self) -> int:
        # sqlite_sequence too: retention may have deleted every event, never their offsets.
        return int(
            await self._scalar(
                "SELECT MAX(COALESCE((SELECT MAX(event_offset) FROM events), 0),"
                " COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0))"
            )
        )

    async def _scalar(
        self, sql: str, params: Sequence[Any] = (), conn: aiosqlite.Connection | None = None
    ) -> Any:
        """The first column of the first row of a read (on the reader connection, unless
        ``conn`` says which)."""
        conn = conn or self._reader
        assert conn is not None
        async with conn.execute(sql, params) as cursor:
            row = await cursor.fetchone()
        return None if row is None else row[0]

    # -- retention and backup (log/retention.py) -------------------------------------------------

    async def first_offset(self) -> int:
        return int(await self._scalar(retention.FIRST_OFFSET))

    async def prune(self, older_than: str | None, max_bytes: int | None, limit: int) -> Pruned:
        """What may go is worked out off the commit path, on the checkpointer's connection
        (idle but for a PRAGMA a second: the bound over 10,000 subscriptions takes ~30 ms,
        which API reads on the reader connection would queue behind); only the DELETEs of one
        batch join a group commit. Needs only move forward (log/retention.py), so a bound
        read a moment before the write still holds when it commits."""
        conn = self._checkpoint_conn
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
                await asyncio.to_thread(_vacuum_into, self._path, target)
            except sqlite3.Error as exc:
                full = storage_error(exc)
                if full is None:
                    raise
                raise full from exc

    # -- keys and sources --------------------------------------------------------------------
    # Rare admin writes: they go through the writer connection directly, between flushes (an
    # autocommit statement each, after any flush's COMMIT has returned).

    async def _execute(self, sql: str, params: Sequence[Any]) -> int:
        await self._quiet_now()
        assert self._conn is not None
        try:
            return self._conn.execute(sql, params).rowcount
        except sqlite3.Error as exc:
            full = storage_error(exc)
            if full is None:
                raise
            raise full from exc

    async def put_key(self, key: KeyRecord) -> None:
        await self._execute(
            "INSERT OR REPLACE INTO api_keys (key_id, hash, name, role, sources, created_at,"
            " revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                key.key_id,
                key.hash,
                key.name,
                key.role,
                None if key.sources is None else orjson.dumps(list(key.sources)).decode(),
                key.created_at,
                key.revoked_at,
            ),
        )

    async def revoke_key(self, key_id: str, at: str) -> bool:
        return (
            await self._execute(
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                (at, key_id),
            )
            > 0
        )

    async def list_keys(self) -> list[KeyRecord]:
        assert self._conn is not None
        await self._quiet_now()
        rows = self._conn.execute(
            "SELECT key_id, hash, name, role, sources, created_at, revoked_at FROM api_keys"
            " ORDER BY created_at, key_id"
        ).fetchall()
        return [
            KeyRecord(
                r[0],
                r[1],
                r[2],
                r[3],
                None if r[4] is None else tuple(orjson.loads(r[4])),
                r[5],
                r[6],
            )
            for r in rows
        ]

    async def put_source(self, source: SourceRecord) -> None:
        await self._execute(
            "INSERT OR REPLACE INTO sources (name, secret, require_signature, created_at,"
            " max_body_bytes) VALUES (?, ?, ?, ?, ?)",
            (
                source.name,
                self._vault.seal(source.secret, sealing.source_secret(source.name)),
                int(source.require_signature),
                source.created_at,
                source.max_body_bytes,
            ),
        )

    async def delete_source(self, name: str) -> bool:
        return await self._execute("DELETE FROM sources WHERE name = ?", (name,)) > 0

    async def list_sources(self) -> list[SourceRecord]:
        assert self._conn is not None
        await self._quiet_now()
        rows = self._conn.execute(
            "SELECT name, secret, require_signature, created_at, max_body_bytes FROM sources"
            " ORDER BY name"
        ).fetchall()
        return [
            SourceRecord(
                r[0], self._vault.unseal(r[1], sealing.source_secret(r[0])), bool(r[2]), r[3], r[4]
            )
            for r in rows
        ]

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
        await self.write(lambda cur: self._save_delivery(cur, sub, attempt))

    @staticmethod
    def _save_delivery(cur: sqlite3.Cursor, sub: Subscription, attempt: Attempt | None) -> None:
        records.save_progress(cur, sub)
        if attempt is not None:
            records.add_attempt(cur, sub.id, attempt)

    async def delete_subscription(self, sub_id: str) -> None:
        await self.write(lambda cur: records.delete_subscription(cur, sub_id))

    async def load_subscriptions(self) -> list[Subscription]:
        return await self._read(lambda cur: records.load_subscriptions(cur, self._vault))

    async def list_attempts(self, sub_id: str, limit: int) -> list[Attempt]:
        return await self._read(lambda cur: records.list_attempts(cur, sub_id, limit))

    async def trigger_head(self, tid: int) -> int:
        return await self._read(lambda cur: records.trigger_head(cur, tid))

    async def count_between(self, tid: int, after: int, upto: int) -> int:
        return await self._read(lambda cur: records.count_between(cur, tid, after, upto))

    async def event_types(self) -> list[dict[str, Any]]:
        return await self._read(records.event_types)

    async def read_trigger_after(self, tid: int, offset: int, limit: int) -> list[StoredEvent]:
        """The next events of one trigger after ``offset``, in offset order."""
        assert self._pages is not None
        rows = self._pages.execute(
            "SELECT e.event_offset, e.revision, e.attributes, e.data, e.data_kind, e.received_at"
            " FROM trigger_events t JOIN events e ON e.event_offset = t.event_offset"
            " WHERE t.tid = ? AND t.event_offset > ? ORDER BY t.event_offset LIMIT ?",
            (tid, offset, limit),
        ).fetchall()
        return [_event_from_row(row) for row in rows]

    def record_delivery(self, sub: Subscription, attempt: Attempt | None) -> None:
        """Like ``save_delivery``, without waiting for the commit: for a cursor moving forward
        after a 2xx, where a crash before the commit only means a re-delivery.

        The records that arrive before the next flush share one queued write: two
        ``executemany`` for hundreds of deliveries instead of two statements each."""
        batch = self._deliveries
        if batch is None or batch.written:
            batch = self._deliveries = _Deliveries()
            self._writer_or_fail().enqueue(batch)
        batch.subs[sub.id] = sub
        if attempt is not None:
            batch.attempts.append((sub.id, attempt))

    # -- process definitions and instances (SPEC §6.2; log/instances.py) ---------------------

    def _names(self) -> instances.StepNames:
        assert self.step_names is not None, "the process engine is not attached"
        return self.step_names

    async def load_definitions(
        self,
    ) -> tuple[list[definitions.Stored], list[definitions.Definition]]:
        return await self._read(lambda cur: instances.load_definitions(cur, self._vault))

    async def save_definition(self, stored: definitions.Stored) -> tuple[int, int]:
        return await self.write(lambda cur: instances.save_definition(cur, stored, self._vault))

    async def delete_definition(self, definition_id: str) -> None:
        await self.write(lambda cur: instances.delete_definition(cur, definition_id))

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


def _vacuum_into(db: Path, target: Path) -> None:
    """``VACUUM INTO`` on a connection of its own: one read transaction, so the copy is the
    database as of one commit, compacted (free pages left out), while the writer goes on
    (WAL: readers and the writer do not block each other). The copy takes the disk space of
    the data it holds; the WAL meanwhile grows, since no checkpoint can pass the read."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("VACUUM INTO ?", (str(target),))
    finally:
        conn.close()


@contextlib.contextmanager
def _logged(step: str) -> Iterator[None]:
    """Run one step of a shutdown; a failure is logged and the next step runs anyway."""
    try:
        yield
    except Exception:
        log.exception("%s failed", step)
