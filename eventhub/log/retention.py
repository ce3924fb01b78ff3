"""Retention in SQLite (SPEC §7): what the log must keep, and the deletion of a batch of its
oldest events. ``eventhub/retention.py`` decides when; this is how.

The retained log is always one range ``[first offset, head]``: events go oldest first, and
never one at or past the first event something live still needs (``NEEDED_FROM``), even if
later events are older than the cut-off. So ``GET /events?after=`` can tell a deleted range
(410) from one that never existed, and offsets never move backwards: ``sqlite_sequence`` keeps
the highest offset ever handed out (``SqliteStore.open`` continues from it) and a DELETE
leaves it as it is.

What is needed, and why (the README's *Retention* says it for operators):

- a subscription that is Active, Failed (auto-recovery sends its backlog), Paused (resume
  continues where it paused) or Rejected (update or replay revives it where it stopped): the
  first event of its trigger after its cursor. A Suspended subscription had its backlog
  dropped by definition (SPEC §4): it needs nothing. The cursor in the table may lag the
  supervisor's (``record_delivery``): that only keeps more.
- a process definition: the first event of its start trigger after its start cursor.
- a Running instance: the event that started or last woke it (``last_offset``), which its
  next call step sends. A Waiting instance needs nothing from the log: the event that wakes
  it becomes its cause.
- an event buffered for an instance (``correlations``, fate ``buffered``): a wait takes it.

Each of these only moves forward, except a subscription's replay; a replay that races a
deletion of the very events it asks for gets what remains (SPEC: replay re-emits what the
log holds).

Deleting an event deletes with it its trigger index rows, its trace membership (the trigger
of 0005_traces.sql keeps ``traces`` right) and its correlation record, and, when it was the
latest revision of its ``(source, id)``, that identity (``event_ids``): the same ``(source,
id)`` sent again later is a new event, revision 1. Identity lives as long as the event does;
keeping it longer would keep a row per event ever seen, which retention exists to bound.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

# Subscription states whose backlog is still to be delivered (see above).
LIVE_STATES = ("Active", "Failed", "Paused", "Rejected")

_FIRST_AFTER = (
    "SELECT t.event_offset FROM trigger_events AS t WHERE t.tid = {tid} AND t.event_offset >"
    " {cursor} ORDER BY t.event_offset LIMIT 1"
)

# The lowest offset anything live still needs (NULL: nothing). Subscriptions are grouped by
# trigger first: for each trigger, the one furthest behind decides, one index probe each.
NEEDED_FROM = (
    "SELECT MIN(n) FROM ("
    f" SELECT ({_FIRST_AFTER.format(tid='g.tid', cursor='g.cursor')}) AS n FROM"
    " (SELECT tid, MIN(cursor) AS cursor FROM subscriptions"
    f" WHERE status IN ({', '.join(repr(s) for s in LIVE_STATES)}) GROUP BY tid) AS g"
    f" UNION ALL SELECT ({_FIRST_AFTER.format(tid='d.start_tid', cursor='d.cursor')})"
    " FROM process_definitions AS d"
    " UNION ALL SELECT MIN(last_offset) FROM instances WHERE state = 'Running'"
    " UNION ALL SELECT MIN(event_offset) FROM correlations WHERE fate = 'buffered')"
)

# What is needed, and the head, in one statement: one snapshot. With nothing needed the
# bound is the head read with it, not "everything": an event appended after this read, which
# a caught-up subscription needs, must not be in the batch the next read plans.
NEEDED_AND_HEAD = f"SELECT ({NEEDED_FROM}), (SELECT COALESCE(MAX(event_offset), 0) FROM events)"

# The oldest events below a bound, with what decides whether they may go.
OLDEST_BELOW = (
    "SELECT event_offset, received_at FROM events WHERE event_offset < ?"
    " ORDER BY event_offset LIMIT ?"
)

# The database's bytes in use: its pages less those on the free list (a DELETE frees pages
# for reuse; the file itself only shrinks with VACUUM).
USED_BYTES = (
    "SELECT (p.page_count - f.freelist_count) * s.page_size"
    " FROM pragma_page_count() AS p, pragma_freelist_count() AS f, pragma_page_size() AS s"
)

# The first offset the log holds; with none, the one after the highest ever handed out.
FIRST_OFFSET = (
    "SELECT COALESCE((SELECT MIN(event_offset) FROM events),"
    " COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0) + 1)"
)


def deletable(
    rows: Sequence[tuple[int, str]], older_than: str | None, oversize: bool
) -> int | None:
    """The last offset of the longest prefix of ``rows`` (the oldest events below what is
    needed, ``(offset, received_at)`` in offset order) that may go: every one while the
    database is over its size, else those received before ``older_than`` (RFC 3339 as the
    store writes it, so text order is time order). None: not one."""
    last = None
    for offset, received_at in rows:
        if not oversize and (older_than is None or received_at >= older_than):
            break
        last = offset
    return last


def delete_through(cur: sqlite3.Cursor, upto: int) -> int:
    """Delete every event at or below ``upto`` (the caller's batch: a prefix of the log) with
    what belongs to it; returns how many events went. Runs inside a group commit."""
    victims = cur.execute(
        "SELECT source, id, event_offset FROM events WHERE event_offset <= ?", (upto,)
    ).fetchall()
    if not victims:
        return 0
    cur.executemany(
        "DELETE FROM event_ids WHERE source = ? AND id = ? AND latest_offset = ?", victims
    )
    cur.executemany(
        "DELETE FROM trace_members WHERE source = ? AND id = ? AND event_offset = ?", victims
    )
    # trigger_events is keyed (tid, offset) with no index by offset (ingest pays for every
    # index): visit each trigger present, one probe each, and cut its range.
    tid = -1
    while True:
        row = cur.execute(
            "SELECT tid FROM trigger_events WHERE tid > ? ORDER BY tid LIMIT 1", (tid,)
        ).fetchone()
        if row is None:
            break
        tid = row[0]
        cur.execute("DELETE FROM trigger_events WHERE tid = ? AND event_offset <= ?", (tid, upto))
    # A buffered event is needed, so never below the bound; kept here all the same, should
    # one ever be, since a wait would read it.
    cur.execute("DELETE FROM correlations WHERE event_offset <= ? AND fate != 'buffered'", (upto,))
    cur.execute("DELETE FROM events WHERE event_offset <= ?", (upto,))
    return len(victims)
