"""A process definition saved or deleted on one process is in force on every other for each
event appended after the COMMIT (SPEC §6.2, §9), before any notification: a definition
whose start is its own filters moves the catalogue version, and the append that finds it
moved puts the database's starts in the match index before it matches anything
(``processes/starting.py``: ``refresh_starts``). Two hubs on one real PostgreSQL.

To show that the notification plays no part, the test holds the other hub's definition
lock from before the save until after its append: the reload that ``NOTIFY
eventhub_process`` asks for waits on it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from eventhub import auth
from eventhub.catalog.shapes import ModelSpec, TriggerSpec
from eventhub.hub import Hub
from eventhub.processes import definitions, starts
from tests.conftest import TEST_SECRET_KEY, settings_for
from tests.contract.store.samples import event

ADMIN = auth.Principal("test", "admin", None)


def body(start: dict[str, Any]) -> definitions.ProcessBody:
    """A definition whose instances wait (live, so listed) after they start."""
    steps = [{"id": "approval", "wait": {"type": "order.approved"}}]
    return msgspec.convert(
        {"name": "Orders", "start": start, "steps": steps}, definitions.ProcessBody
    )


def by_type(type_: str) -> dict[str, Any]:
    return {"filters": [{"exact": {"type": type_}}]}


@pytest.fixture
async def two(tmp_path: Path, pg_dsn: str) -> AsyncIterator[tuple[Hub, Hub]]:
    hubs: list[Hub] = []
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            settings = settings_for(tmp_path / name, database=pg_dsn, secret_key=TEST_SECRET_KEY)
            hubs.append(Hub(settings))
            await hubs[-1].start()
        yield hubs[0], hubs[1]
    finally:
        for hub in hubs:
            await hub.stop()


async def private_matches(hub: Hub, definition_id: str) -> list[str]:
    """The events the definition's own start filters matched, as the database holds them."""
    tid = await hub.store.ensure_trigger(starts.PRIVATE_MODEL + definition_id, "start")
    return [e.attributes["id"] for e in await hub.store.read_trigger_after(tid, 0, 100)]


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not await check():
            await asyncio.sleep(0.01)


def started(hub: Hub, definition_id: str, want: set[str]) -> Callable[[], Awaitable[bool]]:
    """Whether the definition's live instances were started by exactly the events ``want``
    (on whichever hub holds the partition of its start)."""

    async def check() -> bool:
        found = set()
        for instance_id in await hub.store.live_instances(definition_id):
            instance = await hub.store.load_instance(instance_id)
            assert instance is not None
            found.add(instance.started_by["id"])
        return found == want

    return check


async def test_a_definition_saved_elsewhere_is_matched_by_the_next_append(
    two: tuple[Hub, Hub],
) -> None:
    a, b = two
    await b.store.append([event("warm-up")])  # b's match index is at the current version
    async with b.processes._lock:  # b's reload for the NOTIFY cannot run meanwhile
        await a.processes.put("orders", body(by_type("order.created")), ADMIN)
        await b.store.append([event("1", type_="order.created"), event("2", type_="other")])
    assert await private_matches(b, "orders") == ["1"]

    # Changed on a: b matches the new filters, not the old ones.
    async with b.processes._lock:
        await a.processes.put("orders", body(by_type("order.placed")), ADMIN)
        await b.store.append([event("3", type_="order.created"), event("4", type_="order.placed")])
    assert await private_matches(b, "orders") == ["1", "4"]
    # Each matched event starts one instance.
    await until(started(a, "orders", {"1", "4"}))

    # Deleted on a: b no longer matches it.
    async with b.processes._lock:
        await a.processes.delete("orders", cancel_instances=True)
        await b.store.append([event("5", type_="order.placed")])
    assert await private_matches(b, "orders") == ["1", "4"]

    # And once b has heard of it all, its own copy agrees (the later reload put back no
    # older start).
    async def forgotten() -> bool:
        return "orders" not in b.processes.definitions

    await until(forgotten)
    await b.store.append([event("6", type_="order.placed")])
    assert await private_matches(b, "orders") == ["1", "4"]


async def test_a_start_moved_to_a_published_trigger_elsewhere(two: tuple[Hub, Hub]) -> None:
    """From its own filters to a published trigger: b stops matching the filters at once,
    and an event of the trigger appended on b just after the save starts an instance (the
    trigger's matches are shared; the start's cursor is the trigger's head at the save)."""
    a, b = two
    await a.catalog.put_model("shop", ModelSpec("Shop", ""))
    spec = TriggerSpec("paid", "", [{"exact": {"type": "order.paid"}}])
    await a.catalog.put_trigger("shop", "paid", spec)
    await a.catalog.publish("shop")
    await a.processes.put("orders", body(by_type("order.created")), ADMIN)
    await b.store.append([event("before", type_="order.paid")])  # before the save: no start
    async with b.processes._lock:
        start = {"knowledgeModel": "shop", "trigger": "paid"}
        await a.processes.put("orders", body(start), ADMIN)
        await b.store.append([event("1", type_="order.created"), event("2", type_="order.paid")])
    assert await private_matches(b, "orders") == []
    await until(started(a, "orders", {"2"}))

    # A definition new on a, started by the published trigger: the same from the first save.
    async with b.processes._lock:
        await a.processes.put("refunds", body(start), ADMIN)
        await b.store.append([event("3", type_="order.paid")])
    await until(started(a, "refunds", {"3"}))
