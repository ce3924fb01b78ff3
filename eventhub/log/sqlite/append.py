"""The append path's rows: identity (source, id) and revisions, the events, trace
membership, the trigger index and event classes, written for a whole flush at once (batch,
never per row: PERF-NOTES.md), and the write operations the group commit queues."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from eventhub import traces
from eventhub.events import Appended, NewEvent
from eventhub.log import commit
from eventhub.log.base import Matcher

_UPSERT_ID = (
    "INSERT INTO event_ids (source, id, latest_offset, revision, digest) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (source, id) DO UPDATE SET latest_offset = excluded.latest_offset,"
    " revision = excluded.revision, digest = excluded.digest"
)
_KEYS_PER_QUERY = 400


def latest_of(
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


def write_members(
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


class Append:
    """An append waiting in the writer's queue; ``_write`` merges all of them in a flush."""

    __slots__ = ("events", "result")

    def __init__(self, events: Sequence[NewEvent]) -> None:
        self.events = events
        self.result: list[Appended] = []


class Emitting:
    """A write that may append events of its own (an instance's lifecycle events) in the
    same transaction: ``fn(cursor, emit, clock)``."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[sqlite3.Cursor, commit.Emit, commit.Clock], Any]):
        self.fn = fn


# A write: runs inside the group commit's transaction, on the writer's cursor.
WriteOp = Callable[[sqlite3.Cursor], Any] | Append | Emitting


def append_rows(
    cur: sqlite3.Cursor,
    events: Sequence[NewEvent],
    received_at: str,
    matched: set[int],
    last_offset: int,
    matcher: Matcher | None,
    fresh: bool = False,
) -> tuple[list[Appended], int]:
    """Write ``events`` after ``last_offset``; their receipts and the new last offset. The
    triggers ``matcher`` names for each event are indexed and added to ``matched``."""
    # Identity for the whole batch in one query, then two executemany: a statement per
    # row would cost three times as much (PERF-NOTES.md: batch, never per row). The hub's
    # own events (``fresh``: a random id each) are new by construction: no query.
    # Every event here was validated: source, id and type are strings (no NewEvent.source,
    # whose str() is for callers that cannot know that; three property calls an event).
    known = (
        {}
        if fresh
        else latest_of(cur, {(e.attributes["source"], e.attributes["id"]) for e in events})
    )
    touched: dict[tuple[str, str], tuple[int, int, bytes]] = {}
    out: list[Appended] = []
    rows: list[tuple[Any, ...]] = []
    classes: dict[tuple[str, str, str], int] = {}
    links: list[tuple[int, int]] = []
    # Trace membership: the final row of each (source, id) with a traceid, and the ones
    # that were in the log before this flush and get a new revision (write_members).
    members: dict[tuple[str, str], tuple[Any, ...]] = {}
    leave: list[tuple[str, str]] = []
    first_new = last_offset + 1
    offset = last_offset
    for event in events:
        attributes = event.attributes
        key = (attributes["source"], attributes["id"])
        previous = known.get(key)
        if previous is not None and previous[2] == event.digest:
            out.append(Appended(previous[0], previous[1], duplicate=True))
            continue
        offset += 1
        revision = 1 if previous is None else previous[1] + 1
        known[key] = touched[key] = (offset, revision, event.digest)
        out.append(Appended(offset, revision, duplicate=False))
        rows.append(
            (
                offset,
                key[0],
                key[1],
                revision,
                attributes["type"],
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
        cls = (attributes["type"], key[0], group if isinstance(group, str) else "")
        classes[cls] = classes.get(cls, 0) + 1
        if matcher is not None:
            for tid in matcher(attributes):
                links.append((tid, offset))
                matched.add(tid)
    if rows:
        cur.executemany(_INSERT_EVENT, rows)
        cur.executemany(
            _UPSERT_ID, [(s, i, off, rev, dig) for (s, i), (off, rev, dig) in touched.items()]
        )
    if members or leave:
        write_members(cur, leave, members.values())
    if links:
        cur.executemany("INSERT INTO trigger_events (tid, event_offset) VALUES (?, ?)", links)
    if classes:
        cur.executemany(
            "INSERT INTO event_types (type, source, grp, count, first_seen, last_seen)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (type, source, grp) DO UPDATE SET"
            " count = count + excluded.count, last_seen = excluded.last_seen",
            [(t, s, g, n, received_at, received_at) for (t, s, g), n in classes.items()],
        )
    return out, offset
