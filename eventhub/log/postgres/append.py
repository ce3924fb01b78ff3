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
The first statement after the lock reads the catalogue's version with the head and the
identities (``catalogue``: the store reloads its match index when another process published or deleted a model; store.py says why this closes the
window), so matching against the latest catalogue costs no round trip of its own.
Each statement here carries the whole batch as arrays (``unnest``): a round trip per row
would cost more than the rows. And a flush is few round trips (each is a wait for a server
process that, on a busy machine, waits to be scheduled; they were most of a flush's time): the
store takes the lock with its ``BEGIN`` (``BEGIN_LOCKED``, one simple query), the head, the
catalogue's version and the identities come in one statement after it (``_READ``), and every
write of the batch but the leaving of traces goes in one statement of data-modifying CTEs with
the commit's ``NOTIFY`` (``_WRITE``): four round trips a flush with its ``COMMIT``, not ten.
The CTEs of one statement run on one snapshot, in no given order, so they only touch
different tables, none with a trigger; ``trace_members``' leaving (its trigger recomputes the
trace from the members left) runs before the joins, in statements of its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import orjson

from eventhub import traces
from eventhub.events import Appended, NewEvent
from eventhub.log.postgres import wakeup
from eventhub.log.postgres.connection import Connection

Matcher = Callable[[dict[str, Any]], Iterable[int]]
# Called with the catalogue's version as the log head's lock is taken, before any event of the
# batch is matched: the store brings its match index up to that version.
AtCatalogue = Callable[[int], Awaitable[None]]

LOCK_HEAD = "SELECT last_offset, catalogue_version FROM log_head WHERE id = 1 FOR UPDATE"
# The writer's transaction when its flush appends: the lock comes with the BEGIN, one round
# trip for both (a simple query, so several statements; it returns no rows: ``_READ`` reads).
BEGIN_LOCKED = "BEGIN; SELECT 1 FROM log_head WHERE id = 1 FOR UPDATE"

# After the lock (a statement of its own, so its snapshot sees every append committed before
# the lock was granted): the head and the catalogue's version, and each known identity of
# the batch on rows of its own (NULLs when there is none).
_READ = (
    "SELECT h.last_offset, h.catalogue_version, e.source, e.id, e.latest_offset, e.revision,"
    " e.digest FROM log_head AS h LEFT JOIN (event_ids AS e"
    " JOIN unnest($1::text[], $2::text[]) AS k (source, id)"
    " ON e.source = k.source AND e.id = k.id) ON true WHERE h.id = 1"
)

_INSERT_EVENTS = (
    "INSERT INTO events (event_offset, source, id, revision, type, attributes, data,"
    " data_kind, received_at) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[],"
    " $4::integer[], $5::text[], $6::bytea[], $7::bytea[], $8::integer[], $9::text[])"
)
_UPSERT_IDS = (
    "INSERT INTO event_ids (source, id, latest_offset, revision, digest)"
    " SELECT * FROM unnest($10::text[], $11::text[], $12::bigint[], $13::integer[],"
    " $14::bytea[]) ON CONFLICT (source, id) DO UPDATE SET"
    " latest_offset = excluded.latest_offset, revision = excluded.revision,"
    " digest = excluded.digest"
)
_MOVE_HEAD = "UPDATE log_head SET last_offset = $15 WHERE id = 1"
_INSERT_LINKS = (
    "INSERT INTO trigger_events (tid, event_offset)"
    " SELECT * FROM unnest($16::integer[], $17::bigint[])"
)
_COUNT_CLASSES = (
    "INSERT INTO event_types (type, source, grp, count, first_seen, last_seen)"
    " SELECT t, s, g, n, $22, $22 FROM unnest($18::text[], $19::text[], $20::text[],"
    " $21::bigint[]) AS c (t, s, g, n) ON CONFLICT (type, source, grp) DO UPDATE SET"
    " count = event_types.count + excluded.count, last_seen = excluded.last_seen"
)


def _join_traces(first: int) -> tuple[str, str]:
    """Members joining their traces (six arrays from ``$first``), and one summary upsert per
    trace (seven arrays after them): joins have the highest offsets so far, so they only
    push a trace's bounds outwards."""
    a = [f"${first + i}" for i in range(13)]
    join = (
        "INSERT INTO trace_members (source, id, trace_id, time_key, time, event_offset)"
        f" SELECT * FROM unnest({a[0]}::text[], {a[1]}::text[], {a[2]}::text[],"
        f" {a[3]}::text[], {a[4]}::text[], {a[5]}::bigint[])"
    )
    count = (
        "INSERT INTO traces (trace_id, events, first_key, first_time, last_key, last_time,"
        f" activity) SELECT * FROM unnest({a[6]}::text[], {a[7]}::bigint[], {a[8]}::text[],"
        f" {a[9]}::text[], {a[10]}::text[], {a[11]}::text[], {a[12]}::bigint[])"
        " ON CONFLICT (trace_id) DO UPDATE SET events = traces.events + excluded.events,"
        " first_time = CASE WHEN excluded.first_key < traces.first_key"
        " THEN excluded.first_time ELSE traces.first_time END,"
        " first_key = LEAST(traces.first_key, excluded.first_key),"
        " last_time = CASE WHEN excluded.last_key >= traces.last_key"
        " THEN excluded.last_time ELSE traces.last_time END,"
        " last_key = GREATEST(traces.last_key, excluded.last_key),"
        " activity = GREATEST(traces.activity, excluded.activity)"
    )
    return join, count


