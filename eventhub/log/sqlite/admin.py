"""Keys and sources in SQLite: rare admin writes, an autocommit statement each on the writer
connection between flushes (the store waits until no flush has a transaction open)."""

from __future__ import annotations

import sqlite3

import orjson

from eventhub.log import sealing
from eventhub.log.records import KeyRecord, SourceRecord
from eventhub.vault import Vault


def put_key(conn: sqlite3.Connection, key: KeyRecord) -> int:
    return conn.execute(
        "INSERT OR REPLACE INTO api_keys (key_id, hash, name, role, sources, created_at,"
        " revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            key.key_id,
            key.hash,
            key.name,
            key.role,
            None if key.sources is None else orjson.dumps(list(key.sources)).decode(),
            key.created_at,
            key.revoked_at,
        ),
    ).rowcount


def revoke_key(conn: sqlite3.Connection, key_id: str, at: str) -> int:
    return conn.execute(
        "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
        (at, key_id),
    ).rowcount


def list_keys(conn: sqlite3.Connection) -> list[KeyRecord]:
    rows = conn.execute(
        "SELECT key_id, hash, name, role, sources, created_at, revoked_at FROM api_keys"
        " ORDER BY created_at, key_id"
    ).fetchall()
    return [
        KeyRecord(
            r[0],
            r[1],
            r[2],
            r[3],
            None if r[4] is None else tuple(orjson.loads(r[4])),
            r[5],
            r[6],
        )
        for r in rows
    ]


def put_source(conn: sqlite3.Connection, source: SourceRecord, vault: Vault) -> int:
    return conn.execute(
        "INSERT OR REPLACE INTO sources (name, secret, require_signature, created_at,"
        " max_body_bytes) VALUES (?, ?, ?, ?, ?)",
        (
            source.name,
            vault.seal(source.secret, sealing.source_secret(source.name)),
            int(source.require_signature),
            source.created_at,
            source.max_body_bytes,
        ),
    ).rowcount


def delete_source(conn: sqlite3.Connection, name: str) -> int:
    return conn.execute("DELETE FROM sources WHERE name = ?", (name,)).rowcount


def list_sources(conn: sqlite3.Connection, vault: Vault) -> list[SourceRecord]:
    rows = conn.execute(
        "SELECT name, secret, require_signature, created_at, max_body_bytes FROM sources"
        " ORDER BY name"
    ).fetchall()
    return [
        SourceRecord(r[0], vault.unseal(r[1], sealing.source_secret(r[0])), bool(r[2]), r[3], r[4])
        for r in rows
    ]
