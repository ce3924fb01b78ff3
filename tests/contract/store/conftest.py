"""The store contract: tests every storage backend passes, through the ``Store`` interface
only (``eventhub/log/base.py``). SQLite-only behaviour (WAL, checkpoints, file modes,
``VACUUM INTO``, migrations of its file) is tested where it was, under ``tests/unit`` and
``tests/reliability``; PostgreSQL-only behaviour (migrations racing, NOTIFY after a lost
connection, several processes on one database) under ``tests/contract/postgres``.

``backend`` runs each test once per entry of ``BACKENDS``: a backend is how to make an empty
database and how to build a store on one. A hook a store calls may come after the call that
caused it returns (``Hooks``): tests wait for it with ``Heard`` (an event and a deadline)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import asyncpg  # type: ignore[import-untyped]
import pytest

from eventhub.clock import Clock
from eventhub.log.base import NO_HOOKS, Hooks, Store
from eventhub.log.postgres import PostgresStore
from eventhub.log.sqlite import SqliteStore
from eventhub.vault import Vault
from tests.conftest import ManualClock
from tests.postgres import _admin, with_database

# One key for every store, so a store reopened on a database opens its secrets.
VAULT = Vault(b"k" * 32)
# How long a test waits for a hook the store calls after a commit (NOTIFY: milliseconds).
HOOK_SECONDS = 5.0

R = TypeVar("R")


class Backend(Protocol):
    def database(self) -> str:
        """A new, empty database: a store built on it starts with nothing."""
        ...

    def store(self, database: str, clock: Clock, hooks: Hooks = NO_HOOKS) -> Store:
        """A store (not yet open) on ``database``; another one later finds what it wrote."""
        ...

    def forget(self) -> None:
        """The databases made so far are done with (their stores closed): after each test."""
        ...

    def close(self) -> None:
        """After the last test: whatever the backend made goes."""
        ...


class SqliteBackend:
    def __init__(self, request: pytest.FixtureRequest, scratch: Path) -> None:
        self._scratch = scratch

    def database(self) -> str:
        return str(Path(tempfile.mkdtemp(dir=self._scratch)) / "log.db")

    def store(self, database: str, clock: Clock, hooks: Hooks = NO_HOOKS) -> Store:
        return SqliteStore(Path(database), clock, vault=VAULT, hooks=hooks)

    def forget(self) -> None:
        pass  # files in the session's temporary folder

    def close(self) -> None:
        pass


class PostgresBackend:
    """Databases on the session's PostgreSQL server (``tests/postgres.py``: one server for
    the whole run, shared with the e2e tests), each holding the schema and the vault's check
    for ``VAULT``, no data (migrating an empty database is ``tests/contract/postgres``').

    ``CREATE DATABASE`` copies a whole database (~8 MB, with an fsync): tens of milliseconds
    on an idle machine, several hundred on a busy one, which a Hypothesis test pays per
    example. So a database is made once, from a template this backend migrated, and when a
    test is done with it, it is emptied (``DELETE`` from every table, identities restarted,
    the template's rows put back) and handed out again: as empty as a new one, for a few
    milliseconds."""

    _numbers = itertools.count(1)

    def __init__(self, request: pytest.FixtureRequest, scratch: Path) -> None:
        self._server: str = request.getfixturevalue("pg_server")
        self._template = "eventhub_contract_template"
        _admin(self._server, f'CREATE DATABASE "{self._template}"')
        self._seed = _run(self._migrate(with_database(self._server, self._template)))
        self._free: list[str] = []  # emptied, to be handed out again
        self._made: list[str] = []  # handed out during this test
        self._all: list[str] = []

    @staticmethod
    async def _migrate(dsn: str) -> _Seed:
        """Migrate the template; returns its tables and the rows the migration left."""
        store = PostgresStore(dsn, ManualClock(), vault=VAULT)
        await store.open()
        await store.close()
        conn = await asyncpg.connect(dsn)
        try:
            tables = [
                str(r[0])
                for r in await conn.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                )
            ]
            rows = {t: [tuple(r) for r in await conn.fetch(f'SELECT * FROM "{t}"')] for t in tables}
            sequences = [
                (f'"{r[0]}"."{r[1]}"', int(r[2]))
                for r in await conn.fetch(
                    "SELECT schemaname, sequencename, start_value FROM pg_sequences"
                )
            ]
        finally:
            await conn.close()
        return _Seed(tables, {t: found for t, found in rows.items() if found}, sequences)

    def database(self) -> str:
        if self._free:
            name = self._free.pop()
        else:
            name = f"eventhub_contract_{next(self._numbers)}"
            _admin(self._server, f'CREATE DATABASE "{name}" TEMPLATE "{self._template}"')
            self._all.append(name)
        self._made.append(name)
        return with_database(self._server, name)

    def store(self, database: str, clock: Clock, hooks: Hooks = NO_HOOKS) -> Store:
        return PostgresStore(database, clock, vault=VAULT, hooks=hooks)

    def forget(self) -> None:
        made, self._made = self._made, []
        for name in made:
            _run(self._empty(with_database(self._server, name)))
            self._free.append(name)

    async def _empty(self, dsn: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            # A store a failed test left open must not keep what it wrote (nor block this).
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            async with conn.transaction():
                # DELETE, not TRUNCATE: a test leaves a few rows, and TRUNCATE makes new files
                # for every table and index (as slow as a new database). No fsync awaited:
                # the server is the session's, gone with it.
                await conn.execute("SET LOCAL synchronous_commit = off")
                await conn.execute(
                    "".join(f'DELETE FROM "{t}";' for t in self._seed.tables)
                    + "".join(
                        f"SELECT setval('{q}', {start}, false);"
                        for q, start in self._seed.sequences
                    )
                )
                for table, rows in self._seed.rows.items():
                    await conn.copy_records_to_table(table, records=rows)
        finally:
            await conn.close()

    def close(self) -> None:
        for name in [*self._all, self._template]:
            _admin(self._server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass(frozen=True)
class _Seed:
    """A migrated, empty database: its tables, and the rows migrating left in some."""

    tables: list[str]
    rows: dict[str, list[tuple[Any, ...]]]
    sequences: list[tuple[str, int]]  # (qualified name, first value): identities restart


def _run(coroutine: Coroutine[Any, Any, R]) -> R:
    """Run ``coroutine`` to its end on a loop of its own thread (a test's loop may run)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


# name -> how to set the backend up, given the session's request and a scratch folder.
BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Backend]] = {
    "sqlite": SqliteBackend,
    "postgres": PostgresBackend,
}


@pytest.fixture(scope="session", params=list(BACKENDS))
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    made = BACKENDS[request.param](request, tmp_path_factory.mktemp(request.param))
    yield made
    made.close()


@pytest.fixture(autouse=True)
def _forget_databases(backend: Backend) -> Iterator[None]:
    """Each test's databases go when it ends (after its stores closed)."""
    yield
    backend.forget()


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    """An open store on an empty database, with no hooks."""
    opened = backend.store(backend.database(), ManualClock())
    await opened.open()
    yield opened
    await opened.close()


class Heard:
    """Calls a store made to a hook, and a way to wait for one: ``await heard.until(...)``
    returns as soon as the condition holds, woken by each call (never a sleep)."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def called(self) -> None:
        """Tell waiters that a hook was called (the hooks a test builds call this)."""
        self._changed.set()

    async def until(self, condition: Callable[[], bool], seconds: float = HOOK_SECONDS) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            self._changed.clear()
            left = deadline - time.monotonic()
            assert left > 0, "timed out waiting for a hook"
            # A timeout: the assert above says so, with the condition still false.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
