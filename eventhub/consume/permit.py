"""A consumer's hold on a page of events in memory: one of a hub-wide budget, taken after one
of its owner's share, so that one owner's stalled consumers cannot hold every page.

Without a bound, 10,000 consumers waking to a backlog would each read a page before waiting
for whatever they do with it (a delivery connection): gigabytes. A consumer waiting out a
backoff gives its permit back.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class OwnerShares(Protocol):
    """Permits counted per owner (``eventhub.delivery.owners.PerOwner``)."""

    def try_acquire(self, owner: str) -> bool: ...
    async def acquire(self, owner: str) -> None: ...
    def release(self, owner: str) -> None: ...


class Permit:
    """One consumer's hold on ``pages``, released at most once per acquire, whatever
    cancellation interrupts.

    The owner's share is taken first: a consumer waiting for its owner's delivery connections
    holds a page, and without a share per owner, one owner's stalled subscriptions would hold
    every page while another owner's healthy one waits for a page.
    """

    def __init__(self, pages: asyncio.Semaphore, shares: OwnerShares, owner: str) -> None:
        self._pages = pages
        self._shares = shares
        self._owner = owner
        self._held = False

    async def acquire(self) -> None:
        if not self._held:
            if not self._shares.try_acquire(self._owner):
                await self._shares.acquire(self._owner)
            try:
                await self._pages.acquire()
            except BaseException:
                self._shares.release(self._owner)
                raise
            self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._pages.release()
            self._shares.release(self._owner)
