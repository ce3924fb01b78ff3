"""The SQLite schema: the numbered scripts in ``migrations/``, applied in order, one
transaction each, with the Python steps some of them need."""

from __future__ import annotations

import importlib.resources
import logging
import sqlite3
from collections.abc import Callable, Iterator

import orjson

from eventhub import traces
from eventhub.log.sqlite.append import write_members

log = logging.getLogger(__name__)


def _migrations() -> list[tuple[int, str]]:
    folder = importlib.resources.files("eventhub.log.sqlite") / "migrations"
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
    write_members(conn.cursor(), (), members)


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
