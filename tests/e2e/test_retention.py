"""Retention end to end (SPEC §7): the real hub with an injected clock deletes old events in
the background, never one a live subscription or instance still needs; reads below the
retained range are 410; offsets go on after everything was deleted and after a restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import ManualClock, Running, settings_for
from tests.e2e.call_receiver import CallReceiver
from tests.e2e.delivery_helpers import SUBS, publish_trigger, request, send, subscribe
from tests.e2e.helpers import bearer, error_of, serving
from tests.e2e.process_helpers import define, emit, order_process, until_instances, until_state
from tests.e2e.receiver import Receiver

DAY = 86400.0
INTERVAL = 60.0

Hub = Callable[..., AbstractAsyncContextManager[Running]]


@pytest.fixture
def hub_at(tmp_path: Path, clock: ManualClock) -> Hub:
    """``async with hub_at(**settings)``: a hub on this test's database and clock; enter it
    again for a restart on the same database."""
    port_settings = settings_for(tmp_path)

    @asynccontextmanager
    async def running(**overrides: Any) -> AsyncIterator[Running]:
        settings = settings_for(
            tmp_path, port=port_settings.port, retention_interval=INTERVAL, **overrides
        )
        async with serving(settings, clock) as server:
            yield server

    return running


async def advance(clock: ManualClock, seconds: float) -> None:
    """``clock.advance``, once retention sleeps its interval: an advance while a pass is still
    running would be passed by the sleep that follows it, and no pass would come."""
    async with asyncio.timeout(10):
        while not any(
            not future.done() and deadline - clock.t <= INTERVAL
            for deadline, future in clock._sleepers
        ):
            await asyncio.sleep(0.002)
    clock.advance(seconds)


async def page(server: Running, after: int) -> aiohttp.ClientResponse:
    async with server.http.get(
        f"{server.url}/events", params={"after": after, "limit": 1000}, headers=bearer()
    ) as response:
        await response.read()
        return response


async def until_first_offset(server: Running, first: int, timeout: float = 10.0) -> None:
    """Poll until the log starts at ``first``: ``after=first - 2`` is 410 naming it."""
    async with asyncio.timeout(timeout):
        while True:
            response = await page(server, max(0, first - 2))
            if response.status == 410 and response.headers["Eventhub-First-Offset"] == str(first):
                return
            await asyncio.sleep(0.01)


async def offsets_after(server: Running, after: int) -> list[int]:
    response = await page(server, after)
    assert response.status == 200, await response.text()
    return [e["offset"] for e in (await response.json())["events"]]


async def test_old_events_go_reads_below_are_410_and_offsets_go_on(
    hub_at: Hub, clock: ManualClock
) -> None:
    async with hub_at(retention_days=1.0) as server:
        old = await send(server, 5)
        await advance(clock, 0.5 * DAY)
        young = await send(server, 3, start=5)
        assert old == [1, 2, 3, 4, 5] and young == [6, 7, 8]
        await advance(clock, 0.6 * DAY)  # the first five are 1.1 days old, the rest 0.6
        await until_first_offset(server, 6)

        error = await error_of(await page(server, 0), 410, "below_retained_range")
        assert "offset 6" in error["message"]
        assert await offsets_after(server, 5) == [6, 7, 8]  # from the first retained: 200
        assert await offsets_after(server, 8) == []

        status, _ = await request(server, "GET", "/events/%2Fshop/e-0")
        assert status == 404  # deleted, with its identity
        status, body = await request(server, "GET", "/events/%2Fshop/e-5")
        assert status == 200 and body["offset"] == 6
        # Sent again, a deleted event is a new one: a new offset, revision 1.
        again = await send(server, 1)
        assert again == [9]
        status, body = await request(server, "GET", "/events/%2Fshop/e-0")
        assert status == 200 and body["revision"] == 1

        await advance(clock, 2 * DAY)
        await until_first_offset(server, 10)  # all gone: the log starts past the head
        assert await offsets_after(server, 9) == []

    async with hub_at(retention_days=1.0) as server:  # a restart on the emptied log
        assert await send(server, 1, start=100) == [10]
        assert await offsets_after(server, 9) == [10]
        await error_of(await page(server, 8), 410, "below_retained_range")


async def test_a_paused_subscriptions_backlog_survives_until_delivered(
    hub_at: Hub, clock: ManualClock, receiver: Receiver
) -> None:
    other = await Receiver().start()
    try:
        async with hub_at(retention_days=1.0) as server:
            await publish_trigger(server)
            await publish_trigger(server, "audit", "cancelled", [{"exact": {"type": "x"}}])
            paused = await subscribe(server, receiver.url)
            await subscribe(server, other.url)  # Active, keeps up: holds nothing back
            await subscribe(server, other.url, "audit", "cancelled")  # nothing of it comes
            status, _ = await request(server, "PATCH", f"{SUBS}/{paused['id']}/pause")
            assert status == 200
            before = await send(server, 3, type_="order.cancelled")
            backlog = await send(server, 2, start=3)
            after = await send(server, 2, type_="order.cancelled", start=5)
            await other.wait_for(2)
            await advance(clock, 2 * DAY)
            # Everything before the paused subscription's backlog goes, nothing from it on.
            await until_first_offset(server, backlog[0])
            assert before[-1] < backlog[0]
            assert (await offsets_after(server, backlog[0] - 1))[:4] == [*backlog, *after]

            status, _ = await request(server, "PATCH", f"{SUBS}/{paused['id']}/resume")
            assert status == 200
            await receiver.wait_for(2)
            assert [b[0]["offset"] for b in receiver.json_bodies()] == backlog
            async with asyncio.timeout(10):  # its cursor is saved after the 2xx
                while True:
                    status, state = await request(server, "GET", f"{SUBS}/{paused['id']}")
                    if state["offset"] == backlog[-1]:
                        break
                    await asyncio.sleep(0.01)
            head = await server.hub.store.head()
            await advance(clock, 2 * DAY)
            await until_first_offset(server, head + 1)
    finally:
        await other.stop()


async def test_a_running_instance_keeps_its_cause_and_its_buffered_events(
    hub_at: Hub, clock: ManualClock, calls: CallReceiver
) -> None:
    async with hub_at(retention_days=1.0) as server:
        await define(server, "approval", order_process(calls.url, bufferSeconds=30 * DAY))
        calls.gate.clear()  # the call step stays in flight: the instance stays Running
        await emit(server, "noise", "n-1")
        started = await emit(server, "order.created", "o-1", {"order": 1})
        (found,) = await until_instances(server, 1)
        await calls.until_entered(1)
        buffered = await emit(server, "order.approved", "a-1", {"ok": True}, found["id"])
        assert buffered["correlation"] == "buffered"
        await advance(clock, 2 * DAY)
        await until_first_offset(server, started["offset"])
        log = await offsets_after(server, started["offset"] - 1)
        assert started["offset"] in log and buffered["offset"] in log

        calls.gate.set()
        done = await until_state(server, found["id"], "Completed")
        assert done["variables"]["ok"] is True  # the buffered event's data, still readable
        head = await server.hub.store.head()
        await advance(clock, 2 * DAY)
        await until_first_offset(server, head + 1)


async def test_retention_bytes_deletes_what_nothing_needs(hub_at: Hub, clock: ManualClock) -> None:
    async with hub_at(retention_bytes=1) as server:  # always over: every unneeded event goes
        offsets = await send(server, 4)
        await advance(clock, INTERVAL)
        await until_first_offset(server, offsets[-1] + 1)


async def test_traces_and_identities_follow_what_was_deleted(
    hub_at: Hub, clock: ManualClock
) -> None:
    async def structured(id_: str, trace: str, data: dict[str, Any]) -> int:
        event: dict[str, Any] = {"specversion": "1.0", "id": id_, "source": "/shop", "type": "step"}
        event |= {"traceid": trace, "data": data}
        headers = {**bearer(), "Content-Type": "application/cloudevents+json"}
        async with server.http.post(f"{server.url}/events", json=event, headers=headers) as r:
            assert r.status == 200, await r.text()
            offset: int = (await r.json())["events"][0]["offset"]
            return offset

    async with hub_at(retention_days=1.0) as server:
        await structured("a", "t1", {"n": 1})
        await structured("b", "t2", {"n": 2})  # t2 has no younger member: it goes whole
        await structured("c", "t1", {"v": 1})  # revised below, young
        await advance(clock, 0.9 * DAY)  # a pass runs: nothing is a day old yet
        kept = await structured("d", "t1", {"n": 4})
        revised = await structured("c", "t1", {"v": 2})
        await advance(clock, 0.2 * DAY)  # now a, b and c's first revision are
        await until_first_offset(server, kept)

        status, _ = await request(server, "GET", "/api/traces/t2")
        assert status == 404
        status, t1 = await request(server, "GET", "/api/traces/t1")
        assert status == 200
        assert [(e["id"], e["revision"]) for e in t1["events"]] == [("d", 1), ("c", 2)]
        listed = (await server.get_json("/api/traces"))["traces"]
        assert [(t["traceId"], t["events"]) for t in listed] == [("t1", 2)]
        # The revised event keeps its identity: its old revision went, the new one is read.
        status, body = await request(server, "GET", "/events/%2Fshop/c")
        assert status == 200 and (body["offset"], body["revision"]) == (revised, 2)
        again = await structured("c", "t1", {"v": 2})
        assert again == revised  # still a duplicate: not stored again
