"""Online backup (SPEC §7): a consistent copy of the database taken while the hub serves,
for ``GET /admin/backup`` to stream and ``eventhub backup PATH`` to write.

The store writes its snapshot (SQLite ``VACUUM INTO``: every commit before it began, so
every acknowledged event, compacted) into a private temporary file beside the database,
named after it (``eventhub.db.backup-…``, 0600, in the 0700 data directory: files.py). The
file is opened and at once unlinked, so it is gone from the directory while it streams and
its space comes back when the stream ends, however it ends; one left by a crash mid-snapshot
is removed by the next backup.

The copy holds the sealed secrets but never the key that opens them (``<db>.key`` or
``EVENTHUB_SECRET_KEY``): the API answers with the key file's path in a header, so the
operator knows what to copy beside the restored database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from eventhub import errors, files
from eventhub.log.base import EventLog

PREFIX = ".backup-"


@dataclass(slots=True)
class Snapshot:
    """An open, already unlinked copy of the database, and what it holds."""

    file: BinaryIO
    size: int
    last_offset: int  # the highest offset handed out when it was taken

    def close(self) -> None:
        self.file.close()


def _remove(path: Path) -> None:
    for name in (path, *(path.with_name(path.name + s) for s in files.SIDECARS)):
        with contextlib.suppress(FileNotFoundError):
            name.unlink()


def _last_offset(path: Path) -> int:
    """The highest offset the copy has handed out (read without changing the file)."""
    conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    finally:
        conn.close()
    return 0 if row is None else int(row[0])


class Backups:
    """The hub's backups of its database ``db``: one snapshot at a time (each takes the room
    of a database), while any number of finished ones stream."""

    def __init__(self, store: EventLog, db: Path | None) -> None:
        """``db``: the SQLite file; None on PostgreSQL, where ``take`` refuses."""
        self._store = store
        self._db = db
        self._one = asyncio.Lock()

    async def take(self) -> Snapshot:
        """A snapshot of the database now; the caller closes it."""
        db = self._db
        if db is None:
            raise errors.SnapshotUnsupported(errors.SnapshotUnsupported.ADVICE)
        async with self._one:
            for stale in db.parent.glob(db.name + PREFIX + "*"):
                _remove(stale)  # a crash mid-snapshot left it: none other is being made
            path = db.with_name(f"{db.name}{PREFIX}{secrets.token_hex(8)}")
            files.ensure_private(path)  # empty and 0600: VACUUM INTO fills an empty file
            try:
                await self._store.snapshot(path)
                last = await asyncio.to_thread(_last_offset, path)
                handle = path.open("rb")
            finally:
                _remove(path)
        return Snapshot(handle, os.fstat(handle.fileno()).st_size, last)
