"""What retention must keep (log/retention.py ``NEEDED_FROM``), on a real migrated SQLite
database with the rows each live thing leaves."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventhub.log import retention
from eventhub.log.sqlite import migrate


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(tmp_path / "needs.db", isolation_level=None)
    migrate(conn)
    # Trigger 1 matched offsets 10 and 20; trigger 2 matched 15.
    conn.executemany(
        "INSERT INTO trigger_events (tid, event_offset) VALUES (?, ?)", [(1, 10), (1, 20), (2, 15)]
    )
    yield conn
    conn.close()


def needed(conn: sqlite3.Connection) -> int | None:
    value: int | None = conn.execute(retention.NEEDED_FROM).fetchone()[0]
    return value


def subscription(
    conn: sqlite3.Connection, sub_id: str, status: str, cursor: int, tid: int = 1
) -> None:
    conn.execute(
        "INSERT INTO subscriptions (id, owner, km, trigger, tid, config, secrets, status, cursor,"
        " created_at, updated_at) VALUES (?, 'o', 'km', 't', ?, '{}', '{}', ?, ?, 'x', 'x')",
        (sub_id, tid, status, cursor),
    )


def test_nothing_live_needs_nothing(db: sqlite3.Connection) -> None:
    assert needed(db) is None


@pytest.mark.parametrize(
    ("status", "expected"),
    [("Active", 20), ("Failed", 20), ("Paused", 20), ("Rejected", 20), ("Suspended", None)],
)
def test_a_subscription_needs_its_backlog_unless_suspended(
    db: sqlite3.Connection, status: str, expected: int | None
) -> None:
    subscription(db, "s", status, cursor=10)
    assert needed(db) == expected


def test_the_subscription_furthest_behind_on_each_trigger_decides(db: sqlite3.Connection) -> None:
    subscription(db, "caught-up", "Active", cursor=20)
    assert needed(db) is None  # nothing of its trigger after its cursor
    subscription(db, "behind", "Paused", cursor=5)
    assert needed(db) == 10
    subscription(db, "other", "Active", cursor=0, tid=2)
    assert needed(db) == 10


def test_a_process_start_needs_what_it_has_not_started(db: sqlite3.Connection) -> None:
    db.execute(
        "INSERT INTO process_definitions (id, version, owner, secret, start_tid, cursor,"
        " created_at, updated_at) VALUES ('p', 1, 'o', 's', 2, 0, 'x', 'x')"
    )
    assert needed(db) == 15
    db.execute("UPDATE process_definitions SET cursor = 15")
    assert needed(db) is None


@pytest.mark.parametrize(
    ("state", "expected"),
    [("Running", 7), ("Waiting", None), ("Completed", None), ("Failed", None)],
)
def test_a_running_instance_needs_its_cause(
    db: sqlite3.Connection, state: str, expected: int | None
) -> None:
    db.execute(
        "INSERT INTO instances (id, definition_id, version, state, step, variables, buffer_for,"
        " started_by, last_offset, created_at, updated_at)"
        " VALUES ('i', 'p', 1, ?, 0, '{}', 60, '{}', 7, 'x', 'x')",
        (state,),
    )
    assert needed(db) == expected


@pytest.mark.parametrize(
    ("fate", "expected"), [("buffered", 9), ("consumed", None), ("woke", None), ("unrouted", None)]
)
def test_a_buffered_event_is_needed(
    db: sqlite3.Connection, fate: str, expected: int | None
) -> None:
    db.execute(
        "INSERT INTO correlations (event_offset, instance_id, source, id, type, fate)"
        " VALUES (9, 'i', 's', 'e', 't', ?)",
        (fate,),
    )
    assert needed(db) == expected
