"""A real PostgreSQL for the tests: started once per test session by the ``pgserver`` package
(PostgreSQL's binaries, from PyPI, so a fresh machine needs nothing else) in a temporary
directory, listening on a Unix socket in it only (no TCP port at all, so no traffic leaves the
machine), and stopped at the session's end. Each test gets a database of its own.

Started only when a test asks for it (``pg_dsn``, or the ``postgres`` backend of ``server``):
a run of SQLite tests alone never starts it. The fixtures are synchronous so that other
fixtures (``backend_settings``) can ask for them with ``request.getfixturevalue``."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest

_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The server's URI (its ``postgres`` database); torn down at exit."""
    with warnings.catch_warnings():
        # platformdirs warns, at pgserver's import, that XDG_RUNTIME_DIR is unset (CI, root):
        # harmless, it falls back to /tmp; the suite turns warnings into errors.
        warnings.simplefilter("ignore")
        from pgserver.postgres_server import get_server

    with tempfile.TemporaryDirectory(prefix="eventhub-pg-") as folder:
        server: Any = get_server(Path(folder) / "data", cleanup_mode="stop")
        try:
            yield str(server.get_uri())
        finally:
            server.cleanup()


def with_database(uri: str, name: str) -> str:
    """``uri`` with its database replaced by ``name`` (pgserver's URIs put the socket
    directory in the query: ``postgresql://postgres:@/postgres?host=/tmp/...``)."""
    base, _, query = uri.partition("?")
    head = base.rsplit("/", 1)[0]
    return f"{head}/{name}" + (f"?{query}" if query else "")


def _admin(uri: str, statement: str) -> None:
    """Run one statement on the server's ``postgres`` database, on a thread of its own: the
    fixture may be set up while a test's event loop runs (``getfixturevalue``)."""

    async def run() -> None:
        admin = await asyncpg.connect(uri)
        try:
            await admin.execute(statement)
        finally:
            await admin.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


@pytest.fixture
def pg_dsn(pg_server: str) -> Iterator[str]:
    """A fresh, empty database for this test; dropped afterwards."""
    name = f"eventhub_test_{next(_numbers)}"
    _admin(pg_server, f'CREATE DATABASE "{name}"')
    yield with_database(pg_server, name)
    _admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
