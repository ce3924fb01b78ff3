"""A throwaway PostgreSQL for the benchmarks: started by the ``pgserver`` package (PostgreSQL's
binaries from PyPI) in a temporary directory, listening on a Unix socket in it only (no TCP
port at all), stopped when the block ends. The same server the PostgreSQL store tests use
(``tests/contract/postgres/conftest.py``); each measurement takes a fresh database on it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg

_numbers = itertools.count(1)


@contextlib.contextmanager
def server() -> Iterator[str]:
    """Yields the server's URI (its ``postgres`` database); the server stops afterwards."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset, harmless
        from pgserver.postgres_server import get_server

    with tempfile.TemporaryDirectory(prefix="eventhub-bench-pg-") as folder:
        handle: Any = get_server(Path(folder) / "data", cleanup_mode="stop")
        try:
            yield str(handle.get_uri())
        finally:
            handle.cleanup()


def with_database(uri: str, name: str) -> str:
    """``uri`` with its database replaced by ``name`` (pgserver's URIs put the socket
    directory in the query: ``postgresql://postgres:@/postgres?host=/tmp/...``)."""
    base, _, query = uri.partition("?")
    head = base.rsplit("/", 1)[0]
    return f"{head}/{name}" + (f"?{query}" if query else "")


async def _create(uri: str, name: str) -> None:
    admin = await asyncpg.connect(uri)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


def fresh_database(uri: str, prefix: str = "bench") -> str:
    """A new, empty database on the server at ``uri``; its URI. (Left on the throwaway
    server, which is deleted whole at the end.)"""
    name = f"{prefix}_{next(_numbers)}"
    asyncio.run(_create(uri, name))
    return with_database(uri, name)


async def settings(conn: Any) -> dict[str, str]:
    """The server settings that decide what a commit costs, for the report."""
    out: dict[str, str] = {"version": str(await conn.fetchval("SHOW server_version"))}
    for name in ("fsync", "synchronous_commit", "wal_sync_method", "shared_buffers"):
        out[name] = str(await conn.fetchval(f"SHOW {name}"))
    return out


async def _migrated(dsn: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return bool(await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL"))
    finally:
        await conn.close()


def check_migrated(dsn: str) -> None:
    """Raises RuntimeError unless a hub has migrated ``dsn``. A hub that ignored
    EVENTHUB_DATABASE would run on SQLite, and the bench would report SQLite's figures under
    PostgreSQL's name; a hub that answers on PostgreSQL has migrated its database first."""
    if not asyncio.run(_migrated(dsn)):
        raise RuntimeError(
            "the hub started but left its PostgreSQL database empty: does this eventhub "
            "take EVENTHUB_DATABASE (eventhub serve on PostgreSQL)?"
        )
