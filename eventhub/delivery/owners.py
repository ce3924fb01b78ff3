"""A ``Gate`` per owner (the API key a subscription belongs to), so that one tenant's stalled
receivers hold at most their own share of a resource that every tenant needs.

One consumer with 300 subscriptions to a receiver that stalls 30 s used to hold every
delivery connection, and a healthy subscription of another owner waited behind them. Taking
the owner's permit *before* the shared one means an owner at its cap waits without holding
anything the others need.

Gates are created on first use and dropped as soon as all their permits are back, so owners
that left (revoked keys, deleted subscriptions) cost nothing.
"""

from __future__ import annotations

import asyncio

from eventhub.delivery.gate import Gate


class PerOwner:
    def __init__(self, permits: int) -> None:
        self.permits = permits
        self._gates: dict[str, Gate] = {}

    def __len__(self) -> int:
        """How many owners hold or wait for a permit now."""
        return len(self._gates)

    async def acquire(self, owner: str) -> None:
        gates = self._gates
        owned = gates.get(owner)
        if owned is None:
            owned = gates[owner] = Gate(self.permits)
        try:
            await owned.acquire()
        except asyncio.CancelledError:
            # A waiter cancelled after being handed the last outstanding permit gave it back
            # inside ``Gate.acquire``: nobody else will release this gate, so drop it here.
            self._drop_if_idle(owner, owned)
            raise

    def release(self, owner: str) -> None:
        owned = self._gates[owner]
        owned.release()
        self._drop_if_idle(owner, owned)

    def _drop_if_idle(self, owner: str, owned: Gate) -> None:
        if owned.idle and self._gates.get(owner) is owned:
            del self._gates[owner]
