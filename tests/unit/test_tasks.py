"""The task owner's pure parts (the restart delay) and its bookkeeping."""

from __future__ import annotations

import asyncio

import pytest

from eventhub import tasks


@pytest.mark.parametrize(
    ("crashes", "delay"), [(0, 0.0), (1, 0.5), (2, 1.0), (3, 2.0), (6, 16.0), (7, 30.0), (50, 30.0)]
)
def test_restart_delay_doubles_up_to_a_cap(crashes: int, delay: float) -> None:
    assert tasks.restart_delay(crashes) == delay


async def test_a_task_that_returns_is_forgotten_and_stop_cancels_the_rest() -> None:
    owner = tasks.Tasks()
    forever = asyncio.Event()
    done = owner.watch("short", lambda: asyncio.sleep(0, None))

    async def until_stopped() -> None:
        await forever.wait()

    long = owner.watch("long", until_stopped)
    await done.wait()
    assert owner.names() == ["long"] and owner.health() == []
    await owner.stop()
    assert long.done and owner.names() == []
