"""SQLite connections: how each is opened, what a full disk looks like, and the helpers a
shutdown and a backup share. One writer connection (plain ``sqlite3``), one for trigger pages
on the loop, aiosqlite connections for long reads and for the checkpointer."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import aiosqlite

from eventhub import errors

log = logging.getLogger(__name__)

_SQLITE_FULL = 13  # "database or disk is full": the disk, or max_page_count


def storage_error(exc: BaseException) -> errors.InsufficientStorage | None:
    """The 507 a SQLite error stands for, if it says the storage is full."""
    if isinstance(exc, sqlite3.Error) and (exc.sqlite_errorcode & 0xFF) == _SQLITE_FULL:
        return errors.InsufficientStorage(
            "the database's disk is full; nothing of this request was stored, retry later"
        )
    return None


def open_writer(path: Path, synchronous: str) -> sqlite3.Connection:
    """The writer connection: WAL, no automatic checkpoints (the checkpointer does them)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA wal_autocheckpoint = 0")  # the checkpointer task does it
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def open_pages(path: Path) -> sqlite3.Connection:
    """Trigger pages are small and read constantly by supervisors: a plain connection on the
    loop reads one in microseconds, where a thread hand-off costs ~100 us."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


async def open_async(path: Path, synchronous: str) -> aiosqlite.Connection:
    """A connection whose statements run in a thread of its own (long reads, checkpoints)."""
    conn = await aiosqlite.connect(path, isolation_level=None)
    await conn.execute("PRAGMA busy_timeout = 5000")
    await conn.execute(f"PRAGMA synchronous = {synchronous}")
    return conn


def vacuum_into(db: Path, target: Path) -> None:
    """``VACUUM INTO`` on a connection of its own: one read transaction, so the copy is the
    database as of one commit, compacted (free pages left out), while the writer goes on
    (WAL: readers and the writer do not block each other). The copy takes the disk space of
    the data it holds; the WAL meanwhile grows, since no checkpoint can pass the read."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("VACUUM INTO ?", (str(target),))
    finally:
        conn.close()


@contextlib.contextmanager
def logged(step: str) -> Iterator[None]:
    """Run one step of a shutdown; a failure is logged and the next step runs anyway."""
    try:
        yield
    except Exception:
        log.exception("%s failed", step)
