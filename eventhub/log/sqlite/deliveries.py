"""Delivery batching: cursors and attempts written by the group commit, one queued write for
every successful delivery recorded while the batch was held and queued (``SqliteStore.
record_delivery`` says how long it is held)."""

from __future__ import annotations

import sqlite3

from eventhub.log.sqlite import records
from eventhub.models import Attempt, Subscription


class Deliveries:
    """Successful deliveries waiting for the next flush: one queued write for all of them."""

    __slots__ = ("attempts", "queued", "subs", "written")

    def __init__(self) -> None:
        self.subs: dict[str, Subscription] = {}
        self.attempts: list[tuple[str, Attempt]] = []
        self.queued = False  # handed to the writer (until then the store holds it)
        self.written = False  # from now on, a new delivery starts the next batch

    def __call__(self, cur: sqlite3.Cursor) -> None:
        # Idempotent, so the writer may run it again alone after a failed group commit:
        # progress is each subscription's current state, attempts replace themselves.
        self.written = True
        records.save_progress_of(cur, self.subs.values())
        records.add_attempts(cur, self.attempts)


def save_delivery(cur: sqlite3.Cursor, sub: Subscription, attempt: Attempt | None) -> None:
    """A subscription's new cursor and counters, and the attempt that moved them."""
    records.save_progress(cur, sub)
    if attempt is not None:
        records.add_attempt(cur, sub.id, attempt)
