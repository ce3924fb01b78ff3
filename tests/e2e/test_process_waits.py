"""Waits of process instances (SPEC §6.2): events that come early are buffered and consumed
oldest first, or unrouted when their buffer time runs out or the instance finishes; a wait
with a timeout ends TimedOut. Time is the injected clock; calls are held at the receiver's
gate, so an event can come while a call is in flight."""

from __future__ import annotations

from typing import Any

from tests.conftest import ManualClock, Running
from tests.e2e.call_receiver import CallReceiver
from tests.e2e.delivery_helpers import until_sleeping
from tests.e2e.process_helpers import (
    define,
    emit,
    instance,
    order_process,
    unrouted,
    until_state,
    until_unrouted,
)


async def _held_instance(server: Running, calls: CallReceiver, **extra: Any) -> str:
    """An order instance whose first call is held at the gate; its id."""
    calls.gate.clear()
    await define(server, "orders", order_process(calls.url, **extra))
    await emit(server, "order.created", "o-1", {"orderId": "o-1"})
    (held,) = await calls.until_entered(1)
    return held.headers["ce-cxpinstanceid"]


def _entries(found: dict[str, Any], what: str) -> list[dict[str, Any]]:
    return [h for h in found["history"] if h["what"] == what]


async def test_an_event_that_comes_during_the_call_is_buffered_and_consumed_by_the_wait(
    server: Running, calls: CallReceiver
) -> None:
    instance_id = await _held_instance(server, calls)
    early = await emit(server, "order.approved", "a-1", {"approvedBy": "ann"}, instance=instance_id)
    assert early["correlation"] == "buffered"
    assert (await instance(server, instance_id))["state"] == "Running"

    calls.gate.set()
    done = await until_state(server, instance_id, "Completed")
    assert done["variables"]["approvedBy"] == "ann"
    (buffered,) = _entries(done, "buffered")
    assert buffered["offset"] == early["offset"]
    (resumed,) = _entries(done, "resumed")
    assert resumed["offset"] == early["offset"] and resumed["detail"] == "from the buffer"
    assert _entries(done, "waiting") == []  # it never slept: the buffer had its event
    assert early["offset"] not in {e["offset"] for e in await unrouted(server)}


async def test_the_oldest_buffered_event_is_consumed_and_the_rest_unrouted_at_the_end(
    server: Running, calls: CallReceiver
) -> None:
    instance_id = await _held_instance(server, calls)
    first = await emit(server, "order.approved", "a-1", {"approvedBy": "ann"}, instance=instance_id)
    second = await emit(
        server, "order.approved", "a-2", {"approvedBy": "bob"}, instance=instance_id
    )
    assert first["correlation"] == second["correlation"] == "buffered"

    calls.gate.set()
    done = await until_state(server, instance_id, "Completed")
    assert done["variables"]["approvedBy"] == "ann"
    (resumed,) = _entries(done, "resumed")
    assert resumed["offset"] == first["offset"]
    (left,) = _entries(done, "unrouted")
    assert left["offset"] == second["offset"]
    listed = {e["offset"]: e for e in await unrouted(server)}
    assert set(listed) == {second["offset"]}
    assert listed[second["offset"]]["id"] == "a-2"
    assert listed[second["offset"]]["cxpinstanceid"] == instance_id
    assert "Completed" in listed[second["offset"]]["reason"]


async def test_a_buffered_event_is_unrouted_when_its_buffer_time_runs_out(
    server: Running, calls: CallReceiver, clock: ManualClock
) -> None:
    instance_id = await _held_instance(server, calls, bufferSeconds=60)
    early = await emit(server, "order.approved", "a-1", {"approvedBy": "ann"}, instance=instance_id)
    assert early["correlation"] == "buffered"
    await until_sleeping(clock)  # the timer, until the buffer's expiry
    clock.advance(59)
    assert await unrouted(server) == []
    clock.advance(2)
    (gone,) = await until_unrouted(server, 1)
    assert gone["offset"] == early["offset"] and gone["cxpinstanceid"] == instance_id
    assert "buffer time ran out" in gone["reason"]

    calls.gate.set()  # the wait opens now and finds nothing: the instance sleeps
    waiting = await until_state(server, instance_id, "Waiting")
    assert waiting["step"] == "approval" and "approvedBy" not in waiting["variables"]
    assert [h["offset"] for h in _entries(waiting, "unrouted")] == [early["offset"]]


async def test_buffer_seconds_zero_unroutes_an_early_event_at_once(
    server: Running, calls: CallReceiver
) -> None:
    instance_id = await _held_instance(server, calls, bufferSeconds=0)
    early = await emit(server, "order.approved", "a-1", {}, instance=instance_id)
    assert early["correlation"] == "unrouted"
    (gone,) = await unrouted(server)
    assert gone["offset"] == early["offset"] and "buffers nothing" in gone["reason"]
    calls.gate.set()
    await until_state(server, instance_id, "Waiting")
    woke = await emit(server, "order.approved", "a-2", {}, instance=instance_id)
    assert woke["correlation"] == "woke"
    await until_state(server, instance_id, "Completed")


async def test_a_wait_with_a_timeout_ends_timed_out(
    server: Running, calls: CallReceiver, clock: ManualClock
) -> None:
    body = order_process(calls.url)
    body["steps"][1]["wait"]["timeoutSeconds"] = 30
    await define(server, "orders", body)
    await emit(server, "order.created", "o-1", {})
    (call,) = await calls.until_entered(1)
    instance_id = call.headers["ce-cxpinstanceid"]
    await until_state(server, instance_id, "Waiting")
    await until_sleeping(clock)
    clock.advance(29)
    assert (await instance(server, instance_id))["state"] == "Waiting"
    clock.advance(2)
    ended = await until_state(server, instance_id, "TimedOut")
    assert ended["history"][-1]["what"] == "timedout"
    assert ended["error"] and "timeout" in ended["error"]

    timedout = [
        e
        for e in await server.log()
        if e["event"]["type"] == "eventhub.instance.timedout"
        and e["event"].get("subject") == instance_id
    ]
    assert len(timedout) == 1
    assert timedout[0]["event"]["data"]["state"] == "TimedOut"

    late = await emit(server, "order.approved", "a-1", {}, instance=instance_id)
    assert late["correlation"] == "unrouted"
    (gone,) = await unrouted(server)
    assert gone["offset"] == late["offset"] and "TimedOut" in gone["reason"]


async def test_an_earlier_timeout_opened_later_fires_first(
    server: Running, calls: CallReceiver, clock: ManualClock
) -> None:
    # The timer sleeps until the earliest due: a shorter timeout opened while it sleeps
    # towards a later one must wake it to plan again.
    for name, seconds in (("slow", 60), ("fast", 10)):
        body = order_process(calls.url)
        body["start"] = {"filters": [{"exact": {"type": f"{name}.created"}}]}
        body["steps"][1]["wait"]["timeoutSeconds"] = seconds
        await define(server, name, body)
    ids = {}
    for n, name in enumerate(("slow", "fast"), 1):
        await emit(server, f"{name}.created", f"{name}-1", {})
        ids[name] = (await calls.until_entered(n))[-1].headers["ce-cxpinstanceid"]
        await until_state(server, ids[name], "Waiting")
    await until_sleeping(clock)
    clock.advance(11)
    await until_state(server, ids["fast"], "TimedOut")
    assert (await instance(server, ids["slow"]))["state"] == "Waiting"
    await until_sleeping(clock)
    clock.advance(50)
    await until_state(server, ids["slow"], "TimedOut")
