"""One flush's events into the log, inside the flush's transaction: identities and
revisions, offsets, the trigger index, event classes and traces (as ``SqliteStore.
_append_rows``, whose semantics these are).

Offsets come from the one-row ``log_head``, locked first (``SELECT ... FOR UPDATE``) and held
to the COMMIT. That serialises appends from every process: identities are read after the
lock, so two processes never both take the same ``(source, id)`` for new, and appends commit
in offset order, so a reader that sees offset N committed has seen every offset below it (the
trigger index pages by offset and must never skip a late commit). A sequence would hand
offsets out in one order and commit them in another; an advisory lock would serialise alike
but still need a row for the highest offset ever handed out, which retention must not lose.
The same statement reads the catalogue's version (``catalogue``: the store reloads its match
index when another process published or deleted a model; store.py says why this closes the
window), so matching against the latest catalogue costs no round trip of its own.
Each statement here carries the whole batch as arrays (``unnest``): a round trip per row
would cost more than the rows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import orjson

from eventhub import traces
from eventhub.events import Appended, NewEvent
from eventhub.log.postgres.connection import Connection

Matcher = Callable[[dict[str, Any]], Iterable[int]]
# Called with the catalogue's version as the log head's lock is taken, before any event of the
# batch is matched: the store brings its match index up to that version.
AtCatalogue = Callable[[int], Awaitable[None]]

LOCK_HEAD = "SELECT last_offset, catalogue_version FROM log_head WHERE id = 1 FOR UPDATE"

_LATEST_OF = (
    "SELECT e.source, e.id, e.latest_offset, e.revision, e.digest FROM event_ids AS e"
    " JOIN unnest($1::text[], $2::text[]) AS k (source, id)"
    " ON e.source = k.source AND e.id = k.id"
)
_INSERT_EVENTS = (
    "INSERT INTO events (event_offset, source, id, revision, type, attributes, data,"
    " data_kind, received_at) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[],"
    " $4::integer[], $5::text[], $6::bytea[], $7::bytea[], $8::integer[], $9::text[])"
)
_UPSERT_IDS = (
    "INSERT INTO event_ids (source, id, latest_offset, revision, digest)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::integer[], $5::bytea[])"
    " ON CONFLICT (source, id) DO UPDATE SET latest_offset = excluded.latest_offset,"
    " revision = excluded.revision, digest = excluded.digest"
)
_INSERT_LINKS = (
    "INSERT INTO trigger_events (tid, event_offset)"
    " SELECT * FROM unnest($1::integer[], $2::bigint[])"
)
_COUNT_CLASSES = (
    "INSERT INTO event_types (type, source, grp, count, first_seen, last_seen)"
    " SELECT t, s, g, n, $5, $5 FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[])"
    " AS c (t, s, g, n) ON CONFLICT (type, source, grp) DO UPDATE SET"
    " count = event_types.count + excluded.count, last_seen = excluded.last_seen"
)
_LEAVE_TRACES = (
    "DELETE FROM trace_members AS m USING unnest($1::text[], $2::text[]) AS k (source, id)"
    " WHERE m.source = k.source AND m.id = k.id"
)
_JOIN_TRACES = (
    "INSERT INTO trace_members (source, id, trace_id, time_key, time, event_offset)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],"
    " $6::bigint[])"
)
_COUNT_JOINS = (
    "INSERT INTO traces (trace_id, events, first_key, first_time, last_key, last_time, activity)"
    " SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[],"
    " $6::text[], $7::bigint[]) ON CONFLICT (trace_id) DO UPDATE SET"
    " events = traces.events + excluded.events,"
    " first_time = CASE WHEN excluded.first_key < traces.first_key THEN excluded.first_time"
    " ELSE traces.first_time END,"
    " first_key = LEAST(traces.first_key, excluded.first_key),"
    " last_time = CASE WHEN excluded.last_key >= traces.last_key THEN excluded.last_time"
    " ELSE traces.last_time END,"
    " last_key = GREATEST(traces.last_key, excluded.last_key),"
    " activity = GREATEST(traces.activity, excluded.activity)"
)


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows to the column arrays ``unnest`` takes."""
    return [[row[i] for row in rows] for i in range(width)]


