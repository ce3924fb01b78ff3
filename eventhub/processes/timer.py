"""The process engine's timer (SPEC §6.2): one task, while this process holds partition 0,
sleeps until the earliest timeout or buffer expiry (an index lookup) and lets the store time
out and unroute what is due. Anything that sets a due time earlier wakes it (``_due``)."""

from __future__ import annotations

import asyncio
from typing import Any

from eventhub.processes import core

TIMER_TASK = "process-timer"
EXPIRE_BATCH = 500


class Timer(core.Core):
    def _due(self, when: float) -> None:
        """Something falls due at ``when``: wake the timer if that is before its plan."""
        if self._planned is None or when < self._planned:
            self._planned = when
            self._timer_wake.set()

    async def _timer_loop(self) -> None:
        store, clock = self._store, self._clock
        while True:
            self._timer_wake.clear()
            while await store.expire_instances(EXPIRE_BATCH) >= EXPIRE_BATCH:
                pass
            due = await store.next_due()
            if self._timer_wake.is_set():
                continue  # something earlier came while we looked
            self._planned = due
            if due is None:
                await self._timer_wake.wait()
                continue
            delay = due - clock.now()
            if delay > 0:
                await _first(clock.sleep(delay), self._timer_wake.wait())


async def _first(*waits: Any) -> None:
    """Until the first of ``waits`` (coroutines) returns; the others are cancelled."""
    pending = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
