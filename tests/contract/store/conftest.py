"""The store contract: tests every storage backend passes, through the ``Store`` interface
only (``eventhub/log/base.py``). SQLite-only behaviour (WAL, checkpoints, file modes,
``VACUUM INTO``, migrations of its file) is tested where it was, under ``tests/unit`` and
``tests/reliability``.

``backend`` runs each test once per entry of ``BACKENDS``: a backend is how to make an empty
database and how to build a store on one. PostgreSQL joins with one entry there."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Protocol

import pytest

from eventhub.clock import Clock
from eventhub.log.base import NO_HOOKS, Hooks, Store
from eventhub.log.sqlite import SqliteStore
from eventhub.vault import Vault
from tests.conftest import ManualClock

# One key for every store, so a store reopened on a database opens its secrets.
VAULT = Vault(b"k" * 32)


class Backend(Protocol):
    def database(self) -> str:
        """A new, empty database: a store built on it starts with nothing."""
        ...

    def store(self, database: str, clock: Clock, hooks: Hooks = NO_HOOKS) -> Store:
        """A store (not yet open) on ``database``; another one later finds what it wrote."""
        ...

    def close(self) -> None:
        """After the last test: whatever the backend started (a server) goes."""
        ...


class SqliteBackend:
    def __init__(self, scratch: Path) -> None:
        self._scratch = scratch

    def database(self) -> str:
        return str(Path(tempfile.mkdtemp(dir=self._scratch)) / "log.db")

    def store(self, database: str, clock: Clock, hooks: Hooks = NO_HOOKS) -> Store:
        return SqliteStore(Path(database), clock, vault=VAULT, hooks=hooks)

    def close(self) -> None:
        pass


# name -> how to set the backend up, given a scratch folder of its own.
BACKENDS: dict[str, Callable[[Path], Backend]] = {"sqlite": SqliteBackend}


@pytest.fixture(scope="session", params=list(BACKENDS))
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    made = BACKENDS[request.param](tmp_path_factory.mktemp(request.param))
    yield made
    made.close()


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    """An open store on an empty database, with no hooks."""
    opened = backend.store(backend.database(), ManualClock())
    await opened.open()
    yield opened
    await opened.close()
