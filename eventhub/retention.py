"""Retention (SPEC §7): a watched background task that deletes the oldest events in small
batches once they are older than ``retention_days`` or the database uses more than
``retention_bytes``, never one a live subscription, process start or instance still needs
(``eventhub/log/retention.py`` says which, and what goes with an event).

A pass runs at start and then every ``retention_interval`` seconds of the hub's clock (tests
move it by hand). Within a pass, batch follows batch, each its own short write through the
group commit with a pause between, so ingest never waits behind a long transaction; the pass
ends when a batch finds nothing to delete.

Space: SQLite reuses the pages a DELETE frees for new events, so the file stops growing but
does not shrink (``auto_vacuum`` is off: it would cost every commit). A backup is compacted
(``VACUUM INTO``); restoring one is the way to hand the space back to the file system.
"""

from __future__ import annotations

import asyncio
import logging

from eventhub import errors, tasks
from eventhub.clock import Clock, rfc3339
from eventhub.log.base import EventLog

log = logging.getLogger(__name__)

# Events a write. Measured on a 200,000-event log (2 cores): ~3 ms of the writer, ~10 ms when
# every event is in a trace (the trace summary trigger of 0005_traces.sql runs per member).
BATCH = 200
PAUSE = 0.01  # seconds between batches (loop time: pacing, not domain time)
DAY = 86400.0


def cutoff(now: float, days: float) -> str | None:
    """The receive time (RFC 3339, as the store writes it) before which an event is old
    enough to go; None when age deletes nothing (``days`` 0 or infinite)."""
    if days <= 0 or days == float("inf"):
        return None
    return rfc3339(max(0.0, now - days * DAY))


class Retention:
    """The hub's retention task: ``start`` it (it does nothing unless a limit is set),
    ``stop`` it at shutdown."""

    def __init__(
        self,
        store: EventLog,
        clock: Clock,
        days: float,
        max_bytes: int,
        interval: float,
        batch: int = BATCH,
    ) -> None:
        self._store = store
        self._clock = clock
        self._days = days
        self._max_bytes = max_bytes or None
        self._interval = interval
        self._batch = batch
        self._task: tasks.Watched | None = None
        self._held_at: int | None = None  # the last hold logged, so it is logged once

    @property
    def enabled(self) -> bool:
        return cutoff(self._clock.now(), self._days) is not None or self._max_bytes is not None

    def start(self, owner: tasks.Tasks) -> None:
        if self.enabled:
            self._task = owner.watch("log-retention", self._run)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await task.stop()

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except errors.InsufficientStorage:
                # A DELETE needs room in the WAL too. Not a crash: /readyz already says the
                # disk is full, and the next pass tries again.
                log.warning("retention could not delete on a full disk; next pass later")
            await self._clock.sleep(self._interval)

    async def sweep(self) -> int:
        """One pass: batches until none is left to delete; returns how many events went."""
        total = 0
        while True:
            older = cutoff(self._clock.now(), self._days)
            pruned = await self._store.prune(older, self._max_bytes, self._batch)
            total += pruned.deleted
            if pruned.held_at is not None and pruned.held_at != self._held_at:
                log.warning(
                    "retention is held at offset %d: a live subscription (Paused, Failed or"
                    " Rejected ones too), process start or instance still needs it; older"
                    " events stay until it moves on",
                    pruned.held_at,
                )
            self._held_at = pruned.held_at
            if not pruned.deleted:
                break
            await asyncio.sleep(PAUSE)
        if total:
            log.info(
                "retention deleted %d events; the log starts at offset %d",
                total,
                pruned.first_offset,
            )
        return total
