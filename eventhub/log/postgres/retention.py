"""Retention in PostgreSQL (SPEC §7): the queries of ``log/retention.py`` (which explains what
the log must keep, and why) in PostgreSQL's dialect. ``retention.deletable`` decides, alike
for both backends, which prefix of the oldest events may go."""

from __future__ import annotations

from eventhub.log import retention
from eventhub.log.postgres.append import LOCK_HEAD
from eventhub.log.postgres.connection import Connection, affected

_FIRST_AFTER = (
    "SELECT t.event_offset FROM trigger_events AS t WHERE t.tid = {tid} AND t.event_offset >"
    " {cursor} ORDER BY t.event_offset LIMIT 1"
)

# The lowest offset anything live still needs (NULL: nothing): live subscriptions (per
# trigger, the one furthest behind decides), process definitions' start cursors, Running
# instances, buffered events.
NEEDED_FROM = (
    "SELECT MIN(n) FROM ("
    f" SELECT ({_FIRST_AFTER.format(tid='g.tid', cursor='g.cursor')}) AS n FROM"
    " (SELECT tid, MIN(cursor) AS cursor FROM subscriptions"
    f" WHERE status IN ({', '.join(repr(s) for s in retention.LIVE_STATES)}) GROUP BY tid)"
    " AS g"
    f" UNION ALL SELECT ({_FIRST_AFTER.format(tid='d.start_tid', cursor='d.cursor')})"
    " FROM process_definitions AS d"
    " UNION ALL SELECT MIN(last_offset) FROM instances WHERE state = 'Running'"
    " UNION ALL SELECT MIN(event_offset) FROM correlations WHERE fate = 'buffered'"
    ") AS needs"
)

# What is needed, and the head, in one statement: one snapshot (see log/retention.py).
NEEDED_AND_HEAD = f"SELECT ({NEEDED_FROM}), (SELECT COALESCE(MAX(event_offset), 0) FROM events)"

OLDEST_BELOW = (
    "SELECT event_offset, received_at FROM events WHERE event_offset < $1"
    " ORDER BY event_offset LIMIT $2"
)

USED_BYTES = "SELECT pg_database_size(current_database())"

FIRST_OFFSET = (
    "SELECT COALESCE((SELECT MIN(event_offset) FROM events),"
    " (SELECT last_offset FROM log_head WHERE id = 1) + 1)"
)


async def delete_through(conn: Connection, upto: int) -> int:
    """Delete every event at or below ``upto`` with its identity (when the latest revision),
    trace membership and trigger index rows; returns how many events went. Inside a group
    commit, holding the log head (as appends do), so an append on another process never
    takes an identity for a new revision while its last event goes."""
    await conn.fetchval(LOCK_HEAD)
    await conn.execute(
        "DELETE FROM event_ids AS i USING events AS e WHERE e.event_offset <= $1"
        " AND i.source = e.source AND i.id = e.id AND i.latest_offset = e.event_offset",
        upto,
    )
    await conn.execute(
        "DELETE FROM trace_members AS m USING events AS e WHERE e.event_offset <= $1"
        " AND m.source = e.source AND m.id = e.id AND m.event_offset = e.event_offset",
        upto,
    )
    # One index range per trigger ((tid, offset) is the key; no index by offset alone, which
    # every append would pay for).
    await conn.execute(
        "DELETE FROM trigger_events AS t USING triggers AS g"
        " WHERE t.tid = g.tid AND t.event_offset <= $1",
        upto,
    )
    # A buffered event is needed, so never below the bound; kept all the same, should one be.
    await conn.execute(
        "DELETE FROM correlations WHERE event_offset <= $1 AND fate != 'buffered'", upto
    )
    return affected(await conn.execute("DELETE FROM events WHERE event_offset <= $1", upto))
