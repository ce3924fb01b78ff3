"""Per-owner gates: a cap per owner, independent owners, nothing kept for owners that left."""

from __future__ import annotations

import asyncio

import pytest

from eventhub.delivery.owners import PerOwner


async def test_an_owner_at_its_cap_waits_and_others_do_not() -> None:
    gates = PerOwner(2)
    await gates.acquire("a")
    await gates.acquire("a")
    third = asyncio.create_task(gates.acquire("a"))
    await gates.acquire("b")  # another owner is not held up by a's cap
    await asyncio.sleep(0)
    assert not third.done()
    gates.release("a")
    await third
    assert len(gates) == 2


async def test_a_gate_is_dropped_once_every_permit_is_back() -> None:
    gates = PerOwner(2)
    await gates.acquire("a")
    await gates.acquire("a")
    gates.release("a")
    assert len(gates) == 1
    gates.release("a")
    assert len(gates) == 0


async def test_a_cancelled_waiter_leaves_nothing_behind() -> None:
    gates = PerOwner(1)
    await gates.acquire("a")
    waiter = asyncio.create_task(gates.acquire("a"))
    await asyncio.sleep(0)
    gates.release("a")  # handed to the waiter...
    waiter.cancel()  # ...which is cancelled before it runs: the permit comes back
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert len(gates) == 0
