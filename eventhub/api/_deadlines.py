"""One timer for every request body being read: a slow sender gets ``RequestTimeout``.

``asyncio.timeout`` arms and disarms a loop timer per request (~7 µs with uvloop, a third of a
bare endpoint's whole cost). Every ingest body has the same limit, so the order in which reads
start is the order of their deadlines: one timer, set for the oldest read still waiting, serves
them all, and a read costs a dict entry.

Like ``asyncio.timeout``, expiry cancels the reading task and turns that cancellation, and only
that one, into an error: a cancellation from elsewhere stays a cancellation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


class Expired(Exception):
    """The awaitable passed to ``Deadlines.within`` did not finish in time."""


class Deadlines:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        # Insertion order is deadline order: every entry has the same limit.
        self._waiting: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None

    async def within(self, awaitable: Awaitable[T]) -> T:
        """``await awaitable``, raising ``Expired`` if it takes longer than ``seconds``."""
        task = asyncio.current_task()
        assert task is not None, "Deadlines.within runs inside a task"
        loop = asyncio.get_running_loop()
        cancelling = task.cancelling()
        deadline = self._waiting[task] = loop.time() + self.seconds
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._expire)
        try:
            return await awaitable
        except asyncio.CancelledError:
            if task in self._expired and task.uncancel() <= cancelling:
                raise Expired from None
            raise
        finally:
            del self._waiting[task]
            self._expired.discard(task)

    def _expire(self) -> None:
        """Cancel every read past its deadline, then wait for the oldest one left."""
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        for task, deadline in self._waiting.items():
            if deadline > now:
                self._timer = loop.call_at(deadline, self._expire)
                return
            if task not in self._expired:
                self._expired.add(task)
                task.cancel()
