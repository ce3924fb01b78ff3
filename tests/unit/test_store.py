"""The SQLite store's own: its migrations. What every backend does is the store contract
(tests/contract/store/)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from eventhub.log.sqlite import migrate


def test_migrations_run_once_and_record_the_version(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    assert migrate(conn) >= 1
    version = migrate(conn)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == version
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"events", "event_ids", "api_keys", "sources"} <= tables
