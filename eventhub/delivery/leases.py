"""Which subscriptions this process delivers (SPEC §9): the manager runs a supervisor only
for a subscription whose lease it holds.

On SQLite one process holds everything (``Local``). On PostgreSQL several processes share
the subscriptions through lease rows (``log/postgres/leases.py``): a lease task renews and
claims, and tells the manager what it gained (start those supervisors, from the committed
cursor) and what it lost (stop them, before anyone else can claim them).

The process engine holds the partitions of process instances through the same interface
(ids ``"0"`` .. ``"31"``, ``processes/partitions.py``): only ``holds``, ``start`` and
``stop`` matter there."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Set
from typing import Protocol

from eventhub import tasks

# (gained, lost): called by the lease task after ``holds`` already answers the new way.
Changed = Callable[[Set[str], Set[str]], Awaitable[None]]
# Of these held ids, the ones with nothing in flight: a rebalance releases those first, so a
# joining process takes over no call that would then be made twice.
Idle = Callable[[Set[str]], Set[str]]


class Leases(Protocol):
    def holds(self, sub_id: str) -> bool:
        """Whether this process delivers ``sub_id`` now."""
        ...

    async def start(self, owner: tasks.Tasks, changed: Changed, idle: Idle | None = None) -> None:
        """Claim a first share (returns once it is claimed) and keep renewing, as a task
        watched by ``owner``; ``changed`` hears every gain and loss after that. ``idle``
        (the instances' partitions): which held ids to release first when over the share;
        without it, the first in sorted order."""
        ...

    async def take(self, sub_id: str) -> bool:
        """A subscription this process just created: claim it now if under its share."""
        ...

    def poke(self) -> None:
        """Something to claim may have appeared (a subscription created elsewhere)."""
        ...

    async def stop(self) -> None:
        """Hand every lease back at once (the supervisors are already stopped)."""
        ...


class Local:
    """One process, every subscription: the SQLite hub's leases."""

    def holds(self, sub_id: str) -> bool:
        return True

    async def start(self, owner: tasks.Tasks, changed: Changed, idle: Idle | None = None) -> None:
        return None

    async def take(self, sub_id: str) -> bool:
        return True

    def poke(self) -> None:
        return None

    async def stop(self) -> None:
        return None
