"""The shared body deadline: a read past its limit fails with ``Expired``, in order of arrival,
one timer for all; a read that finishes in time, or a cancellation from elsewhere, is left as
it is."""

from __future__ import annotations

import asyncio

import pytest

from eventhub.api._deadlines import Deadlines, Expired


async def test_a_read_that_finishes_in_time_returns_its_value() -> None:
    deadlines = Deadlines(1.0)
    assert await deadlines.within(asyncio.sleep(0, "done")) == "done"
    assert not deadlines._waiting


async def test_a_read_past_its_deadline_expires_and_the_task_is_not_left_cancelled() -> None:
    deadlines = Deadlines(0.05)
    with pytest.raises(Expired):
        await deadlines.within(asyncio.Event().wait())
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0)  # no cancellation is pending either
    assert not deadlines._waiting


async def test_reads_expire_in_order_and_later_ones_keep_their_own_time() -> None:
    deadlines = Deadlines(0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    ended: dict[str, float] = {}

    async def read(name: str, delay: float, done: asyncio.Event) -> str:
        await asyncio.sleep(delay)
        try:
            await deadlines.within(done.wait())
        except Expired:
            ended[name] = loop.time() - started - delay
            return "expired"
        return "read"

    finished = asyncio.Event()
    first = asyncio.create_task(read("first", 0.0, asyncio.Event()))
    quick = asyncio.create_task(read("quick", 0.05, finished))
    second = asyncio.create_task(read("second", 0.1, asyncio.Event()))
    await asyncio.sleep(0.15)
    finished.set()
    assert list(await asyncio.gather(first, quick, second)) == ["expired", "read", "expired"]
    # Each expired about its own limit after it started, not when the first one did.
    for name in ("first", "second"):
        assert 0.19 <= ended[name] < 0.6, ended


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    deadlines = Deadlines(10.0)
    task = asyncio.create_task(deadlines.within(asyncio.Event().wait()))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not deadlines._waiting


async def test_an_outside_cancellation_during_expiry_wins() -> None:
    """Cancelled by the deadline and by its owner at once: the owner's cancellation stands."""
    deadlines = Deadlines(0.05)
    task = asyncio.create_task(deadlines.within(asyncio.Event().wait()))
    await asyncio.sleep(0.01)
    loop = asyncio.get_running_loop()
    # Fire the owner's cancel in the same loop turn as the expiry.
    assert deadlines._timer is not None
    loop.call_at(deadlines._timer.when(), task.cancel)
    with pytest.raises(asyncio.CancelledError):
        await task
