"""Process instances end to end (SPEC §6.2, seed 000): a real hub, real receivers, the
Standard Webhooks package verifying every call."""

from __future__ import annotations

import orjson
import standardwebhooks

from tests.conftest import Running
from tests.e2e.delivery_helpers import request
from tests.e2e.process_helpers import (
    define,
    emit,
    instance,
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
