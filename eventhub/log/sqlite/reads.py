"""Reads of the log: pages of events, the latest revision of one, traces, trigger pages.
Long reads run on an aiosqlite connection (off the loop); trigger pages on a plain one."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite
import orjson

from eventhub import traces
from eventhub.events import DataKind, StoredEvent

EVENT_COLUMNS = "event_offset, revision, attributes, data, data_kind, received_at"

# sqlite_sequence too: retention may have deleted every event, never their offsets.
HEAD = (
    "SELECT MAX(COALESCE((SELECT MAX(event_offset) FROM events), 0),"
    " COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0))"
)


def event_from_row(row: Sequence[Any]) -> StoredEvent:
    offset, revision, attributes, data, kind, received_at = row
    return StoredEvent(
        offset, revision, orjson.loads(attributes), data, DataKind(kind), received_at
    )


async def scalar(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    """The first column of the first row of a read."""
    async with conn.execute(sql, params) as cursor:
        row = await cursor.fetchone()
    return None if row is None else row[0]


async def read_after(conn: aiosqlite.Connection, offset: int, limit: int) -> list[StoredEvent]:
    async with conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE event_offset > ? ORDER BY event_offset LIMIT ?",
        (offset, limit),
    ) as cursor:
        rows = await cursor.fetchall()
    return [event_from_row(row) for row in rows]


async def get_latest(conn: aiosqlite.Connection, source: str, id: str) -> StoredEvent | None:
    async with conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE event_offset ="
        " (SELECT latest_offset FROM event_ids WHERE source = ? AND id = ?)",
        (source, id),
    ) as cursor:
        row = await cursor.fetchone()
    return None if row is None else event_from_row(row)


async def list_traces(
    conn: aiosqlite.Connection, after: int, limit: int
) -> list[traces.TraceSummary]:
    """Up to ``limit`` traces by activity, descending, below ``after`` (0: from the top);
    an index read of the summary table."""
    where = "" if after <= 0 else "WHERE activity < ?"
    params = (limit,) if after <= 0 else (after, limit)
    async with conn.execute(
        "SELECT trace_id, events, first_time, last_time, activity FROM traces"
        f" {where} ORDER BY activity DESC LIMIT ?",
        params,
    ) as cursor:
        rows = await cursor.fetchall()
    return [traces.TraceSummary(*row) for row in rows]


async def get_trace(conn: aiosqlite.Connection, trace_id: str) -> list[traces.TraceMember]:
    """The current revision of every event in the trace, in trace order, with its data
    (empty: no such trace). Reads the trace's members only, through its index."""
    async with conn.execute(
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


def read_trigger_after(
    conn: sqlite3.Connection, tid: int, offset: int, limit: int
) -> list[StoredEvent]:
    """The next events of one trigger after ``offset``, in offset order."""
    rows = conn.execute(
        "SELECT e.event_offset, e.revision, e.attributes, e.data, e.data_kind, e.received_at"
        " FROM trigger_events t JOIN events e ON e.event_offset = t.event_offset"
        " WHERE t.tid = ? AND t.event_offset > ? ORDER BY t.event_offset LIMIT ?",
        (tid, offset, limit),
    ).fetchall()
    return [event_from_row(row) for row in rows]
