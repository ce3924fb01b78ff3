"""What ``/metrics`` reads from the database at scrape time, in one read transaction on a
connection of its own, in a worker thread: the event loop never waits for it, and a scrape
sees one consistent snapshot.

Its cost is bounded by what is asked: a few index lookups per trigger, and for each distinct
``(trigger, cursor)`` that is behind its trigger's head, one count over the events it is
behind (a subscription that keeps up costs nothing beyond its trigger's head)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

# (trigger id, cursor): a subscription's position in its trigger's index.
Position = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Behind:
    """How far a position is behind its trigger's head."""

    events: int
    oldest_received_at: str | None  # the first undelivered event's ``received_at``


@dataclass(frozen=True, slots=True)
class Figures:
    head: int  # the highest offset ever handed out (its event may be deleted)
    database_bytes: int  # the database file
    wal_bytes: int  # its write-ahead log
    instances: dict[str, int]  # process instances by state (only states that have some)
    behind: dict[Position, Behind] = field(default_factory=dict)  # only positions behind


def read(path: Path, positions: Iterable[Position]) -> Figures:
    """The figures of the database at ``path``, for these subscription positions."""
    conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("BEGIN")  # one snapshot for every query below
        # sqlite_sequence too, as the store's head: retention may have deleted every event,
        # and a head gauge that drops to 0 reads as a reset (offsets never move backwards).
        (head,) = conn.execute(
            "SELECT MAX(COALESCE((SELECT MAX(event_offset) FROM events), 0),"
            " COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0))"
        ).fetchone()
        instances = {
            str(state): int(count)
            for state, count in conn.execute("SELECT state, COUNT(*) FROM instances GROUP BY state")
        }
        behind = _behind(conn, set(positions))
        conn.execute("COMMIT")
    finally:
        conn.close()
    return Figures(int(head), _size(path), _size(Path(f"{path}-wal")), instances, behind)


def _behind(conn: sqlite3.Connection, positions: set[Position]) -> dict[Position, Behind]:
    heads: dict[int, int] = {}
    out: dict[Position, Behind] = {}
    for tid, cursor in positions:
        if tid not in heads:
            (heads[tid],) = conn.execute(
                "SELECT COALESCE(MAX(event_offset), 0) FROM trigger_events WHERE tid = ?", (tid,)
            ).fetchone()
        if cursor >= heads[tid]:
            continue
        count, first = conn.execute(
            "SELECT COUNT(*), MIN(event_offset) FROM trigger_events"
            " WHERE tid = ? AND event_offset > ?",
            (tid, cursor),
        ).fetchone()
        row = conn.execute(
            "SELECT received_at FROM events WHERE event_offset = ?", (first,)
        ).fetchone()
        out[(tid, cursor)] = Behind(int(count), None if row is None else str(row[0]))
    return out


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
