"""The SQLite store: WAL, schema migrations, a group-commit writer, checkpoints off the
commit path.

Three connections, each for one job: the writer (plain ``sqlite3``, flushed on the loop by
``GroupCommitWriter``), a reader (``aiosqlite``, so long reads never block the loop), and a
checkpointer (``aiosqlite``) that folds the WAL back into the database in the background, so
no ingest commit ever pays for a checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from eventhub.clock import Clock, rfc3339
from eventhub.events import Appended, DataKind, NewEvent, StoredEvent
from eventhub.log.store import KeyRecord, SourceRecord
from eventhub.log.writer import GroupCommitWriter

log = logging.getLogger(__name__)

_EVENT_COLUMNS = "event_offset, revision, attributes, data, data_kind, received_at"


def _migrations() -> list[tuple[int, str]]:
    folder = importlib.resources.files("eventhub.log") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text("utf-8")))
    return sorted(found)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to the newest version, one migration a transaction."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    for number, script in _migrations():
        if number <= version:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in script.split(";\n"):
                if statement.strip():
                    conn.execute(statement)
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
    ) -> None:
        self._path = path
        self._clock = clock
        self._synchronous = synchronous.upper()
        self._checkpoint_interval = checkpoint_interval
        self._conn: sqlite3.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._checkpoint_conn: aiosqlite.Connection | None = None
        self._writer: GroupCommitWriter[Sequence[NewEvent], list[Appended]] | None = None
        self._checkpointer: asyncio.Task[None] | None = None
        self._dirty = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        conn.execute("PRAGMA wal_autocheckpoint = 0")  # the checkpointer task does it
        conn.execute("PRAGMA busy_timeout = 5000")
        migrate(conn)
        self._conn = conn
        self._reader = await self._connect()
        self._writer = GroupCommitWriter(self._write, name="log-writer")
        self._writer.start()
        self._checkpoint_conn = await self._connect()
        self._checkpointer = asyncio.create_task(self._checkpoint_loop(), name="log-checkpointer")

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self._path, isolation_level=None)
        await conn.execute("PRAGMA busy_timeout = 5000")
        await conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        return conn

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.stop()
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
        for conn in (self._reader, self._checkpoint_conn):
            if conn is not None:
                await conn.close()
        if self._conn is not None:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()
        self._conn = self._reader = self._checkpoint_conn = None
        self._writer = self._checkpointer = None

    async def _checkpoint_loop(self) -> None:
        assert self._checkpoint_conn is not None
        while True:
            await asyncio.sleep(self._checkpoint_interval)
            if self._dirty:
                self._dirty = False
                await self._checkpoint_conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    # -- the log -----------------------------------------------------------------------------

    async def append(self, events: Sequence[NewEvent]) -> list[Appended]:
        if not events:
            return []
        assert self._writer is not None, "store is not open"
        return await self._writer.submit(events)

    def _write(self, groups: list[Sequence[NewEvent]]) -> list[list[Appended]]:
        """One transaction for every queued group (runs on the loop, inside the writer)."""
        assert self._conn is not None
        cur = self._conn.cursor()
        received_at = rfc3339(self._clock.now())
        results: list[list[Appended]] = []
        cur.execute("BEGIN IMMEDIATE")
        try:
            for group in groups:
                out: list[Appended] = []
                for event in group:
                    out.append(self._write_one(cur, event, received_at))
                results.append(out)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        self._dirty = True
        return results

    @staticmethod
    def _write_one(cur: sqlite3.Cursor, event: NewEvent, received_at: str) -> Appended:
        source, id_ = event.source, event.id
        row = cur.execute(
            "SELECT latest_offset, revision, digest FROM event_ids WHERE source = ? AND id = ?",
            (source, id_),
        ).fetchone()
        if row is not None and row[2] == event.digest:
            return Appended(row[0], row[1], duplicate=True)
        revision = 1 if row is None else row[1] + 1
        cur.execute(
            "INSERT INTO events (source, id, revision, type, attributes, data, data_kind,"
            " received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                source,
                id_,
                revision,
                event.type,
                orjson.dumps(event.attributes),
                event.data,
                int(event.kind),
                received_at,
            ),
        )
        offset = cur.lastrowid
        assert offset is not None
        cur.execute(
            "INSERT INTO event_ids (source, id, latest_offset, revision, digest)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (source, id) DO UPDATE SET"
            " latest_offset = excluded.latest_offset, revision = excluded.revision,"
            " digest = excluded.digest",
            (source, id_, offset, revision, event.digest),
        )
        return Appended(offset, revision, duplicate=False)

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

    async def head(self) -> int:
        assert self._reader is not None
        async with self._reader.execute("SELECT COALESCE(MAX(event_offset), 0) FROM events") as c:
            row = await c.fetchone()
        assert row is not None
        return int(row[0])

    # -- keys and sources --------------------------------------------------------------------
    # Rare admin writes: they go through the writer connection directly, between flushes.

    def _execute(self, sql: str, params: Sequence[Any]) -> int:
        assert self._conn is not None
        return self._conn.execute(sql, params).rowcount

    async def put_key(self, key: KeyRecord) -> None:
        self._execute(
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
            self._execute(
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                (at, key_id),
            )
            > 0
        )

    async def list_keys(self) -> list[KeyRecord]:
        assert self._conn is not None
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
        self._execute(
            "INSERT OR REPLACE INTO sources (name, secret, require_signature, created_at)"
            " VALUES (?, ?, ?, ?)",
            (source.name, source.secret, int(source.require_signature), source.created_at),
        )

    async def delete_source(self, name: str) -> bool:
        return self._execute("DELETE FROM sources WHERE name = ?", (name,)) > 0

    async def list_sources(self) -> list[SourceRecord]:
        assert self._conn is not None
        rows = self._conn.execute(
            "SELECT name, secret, require_signature, created_at FROM sources ORDER BY name"
        ).fetchall()
        return [SourceRecord(r[0], r[1], bool(r[2]), r[3]) for r in rows]
