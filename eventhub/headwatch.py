"""Waiting for the log to grow: ``GET /events?after=N&wait=S`` (a long poll, which ``eventhub
tail --follow`` and any consumer may use) answers as soon as an event after ``N`` is
committed, or with an empty page after ``S`` seconds.

The store calls ``moved`` after each commit that appended; every waiter of that moment wakes
and reads once. A waiter costs one ``asyncio.Event`` wait, however many there are."""

from __future__ import annotations

import asyncio
import contextlib


class HeadWatch:
    def __init__(self) -> None:
        self._moved = asyncio.Event()
        self.head = 0  # the last head a commit reported (0: none since start)
        self._closed = False

    def moved(self, head: int) -> None:
        """A commit appended: the log's head is now ``head``."""
        self.head = head
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    def close(self) -> None:
        """The server is shutting down: every waiter returns now, so a long poll does not
        hold the graceful shutdown for its remaining seconds."""
        self._closed = True
        self._moved.set()

    async def after(self, offset: int, seconds: float) -> None:
        """Return once the head is past ``offset``, ``seconds`` have passed (loop time: an
        operational wait, like a socket timeout, not domain time), or the server stops."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while self.head <= offset and not self._closed:
                    await self._moved.wait()