async def append_rows(
    conn: Connection,
    events: Sequence[NewEvent],
    received_at: str,
    matcher: Matcher | None,
    matched: set[int],
    fresh: bool = False,
    catalogue: AtCatalogue | None = None,
) -> tuple[list[Appended], int]:
    """Append ``events`` (duplicates answered, not stored); returns what became of each and
    the highest offset handed out after them. Adds the triggers they fired to ``matched``.
    ``fresh``: the hub's own events, a new random id each, so no identity is read.
    ``catalogue``: awaited with the catalogue's version once the head is locked."""
    head = await conn.fetchrow(LOCK_HEAD)
    last = int(head[0])
    if catalogue is not None:
        await catalogue(int(head[1]))
    known: dict[tuple[str, str], tuple[int, int, bytes]] = {}
    if not fresh:
        keys = list({(e.source, e.id) for e in events})
        for r in await conn.fetch(_LATEST_OF, [k[0] for k in keys], [k[1] for k in keys]):
            known[(r[0], r[1])] = (int(r[2]), int(r[3]), bytes(r[4]))
    touched: dict[tuple[str, str], tuple[int, int, bytes]] = {}
    out: list[Appended] = []
    rows: list[tuple[Any, ...]] = []
    classes: dict[tuple[str, str, str], int] = {}
    links: list[tuple[int, int]] = []
    members: dict[tuple[str, str], tuple[Any, ...]] = {}
    leave: list[tuple[str, str]] = []
    first_new = last + 1
    offset = last
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
            # A new revision leaves its trace, and joins again below if it has a traceid.
            if previous[0] < first_new:
                leave.append(key)
            else:
                members.pop(key, None)  # an earlier revision in this very flush
        trace = attributes.get("traceid")
        if isinstance(trace, str) and trace:
            time = attributes.get("time")
            stamp = time if isinstance(time, str) else received_at
            members[key] = (key[0], key[1], trace, traces.time_key(stamp), stamp, offset)
        group = attributes.get("group")
        cls = (event.type, key[0], group if isinstance(group, str) else "")
        classes[cls] = classes.get(cls, 0) + 1
        if matcher is not None:
            for tid in matcher(attributes):
                links.append((tid, offset))
                matched.add(tid)
    if rows:
        await conn.execute(_INSERT_EVENTS, *_columns(rows, 9))
        ids = [(s, i, off, rev, dig) for (s, i), (off, rev, dig) in touched.items()]
        await conn.execute(_UPSERT_IDS, *_columns(ids, 5))
        await conn.execute("UPDATE log_head SET last_offset = $1 WHERE id = 1", offset)
    if members or leave:
        await _write_members(conn, leave, list(members.values()))
    if links:
        await conn.execute(_INSERT_LINKS, *_columns(links, 2))
    if classes:
        counted = [(t, s, g, n) for (t, s, g), n in classes.items()]
        await conn.execute(_COUNT_CLASSES, *_columns(counted, 4), received_at)
    return out, offset


async def _write_members(
    conn: Connection, leave: list[tuple[str, str]], joins: list[tuple[Any, ...]]
) -> None:
    """As ``log/sqlite.py``'s ``_write_members``: those leaving go first (the trigger of the
    migration recomputes their traces), then the joins, with one summary upsert per trace;
    joins have the highest offsets so far, so they only push a trace's bounds outwards."""
    if leave:
        await conn.execute(_LEAVE_TRACES, *_columns(leave, 2))
    if not joins:
        return
    joins.sort(key=lambda r: r[5])
    await conn.execute(_JOIN_TRACES, *_columns(joins, 6))
    summary: dict[str, list[Any]] = {}
    for _, _, trace, key, time, offset in joins:
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
    await conn.execute(_COUNT_JOINS, *_columns(list(summary.values()), 7))
