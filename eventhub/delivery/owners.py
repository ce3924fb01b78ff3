"""Permits counted per owner (the API key a subscription belongs to), so that one tenant's
stalled receivers hold at most their own share of a resource that every tenant needs.

One consumer with 300 subscriptions to a receiver that stalls 30 s used to hold every
delivery connection, and a healthy subscription of another owner waited behind them. Taking
the owner's permit *before* the shared one means an owner at its cap waits without holding
anything the others need.

Every delivery takes two of these (a page, a connection), so the common case costs a dict
update and no coroutine: ``try_acquire`` succeeds synchronously while the owner is under its
cap, and only an owner at its cap pays for a waiter (handed its permit straight by
``release``, first come first served, as ``gate.Gate`` does). An owner's entry is dropped as
soon as it holds nothing, so owners that left (revoked keys, deleted subscriptions) cost
nothing.
"""

from __future__ import annotations

import asyncio
from collections import deque


class PerOwner:
    def __init__(self, permits: int) -> None:
        self.permits = permits
        self._held: dict[str, int] = {}  # owner -> permits held now (absent: none)
        # Only for owners at their cap; cancelled waiters are skipped on release.
        self._waiters: dict[str, deque[asyncio.Future[None]]] = {}

    def __len__(self) -> int:
        """How many owners hold or wait for a permit now."""
        return len(self._held)

    def try_acquire(self, owner: str) -> bool:
        """Take a permit if ``owner`` is under its cap; never waits."""
        held = self._held.get(owner, 0)
        if held >= self.permits:
            return False
        self._held[owner] = held + 1
        return True

    async def acquire(self, owner: str) -> None:
        if self.try_acquire(owner):
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(owner, deque()).append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(owner)  # handed a permit, then cancelled before using it
            raise

    def release(self, owner: str) -> None:
        """Give a permit back: straight to the owner's first live waiter, if any."""
        waiting = self._waiters.get(owner)
        while waiting:
            waiter = waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the permit changes hands; the count stays
                if not waiting:
                    del self._waiters[owner]
                return
        if waiting is not None:
            del self._waiters[owner]
        held = self._held[owner] - 1
        if held:
            self._held[owner] = held
        else:
            del self._held[owner]
