"""Process instances end to end (SPEC §6.2, seed 000): a real hub, real receivers, the
Standard Webhooks and Svix packages verifying every call. The seed flow, what starts an
instance (and what does not), and the lifecycle events a subscriber sees."""

from __future__ import annotations

import asyncio

import orjson
import standardwebhooks
import svix.webhooks

from tests.conftest import Running
from tests.e2e.delivery_helpers import request, subscribe
from tests.e2e.process_helpers import (
    define,
    emit,
    instance,
    instances,
    order_process,
    until_instances,
    until_state,
)
from tests.e2e.receiver import Act, Receiver


async def test_the_seed_flow_start_call_wait_wake_complete(
    server: Running, receiver: Receiver
) -> None:
    receiver.default = Act(200)
    created = await define(server, "orders", order_process(receiver.url))
    secret = created["secret"]
    assert secret.startswith("whsec_")

    await emit(server, "order.created", "o-1", {"orderId": "o-1", "amount": 12})
    (seen,) = await receiver.wait_for(1)
    instance_id = seen.headers["ce-cxpinstanceid"]
    assert seen.headers["ce-type"] == "eventhub.instance.call"
    standardwebhooks.Webhook(secret).verify(seen.body, seen.headers)
    svix.webhooks.Webhook(secret).verify(seen.body, {k.lower(): v for k, v in seen.headers.items()})
    call = orjson.loads(seen.body)
    assert call["instanceId"] == instance_id
    assert call["step"] == "notify"
    assert call["variables"] == {"orderId": "o-1", "amount": 12}
    assert call["event"]["id"] == "o-1"

    waiting = await until_state(server, instance_id, "Waiting")
    assert waiting["step"] == "approval"
    wrong = await emit(server, "order.shipped", "s-1", {"x": 1}, instance=instance_id)
    assert wrong["correlation"] == "buffered"
    right = await emit(server, "order.approved", "a-1", {"approvedBy": "ann"}, instance=instance_id)
    assert right["correlation"] == "woke"
    done = await until_state(server, instance_id, "Completed")
    assert done["variables"]["approvedBy"] == "ann"
    whats = [h["what"] for h in done["history"]]
    assert whats[0] == "started" and whats[-1] == "completed"
    assert "called" in whats and "waiting" in whats and "resumed" in whats
    late = await emit(server, "order.approved", "a-2", {}, instance=instance_id)
    assert late["correlation"] == "unrouted"
    unknown = await emit(server, "order.approved", "a-3", {}, instance="nope")
    assert unknown["correlation"] == "unrouted"
    status, unrouted = await request(server, "GET", "/api/unrouted")
    assert status == 200
    reasons = {e["id"]: e["reason"] for e in unrouted["events"]}
    assert "a-2" in reasons and "a-3" in reasons
    assert len(await until_instances(server, 1)) == 1
    assert (await instance(server, instance_id))["state"] == "Completed"


async def _started_by(server: Running, n: int) -> list[str]:
    """The ids of the events that started the ``n`` instances there are, checking there are
    no more: the caller sent a last start event whose instance is the ``n``th, and the start
    consumer reads the log in order."""
    found = await until_instances(server, n)
    assert len(found) == n, found
    return [i["startedBy"]["id"] for i in found]


async def test_a_start_event_naming_an_instance_starts_nothing(
    server: Running, receiver: Receiver
) -> None:
    await define(server, "orders", order_process(receiver.url))
    named = await emit(server, "order.created", "o-named", {}, instance="someone-else")
    assert named["correlation"] == "unrouted"
    await emit(server, "order.created", "o-plain", {})
    assert await _started_by(server, 1) == ["o-plain"]


async def test_events_from_before_the_definition_start_nothing(
    server: Running, receiver: Receiver
) -> None:
    await emit(server, "order.created", "o-before", {})
    await define(server, "orders", order_process(receiver.url))
    await emit(server, "order.created", "o-after", {})
    assert await _started_by(server, 1) == ["o-after"]


async def test_each_start_event_starts_exactly_one_instance(
    server: Running, receiver: Receiver
) -> None:
    await define(server, "orders", order_process(receiver.url))
    sent = [f"o-{i}" for i in range(20)]
    await asyncio.gather(*(emit(server, "order.created", e, {"n": i}) for i, e in enumerate(sent)))
    await emit(server, "order.created", "o-last", {})
    started = await _started_by(server, 21)
    assert sorted(started) == sorted([*sent, "o-last"])
    await receiver.wait_for(21)
    assert len({s.headers["ce-cxpinstanceid"] for s in receiver.seen}) == 21
    assert len(await instances(server, definition="orders")) == 21


async def test_a_subscriber_sees_an_instances_lifecycle_in_order(
    server: Running, receiver: Receiver
) -> None:
    watcher = Receiver()
    await watcher.start()
    try:
        await subscribe(server, watcher.url, km="eventhub", trigger="instances-all")
        await define(server, "orders", order_process(receiver.url))
        await emit(server, "order.created", "o-1", {})
        (call,) = await receiver.wait_for(1)
        instance_id = call.headers["ce-cxpinstanceid"]
        await until_state(server, instance_id, "Waiting")
        await emit(server, "order.approved", "a-1", {}, instance=instance_id)
        await until_state(server, instance_id, "Completed")
        await watcher.wait_for(4)
    finally:
        await watcher.stop()
    events = [item["event"] for body in watcher.json_bodies() for item in body]
    assert {e["subject"] for e in events} == {instance_id}
    assert [e["type"] for e in events] == [
        "eventhub.instance.started",
        "eventhub.instance.waiting",
        "eventhub.instance.resumed",
        "eventhub.instance.completed",
    ]
    assert [e["data"]["state"] for e in events] == ["Running", "Waiting", "Running", "Completed"]
    assert all(e["data"]["definitionId"] == "orders" for e in events)
    assert all(e["source"] == "eventhub" for e in events)
