"""The checkpointer: folds the WAL back into the database in the background, on a connection
of its own, so no ingest commit ever pays for a checkpoint. After a full disk it truncates
the WAL as soon as it can, to give the space back."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import aiosqlite

from eventhub import tasks
from eventhub.log.sqlite.connections import open_async

log = logging.getLogger(__name__)


class Checkpointer:
    """Owns the checkpoint connection (retention also reads on it: it is idle but for a
    PRAGMA a second) and the task that runs the checkpoints."""

    def __init__(self, path: Path, synchronous: str, interval: float) -> None:
        self._path = path
        self._synchronous = synchronous
        self._interval = interval
        self.conn: aiosqlite.Connection | None = None
        self._task: tasks.Watched | None = None
        self.dirty = False  # something was committed since the last checkpoint
        self.squeezed = False  # a write failed on a full disk: truncate the WAL when possible

    async def open(self, owner: tasks.Tasks) -> None:
        self.conn = await open_async(self._path, self._synchronous)
        self._task = owner.watch("log-checkpointer", self._loop)

    async def stop(self) -> None:
        """Stop the task; the connection stays open until ``close``."""
        task, self._task = self._task, None
        if task is not None:
            await task.stop()

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            await conn.close()

    async def _loop(self) -> None:
        """Fold the WAL into the database when something was written. A failed checkpoint
        (a full disk) is logged and tried again on the next tick; after a full disk the
        checkpoint also truncates the WAL, so the space it took comes back."""
        assert self.conn is not None
        while True:
            await asyncio.sleep(self._interval)
            if not (self.dirty or self.squeezed):
                continue
            self.dirty = False
            squeezed = self.squeezed
            mode = "TRUNCATE" if squeezed else "PASSIVE"
            try:
                async with self.conn.execute(f"PRAGMA wal_checkpoint({mode})") as c:
                    row = await c.fetchone()
            except sqlite3.Error as exc:
                self.dirty = True
                log.warning("checkpoint failed, retrying in %g s: %s", self._interval, exc)
                continue
            if squeezed and row is not None and row[0] == 0:
                self.squeezed = False
                log.info("WAL truncated after a full disk")
