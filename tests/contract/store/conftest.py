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
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Protocol

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


class Backend(Protocol):
    def database(self) -> str:
        """A new, empty database: a store built on it starts with nothing."""
        ...

    def store(self, database: str, clock: Clock, hooks: Hooks = NO_HOOKS) -> Store:
        """A store (not yet open) on ``database``; another one later finds what it wrote."""
        ...

    def forget(self) -> None:
        """The databases made so far go (their stores are closed): after each test."""
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
    the whole run, shared with the e2e tests). Each ``database()`` is copied from a template
    this backend migrated once (``CREATE DATABASE ... TEMPLATE``), so it holds the schema
    and the vault's check for ``VAULT``, no data; migrating an empty database is
    ``tests/contract/postgres``' business. A copy costs ~40 ms on an idle machine (several
    times that on a busy one), so the next one is made, and the used ones dropped, on a
    thread of their own while the test runs."""

    _numbers = itertools.count(1)

    def __init__(self, request: pytest.FixtureRequest, scratch: Path) -> None:
        self._server: str = request.getfixturevalue("pg_server")
        self._template = "eventhub_contract_template"
        _admin(self._server, f'CREATE DATABASE "{self._template}"')
        _run(self._migrate(with_database(self._server, self._template)))
        # One thread, so creations and drops run one at a time, in the order asked.
        self._admin = concurrent.futures.ThreadPoolExecutor(1, "contract-databases")
        self._next = self._admin.submit(self._create)
        self._made: list[str] = []
        self._dropped: list[concurrent.futures.Future[None]] = []

    @staticmethod
    async def _migrate(dsn: str) -> None:
        store = PostgresStore(dsn, ManualClock(), vault=VAULT)
        await store.open()
        await store.close()

    def _create(self) -> str:
        name = f"eventhub_contract_{next(self._numbers)}"
        _admin(self._server, f'CREATE DATABASE "{name}" TEMPLATE "{self._template}"')
        return name

    def _drop(self, name: str) -> None:
        # FORCE: a store a failed test left open must not keep its database.
        _admin(self._server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def database(self) -> str:
        name = self._next.result()
        self._next = self._admin.submit(self._create)
        self._made.append(name)
        return with_database(self._server, name)

    def store(self, database: str, clock: Clock, hooks: Hooks = NO_HOOKS) -> Store:
        return PostgresStore(database, clock, vault=VAULT, hooks=hooks)

    def forget(self) -> None:
        made, self._made = self._made, []
        self._dropped += [self._admin.submit(self._drop, name) for name in made]

    def close(self) -> None:
        self.forget()
        self._dropped.append(self._admin.submit(self._drop, self._next.result()))
        self._dropped.append(self._admin.submit(self._drop, self._template))
        self._admin.shutdown(wait=True)
        for dropped in self._dropped:
            dropped.result()  # a drop that failed says so at the session's end


def _run(coroutine: object) -> None:
    """Run ``coroutine`` to its end on a loop of its own thread (a test's loop may run)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coroutine).result()  # type: ignore[arg-type]


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
