"""SQL for the records kept beside the log: knowledge models, triggers, subscriptions,
delivery attempts, event classes. Plain functions over a ``sqlite3`` cursor; writes run
inside the store's group commit."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import orjson

from eventhub.log import subscription_rows as layout
from eventhub.models import Attempt, Subscription
from eventhub.vault import Vault

# -- knowledge models ------------------------------------------------------------------------


def load_models(cur: sqlite3.Cursor) -> list[tuple[str, dict[str, Any], int]]:
    """(id, draft, published version) of every model."""
    rows = cur.execute("SELECT id, draft, published_version FROM knowledge_models ORDER BY id")
    return [(r[0], orjson.loads(r[1]), r[2]) for r in rows.fetchall()]


def load_published(cur: sqlite3.Cursor) -> list[dict[str, Any]]:
    """The latest published snapshot of every model that has one."""
    rows = cur.execute(
        "SELECT v.snapshot FROM knowledge_models m JOIN knowledge_model_versions v"
        " ON v.km = m.id AND v.version = m.published_version ORDER BY m.id"
    ).fetchall()
    return [orjson.loads(r[0]) for r in rows]


def save_draft(cur: sqlite3.Cursor, km: str, draft: dict[str, Any], now: str) -> None:
    cur.execute(
        "INSERT INTO knowledge_models (id, draft, created_at, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET draft = excluded.draft, updated_at = excluded.updated_at",
        (km, orjson.dumps(draft), now, now),
    )


def publish(cur: sqlite3.Cursor, km: str, snapshot: dict[str, Any], now: str) -> None:
    cur.execute(
        "INSERT INTO knowledge_model_versions (km, version, snapshot, published_at)"
        " VALUES (?, ?, ?, ?)",
        (km, snapshot["version"], orjson.dumps(snapshot), now),
    )
    cur.execute(
        "UPDATE knowledge_models SET published_version = ? WHERE id = ?",
        (snapshot["version"], km),
    )
    cur.executemany(
        "INSERT OR IGNORE INTO triggers (km, trigger) VALUES (?, ?)",
        [(km, t["id"]) for t in snapshot["triggers"]],
    )


def delete_model(cur: sqlite3.Cursor, km: str) -> None:
    cur.execute("DELETE FROM knowledge_model_versions WHERE km = ?", (km,))
    cur.execute("DELETE FROM knowledge_models WHERE id = ?", (km,))


def trigger_ids(cur: sqlite3.Cursor) -> dict[tuple[str, str], int]:
    return {(r[1], r[2]): r[0] for r in cur.execute("SELECT tid, km, trigger FROM triggers")}


# -- subscriptions ---------------------------------------------------------------------------

_SUB_COLUMNS = ", ".join(layout.COLUMNS)


def save_subscription(cur: sqlite3.Cursor, sub: Subscription, sealer: Vault) -> None:
    cur.execute(
        f"INSERT OR REPLACE INTO subscriptions ({_SUB_COLUMNS})"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        layout.row(sub, sealer),
    )


_SAVE_PROGRESS = "UPDATE subscriptions SET {} WHERE id = ?".format(
    ", ".join(f"{column} = ?" for column in layout.PROGRESS)
)


def save_progress(cur: sqlite3.Cursor, sub: Subscription) -> None:
    """Only what delivering changes (cursor, counters, last error): the hot path's write,
    without re-serialising the configuration and secrets of the whole row."""
    cur.execute(_SAVE_PROGRESS, (*layout.progress_of(sub), sub.id))


def save_progress_of(cur: sqlite3.Cursor, subs: Iterable[Subscription]) -> None:
    """``save_progress`` of many subscriptions in one statement."""
    cur.executemany(_SAVE_PROGRESS, [(*layout.progress_of(sub), sub.id) for sub in subs])


def delete_subscription(cur: sqlite3.Cursor, sub_id: str) -> None:
    cur.execute("DELETE FROM attempts WHERE subscription_id = ?", (sub_id,))
    cur.execute("DELETE FROM subscriptions WHERE id = ?", (sub_id,))


def load_subscriptions(
    cur: sqlite3.Cursor, sealer: Vault, ids: Collection[str] | None = None
) -> list[Subscription]:
    """Every subscription (or those of ``ids``), its secrets opened: once, at start, never
    per delivery."""
    if ids is None:
        rows = cur.execute(f"SELECT {_SUB_COLUMNS} FROM subscriptions ORDER BY created_at, id")
    else:
        rows = cur.execute(
            f"SELECT {_SUB_COLUMNS} FROM subscriptions WHERE id IN (SELECT value FROM"
            " json_each(?)) ORDER BY created_at, id",
            (orjson.dumps(sorted(ids)).decode(),),
        )
    return [layout.from_row(r, sealer) for r in rows.fetchall()]


_ADD_ATTEMPT = (
    "INSERT OR REPLACE INTO attempts (subscription_id, n, at, offsets, status, latency_ms,"
    " error, webhook_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


_PRUNE = "DELETE FROM attempts WHERE subscription_id = ? AND n <= ?"


def add_attempt(cur: sqlite3.Cursor, sub_id: str, attempt: Attempt) -> None:
    cur.execute(_ADD_ATTEMPT, layout.attempt_row(sub_id, attempt))
    if layout.prune_after(attempt):
        cur.execute(_PRUNE, (sub_id, attempt.n - layout.ATTEMPTS_KEPT))


def add_attempts(cur: sqlite3.Cursor, attempts: Sequence[tuple[str, Attempt]]) -> None:
    """``add_attempt`` of many (subscription id, attempt) in two statements."""
    cur.executemany(_ADD_ATTEMPT, [layout.attempt_row(sub_id, a) for sub_id, a in attempts])
    prune = [
        (sub_id, a.n - layout.ATTEMPTS_KEPT) for sub_id, a in attempts if layout.prune_after(a)
    ]
    if prune:
        cur.executemany(_PRUNE, prune)


def list_attempts(cur: sqlite3.Cursor, sub_id: str, limit: int) -> list[Attempt]:
    rows = cur.execute(
        "SELECT n, at, offsets, status, latency_ms, error, webhook_id FROM attempts"
        " WHERE subscription_id = ? ORDER BY n DESC LIMIT ?",
        (sub_id, limit),
    ).fetchall()
    out = []
    for n, at, offsets, status, latency, error, webhook_id in rows:
        first, last = orjson.loads(offsets)
        out.append(Attempt(n, at, first, last, status, latency, error, webhook_id))
    return out


# -- the trigger index -----------------------------------------------------------------------


def trigger_head(cur: sqlite3.Cursor, tid: int) -> int:
    row = cur.execute(
        "SELECT COALESCE(MAX(event_offset), 0) FROM trigger_events WHERE tid = ?", (tid,)
    ).fetchone()
    return int(row[0])


def count_between(cur: sqlite3.Cursor, tid: int, after: int, upto: int) -> int:
    row = cur.execute(
        "SELECT COUNT(*) FROM trigger_events WHERE tid = ? AND event_offset > ?"
        " AND event_offset <= ?",
        (tid, after, upto),
    ).fetchone()
    return int(row[0])


def event_types(cur: sqlite3.Cursor) -> list[dict[str, Any]]:
    rows = cur.execute(
        "SELECT type, source, grp, count, first_seen, last_seen FROM event_types"
        " ORDER BY type, source, grp"
    ).fetchall()
    return [
        {
            "type": r[0],
            "source": r[1],
            "group": r[2] or None,
            "count": r[3],
            "firstSeen": r[4],
            "lastSeen": r[5],
        }
        for r in rows
    ]
