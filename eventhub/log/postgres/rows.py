"""The records kept beside the log, in PostgreSQL: knowledge models and triggers,
subscriptions and their attempts, event classes (as ``log/sqlite/records.py`` for SQLite,
whose semantics these are; the row layouts are ``log/subscription_rows.py``'s). Writes run inside the
store's group commit; reads on the pool."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

import orjson

from eventhub import errors
from eventhub.log import subscription_rows
from eventhub.log.postgres.connection import Connection, affected
from eventhub.models import Attempt, Subscription
from eventhub.vault import Vault

# -- knowledge models ------------------------------------------------------------------------


async def load_models(conn: Connection) -> list[tuple[str, dict[str, Any], int]]:
    rows = await conn.fetch("SELECT id, draft, published_version FROM knowledge_models ORDER BY id")
    return [(r[0], orjson.loads(r[1]), r[2]) for r in rows]


async def load_published(conn: Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT v.snapshot FROM knowledge_models m JOIN knowledge_model_versions v"
        " ON v.km = m.id AND v.version = m.published_version ORDER BY m.id"
    )
    return [orjson.loads(r[0]) for r in rows]


async def save_draft(conn: Connection, km: str, draft: dict[str, Any], now: str) -> None:
    await conn.execute(
        "INSERT INTO knowledge_models (id, draft, created_at, updated_at) VALUES ($1, $2, $3, $3)"
        " ON CONFLICT (id) DO UPDATE SET draft = excluded.draft, updated_at = excluded.updated_at",
        km,
        orjson.dumps(draft).decode(),
        now,
    )


async def publish(conn: Connection, km: str, snapshot: dict[str, Any], now: str) -> None:
    """Raises Conflict if another process published this version of ``km`` first (its
    catalogue was behind: it reloads, and a retry publishes the next one)."""
    status = await conn.execute(
        "INSERT INTO knowledge_model_versions (km, version, snapshot, published_at)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (km, version) DO NOTHING",
        km,
        snapshot["version"],
        orjson.dumps(snapshot).decode(),
        now,
    )
    if affected(status) == 0:
        raise errors.Conflict(
            f"knowledge model {km!r} was published by another process meanwhile (version"
            f" {snapshot['version']}); read it again and publish again"
        )
    await conn.execute(
        "UPDATE knowledge_models SET published_version = $1 WHERE id = $2", snapshot["version"], km
    )
    await conn.execute(
        "INSERT INTO triggers (km, trigger) SELECT $1, t FROM unnest($2::text[]) AS t"
        " ON CONFLICT (km, trigger) DO NOTHING",
        km,
        [t["id"] for t in snapshot["triggers"]],
    )


async def delete_model(conn: Connection, km: str) -> None:
    await conn.execute("DELETE FROM knowledge_model_versions WHERE km = $1", km)
    await conn.execute("DELETE FROM knowledge_models WHERE id = $1", km)


async def trigger_ids(conn: Connection) -> dict[tuple[str, str], int]:
    return {(r[1], r[2]): r[0] for r in await conn.fetch("SELECT tid, km, trigger FROM triggers")}


async def ensure_trigger(conn: Connection, km: str, trigger: str) -> tuple[int, bool]:
    """The number of ``(km, trigger)``, and whether it was made now."""
    status = await conn.execute(
        "INSERT INTO triggers (km, trigger) VALUES ($1, $2) ON CONFLICT (km, trigger) DO NOTHING",
        km,
        trigger,
    )
    tid = await conn.fetchval(
        "SELECT tid FROM triggers WHERE km = $1 AND trigger = $2", km, trigger
    )
    return int(tid), affected(status) > 0


# -- subscriptions and attempts ----------------------------------------------------------------

_SUB_COLUMNS = subscription_rows.COLUMNS
_PROGRESS = subscription_rows.PROGRESS

_SAVE_SUBSCRIPTION = (
    f"INSERT INTO subscriptions ({', '.join(_SUB_COLUMNS)})"
    f" VALUES ({', '.join(f'${i}' for i in range(1, len(_SUB_COLUMNS) + 1))})"
    " ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _SUB_COLUMNS if c != "id")
)
# Fenced by updated_at: with several processes, an action on another process (pause,
# replay, ...) persists a newer updated_at and then tells the holder to reload. A progress
# write the holder queued before hearing of it carries the older updated_at and is dropped,
# so it cannot put back the status or cursor the action just changed (its cursor moves are
# delivered again from the action's cursor: at-least-once). A supervisor's own transition
# writes a newer updated_at, so it passes.
_SAVE_PROGRESS = (
    "UPDATE subscriptions SET "
    + ", ".join(f"{c} = ${i}" for i, c in enumerate(_PROGRESS, 1))
    + f" WHERE id = ${len(_PROGRESS) + 1}"
    + f" AND updated_at <= ${_PROGRESS.index('updated_at') + 1}"
)


async def save_subscription(conn: Connection, sub: Subscription, sealer: Vault) -> None:
    await conn.execute(_SAVE_SUBSCRIPTION, *subscription_rows.row(sub, sealer))


async def save_progress_of(conn: Connection, subs: Iterable[Subscription]) -> None:
    """Only what delivering changes (cursor, counters, last error), of many subscriptions."""
    rows = [(*subscription_rows.progress_of(sub), sub.id) for sub in subs]
    if rows:
        await conn.executemany(_SAVE_PROGRESS, rows)


async def delete_subscription(conn: Connection, sub_id: str) -> None:
    await conn.execute("DELETE FROM attempts WHERE subscription_id = $1", sub_id)
    await conn.execute("DELETE FROM subscriptions WHERE id = $1", sub_id)


async def load_subscriptions(
    conn: Connection, sealer: Vault, ids: Collection[str] | None = None
) -> list[Subscription]:
    columns = ", ".join(_SUB_COLUMNS)
    if ids is None:
        rows = await conn.fetch(f"SELECT {columns} FROM subscriptions ORDER BY created_at, id")
    else:
        rows = await conn.fetch(
            f"SELECT {columns} FROM subscriptions WHERE id = ANY($1) ORDER BY created_at, id",
            list(ids),
        )
    return [subscription_rows.from_row(tuple(r), sealer) for r in rows]


_ADD_ATTEMPT = (
    "INSERT INTO attempts (subscription_id, n, at, offsets, status, latency_ms, error,"
    " webhook_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (subscription_id, n)"
    " DO UPDATE SET at = excluded.at, offsets = excluded.offsets, status = excluded.status,"
    " latency_ms = excluded.latency_ms, error = excluded.error, webhook_id = excluded.webhook_id"
)
_PRUNE = "DELETE FROM attempts WHERE subscription_id = $1 AND n <= $2"


def _attempt_row(sub_id: str, attempt: Attempt) -> tuple[Any, ...]:
    row = subscription_rows.attempt_row(sub_id, attempt)
    return (*row[:3], row[3].decode(), *row[4:])  # offsets: JSON text, not bytes


async def add_attempts(conn: Connection, attempts: Sequence[tuple[str, Attempt]]) -> None:
    """Record attempts, keeping at least ``subscription_rows.ATTEMPTS_KEPT`` per subscription."""
    if not attempts:
        return
    await conn.executemany(_ADD_ATTEMPT, [_attempt_row(sub_id, a) for sub_id, a in attempts])
    prune = [
        (sub_id, a.n - subscription_rows.ATTEMPTS_KEPT)
        for sub_id, a in attempts
        if subscription_rows.prune_after(a)
    ]
    if prune:
        await conn.executemany(_PRUNE, prune)


async def list_attempts(conn: Connection, sub_id: str, limit: int) -> list[Attempt]:
    rows = await conn.fetch(
        "SELECT n, at, offsets, status, latency_ms, error, webhook_id FROM attempts"
        " WHERE subscription_id = $1 ORDER BY n DESC LIMIT $2",
        sub_id,
        limit,
    )
    out = []
    for n, at, offsets, status, latency, error, webhook_id in rows:
        first, last = orjson.loads(offsets)
        out.append(Attempt(n, at, first, last, status, latency, error, webhook_id))
    return out


# -- the trigger index and event classes ------------------------------------------------------


async def trigger_head(conn: Connection, tid: int) -> int:
    return int(
        await conn.fetchval(
            "SELECT COALESCE(MAX(event_offset), 0) FROM trigger_events WHERE tid = $1", tid
        )
    )


async def count_between(conn: Connection, tid: int, after: int, upto: int) -> int:
    return int(
        await conn.fetchval(
            "SELECT COUNT(*) FROM trigger_events WHERE tid = $1 AND event_offset > $2"
            " AND event_offset <= $3",
            tid,
            after,
            upto,
        )
    )


async def event_types(conn: Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT type, source, grp, count, first_seen, last_seen FROM event_types"
        " ORDER BY type, source, grp"
    )
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
