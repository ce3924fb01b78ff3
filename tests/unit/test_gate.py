"""The delivery gate: at most N holders, first come first served, cancellation-safe."""

from __future__ import annotations

import asyncio

from eventhub.delivery.gate import Gate


async def test_at_most_n_hold_it_and_waiters_enter_in_order() -> None:
    gate = Gate(2)
    order: list[int] = []
    holding = 0
    most = 0

    async def worker(i: int) -> None:
        nonlocal holding, most
        async with gate:
            order.append(i)
            holding += 1
            most = max(most, holding)
            await asyncio.sleep(0.001)
            holding -= 1

    await asyncio.gather(*(worker(i) for i in range(50)))
    assert most == 2 and order == list(range(50)) and gate.free == 2


async def test_a_cancelled_waiter_gives_up_its_place() -> None:
    gate = Gate(1)
    await gate.acquire()
    waiting = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    gate.release()
    assert gate.free == 1


async def test_a_waiter_cancelled_after_being_handed_the_permit_passes_it_on() -> None:
    gate = Gate(1)
    await gate.acquire()
    first = asyncio.create_task(gate.acquire())
    second = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0)
    gate.release()  # hands the permit to ``first`` ...
    first.cancel()  # ... which is cancelled before it runs
    await asyncio.gather(first, return_exceptions=True)
    await asyncio.wait_for(second, 1.0)  # so ``second`` gets it
    assert gate.free == 0
    gate.release()
    assert gate.free == 1


async def test_try_acquire_takes_only_a_free_permit_and_never_jumps_the_queue() -> None:
    gate = Gate(1)
    assert gate.try_acquire() and gate.free == 0
    assert not gate.try_acquire()
    waiter = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0)
    gate.release()  # handed to the waiter, not freed for a try_acquire to take
    assert not gate.try_acquire()
    await waiter
    gate.release()
    assert gate.idle and gate.try_acquire()
