"""A counting semaphore whose release hands its permit straight to the first waiter.

``asyncio.Semaphore`` (3.11) leaves a woken waiter in its queue until the waiter's task runs,
and every release scans past the woken ones: when a fan-out to 10,000 subscriptions frees
hundreds of connections in one pass of the loop, that scan grows with the square of them.
Here a release pops the waiter it wakes, so it costs the same however many wait.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType


class Gate:
    def __init__(self, permits: int) -> None:
        self._permits = permits
        self._free = permits
        # Waiters exist only while no permit is free; cancelled ones are skipped on release.
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def free(self) -> int:
        return self._free

    @property
    def idle(self) -> bool:
        """Every permit is back: nobody holds one, and so nobody waits for one."""
        return self._free == self._permits

    def try_acquire(self) -> bool:
        """Take a permit if one is free; never waits (the common case costs no coroutine)."""
        if self._free > 0:
            self._free -= 1
            return True
        return False

    async def acquire(self) -> None:
        if self._free > 0:
            self._free -= 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a permit, then cancelled before using it: pass it on
            raise

    def release(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