_JOIN_AT_23, _COUNT_AT_29 = _join_traces(23)
# The whole batch in one statement, with the commit's notification ($36: its payloads, or
# none): events, identities, the head, trigger links, event classes and joined traces.
_WRITE = (
    f"WITH ev AS ({_INSERT_EVENTS}), ids AS ({_UPSERT_IDS}), hd AS ({_MOVE_HEAD}),"
    f" ln AS ({_INSERT_LINKS}), cl AS ({_COUNT_CLASSES}), jn AS ({_JOIN_AT_23}),"
    f" tr AS ({_COUNT_AT_29})"
    f" SELECT count(pg_notify('{wakeup.CHANNEL}', p)) FROM unnest($36::text[]) AS p"
)
_JOIN_AT_1, _COUNT_AT_7 = _join_traces(1)
# After ``_LEAVE_TRACES``, when members of the batch left their traces.
_JOIN_TRACES = f"WITH jn AS ({_JOIN_AT_1}) {_COUNT_AT_7}"
_LEAVE_TRACES = (
    "DELETE FROM trace_members AS m USING unnest($1::text[], $2::text[]) AS k (source, id)"
    " WHERE m.source = k.source AND m.id = k.id"
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
    *,
    locked: bool = False,
) -> tuple[list[Appended], int]:
    """Append ``events`` (duplicates answered, not stored); returns what became of each and
    the highest offset handed out after them. Adds the triggers they fired to ``matched``,
    and notifies the new head with all of ``matched`` (``wakeup.CHANNEL``) in the statement
    that writes the batch: PostgreSQL sends it at the COMMIT. A batch of duplicates only
    writes nothing and notifies nothing.
    ``fresh``: the hub's own events, a new random id each, so no identity is read.
    ``catalogue``: awaited with the catalogue's version once the head is locked.
    ``locked``: the transaction holds the head's lock already (``BEGIN_LOCKED``)."""
    known: dict[tuple[str, str], tuple[int, int, bytes]] = {}
    if locked:
        keys = [] if fresh else list({(e.source, e.id) for e in events})
        found = await conn.fetch(_READ, [k[0] for k in keys], [k[1] for k in keys])
        last, version = int(found[0][0]), int(found[0][1])
        for r in found:
            if r[2] is not None:
                known[(r[2], r[3])] = (int(r[4]), int(r[5]), bytes(r[6]))
        if catalogue is not None:
            await catalogue(version)
    else:
        head = await conn.fetchrow(LOCK_HEAD)
        last = int(head[0])
        if catalogue is not None:
            await catalogue(int(head[1]))
        if not fresh:
            keys = list({(e.source, e.id) for e in events})
            for r in await conn.fetch(_READ, [k[0] for k in keys], [k[1] for k in keys]):
                if r[2] is not None:
                    known[(r[2], r[3])] = (int(r[4]), int(r[5]), bytes(r[6]))
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
    if not rows:
        return out, offset
    ids = [(s, i, off, rev, dig) for (s, i), (off, rev, dig) in touched.items()]
    counted = [(t, s, g, n) for (t, s, g), n in classes.items()]
    joins = sorted(members.values(), key=lambda r: r[5])
    # Leaving first (its trigger recomputes the trace from the members left), so the joins
    # then wait for a statement of their own.
    joining = [] if leave else joins
    await conn.execute(
        _WRITE,
        *_columns(rows, 9),
        *_columns(ids, 5),
        offset,
        *_columns(links, 2),
        *_columns(counted, 4),
        received_at,
        *_columns(joining, 6),
        *_columns(_summaries(joining), 7),
        wakeup.payloads(offset, matched),
    )
    if leave:
        await conn.execute(_LEAVE_TRACES, *_columns(leave, 2))
        if joins:
            await conn.execute(_JOIN_TRACES, *_columns(joins, 6), *_columns(_summaries(joins), 7))
    return out, offset


def _summaries(joins: list[tuple[Any, ...]]) -> list[list[Any]]:
    """As ``log/sqlite.py``'s ``_write_members``: one summary row per trace of ``joins`` (in
    offset order): its count, its first and last time, and its activity."""
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
    return list(summary.values())
