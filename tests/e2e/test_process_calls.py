"""Call steps and cancel of process instances (SPEC §6.2): retries with the same ce-id and
webhook-id under the delivery policy, Failed when they are spent (5xx, 404, a callback the
egress rules refuse at connect time), a JSON object answer merged into the variables; cancel
of a Waiting or a Running instance, and what cancel refuses."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from eventhub.api import processes as api
from tests.conftest import ManualClock, Running
from tests.e2e.call_receiver import Answer, CallReceiver
from tests.e2e.delivery_helpers import auto_clock, request
from tests.e2e.helpers import custom_server
from tests.e2e.process_helpers import (
    define,
    emit,
    instance,
    order_process,
    typed,
    unrouted,
    until_instances,
    until_state,
)
from tests.e2e.receiver import Act, Receiver, status


def _one_call(uri: str) -> dict[str, Any]:
    return {
        "name": "One call",
        "start": {"filters": [{"exact": {"type": "order.created"}}]},
        "steps": [{"id": "notify", "call": {"uri": uri}}],
    }


async def _started(server: Running, receiver: Receiver) -> str:
    await emit(server, "order.created", "o-1", {"orderId": "o-1"})
    (first, *_) = await receiver.wait_for(1)
    return first.headers["ce-cxpinstanceid"]


async def test_a_5xx_is_retried_with_the_same_ids_then_the_instance_goes_on(
    server: Running, receiver: Receiver, clock: ManualClock
) -> None:
    receiver.script.extend([status(503), Act(200)])
    await define(server, "orders", order_process(receiver.url))
    async with auto_clock(clock):
        instance_id = await _started(server, receiver)
        seen = await receiver.wait_for(2)
        waiting = await until_state(server, instance_id, "Waiting")
    first, second = (s.headers for s in seen)
    assert first["ce-id"] == second["ce-id"] == f"call_{instance_id}_0"
    assert first["webhook-id"] == second["webhook-id"]
    whats = [h["what"] for h in waiting["history"]]
    assert whats == ["started", "retrying", "called", "waiting"]
    assert waiting["history"][1]["detail"] == "HTTP 503"
    assert len(receiver.seen) == 2


@pytest.mark.parametrize("code", [500, 404])
async def test_a_call_failing_past_the_retries_fails_the_instance(
    tmp_path: Path, receiver: Receiver, code: int
) -> None:
    receiver.default = Act(code)
    async with custom_server(tmp_path, delivery_max_retries=2) as hub:
        await define(hub, "orders", order_process(receiver.url))
        clock = hub.hub.clock
        assert isinstance(clock, ManualClock)
        async with auto_clock(clock):
            instance_id = await _started(hub, receiver)
            failed = await until_state(hub, instance_id, "Failed")
        assert len(receiver.seen) == 3  # the first attempt and two retries
        assert len({s.headers["ce-id"] for s in receiver.seen}) == 1
        assert failed["error"] == f"step notify: HTTP {code} (after 3 attempts)"
        whats = [h["what"] for h in failed["history"]]
        assert whats == ["started", "retrying", "retrying", "failed"]
        assert failed["step"] == "notify"
        types = [
            e["event"]["type"] for e in await hub.log() if e["event"].get("subject") == instance_id
        ]
        assert types == ["eventhub.instance.started", "eventhub.instance.failed"]


async def test_a_call_to_a_name_the_egress_rules_refuse_at_connect_time_fails(
    tmp_path: Path, receiver: Receiver
) -> None:
    # localhost passes the definition (it could be a loopback address the hub may reach);
    # it resolves to 127.0.0.1, which this hub (127.0.0.2 alone) refuses before connecting.
    port = receiver.url.split(":")[2].split("/")[0]
    async with custom_server(
        tmp_path, allowed_callback_networks=("127.0.0.2/32",), delivery_max_retries=1
    ) as hub:
        await define(hub, "orders", order_process(f"http://localhost:{port}/hook"))
        clock = hub.hub.clock
        assert isinstance(clock, ManualClock)
        await emit(hub, "order.created", "o-1", {})
        async with auto_clock(clock):
            (found,) = await until_instances(hub, 1)
            failed = await until_state(hub, found["id"], "Failed")
    assert re.search(r"callback address (127\.0\.0\.1|::1) refused", failed["error"])
    assert receiver.seen == []


async def test_a_json_object_answer_merges_into_the_variables_of_the_next_call(
    server: Running, calls: CallReceiver
) -> None:
    calls.answers.extend(
        [
            Answer(200, b'{"ticket": 7, "orderId": "changed"}'),
            Answer(200, b"[1, 2]"),
            Answer(200, b"not json", "text/plain"),
            Answer(204),
        ]
    )
    steps = [{"id": f"c{i}", "call": {"uri": calls.url}} for i in range(5)]
    body = {"name": "Calls", "start": {"filters": [{"exact": {"type": "order.created"}}]}}
    await define(server, "orders", {**body, "steps": steps})
    await emit(server, "order.created", "o-1", {"orderId": "o-1"})
    seen = await calls.wait_for(5)
    variables = [orjson.loads(s.body)["variables"] for s in seen]
    assert variables[0] == {"orderId": "o-1"}
    merged = {"orderId": "changed", "ticket": 7}
    assert variables[1:] == [merged] * 4  # a list, text, an empty answer: left alone
    done = await until_state(server, seen[0].headers["ce-cxpinstanceid"], "Completed")
    assert done["variables"] == merged
    details = [h["detail"] for h in done["history"] if h["what"] == "called"]
    assert details[0] == "HTTP 200; 2 variable(s) set"
    assert "not a JSON object" in details[1] and "not JSON" in details[2]
    assert details[3] == "HTTP 204"


# -- cancel ----------------------------------------------------------------------------------


async def test_cancel_a_waiting_instance_unroutes_what_was_buffered(
    server: Running, receiver: Receiver
) -> None:
    await define(server, "orders", order_process(receiver.url))
    instance_id = await _started(server, receiver)
    await until_state(server, instance_id, "Waiting")
    other = await emit(server, "order.shipped", "s-1", {}, instance=instance_id)
    assert other["correlation"] == "buffered"

    path = f"/api/instances/{instance_id}/cancel"
    code, cancelled = await typed(server, "POST", path, {200: api.InstanceDetail})
    assert code == 200, cancelled
    assert cancelled["state"] == "Cancelled"
    assert cancelled["history"][-1]["what"] == "cancelled"
    (gone,) = await unrouted(server)
    assert gone["offset"] == other["offset"] and "Cancelled" in gone["reason"]
    late = await emit(server, "order.approved", "a-1", {}, instance=instance_id)
    assert late["correlation"] == "unrouted"
    assert (await instance(server, instance_id))["state"] == "Cancelled"
    types = [
        e["event"]["type"] for e in await server.log() if e["event"].get("subject") == instance_id
    ]
    assert types[-1] == "eventhub.instance.cancelled"


async def test_cancel_a_running_instance_with_its_call_held_at_the_receiver(
    server: Running, calls: CallReceiver
) -> None:
    calls.gate.clear()
    await define(server, "orders", order_process(calls.url))
    await emit(server, "order.created", "o-1", {})
    (held,) = await calls.until_entered(1)
    instance_id = held.headers["ce-cxpinstanceid"]
    assert (await instance(server, instance_id))["state"] == "Running"

    path = f"/api/instances/{instance_id}/cancel"
    code, cancelled = await typed(server, "POST", path, {200: api.InstanceDetail})
    assert code == 200 and cancelled["state"] == "Cancelled", cancelled
    calls.gate.set()  # the abandoned call's answer changes nothing
    await calls.wait_for(1)
    found = await instance(server, instance_id)
    assert found["state"] == "Cancelled"
    assert "called" not in [h["what"] for h in found["history"]]
    assert len(calls.entered) == 1


async def test_cancel_refuses_finished_unknown_and_non_admins(
    server: Running, receiver: Receiver
) -> None:
    await define(server, "orders", order_process(receiver.url))
    instance_id = await _started(server, receiver)
    await until_state(server, instance_id, "Waiting")
    path = f"/api/instances/{instance_id}/cancel"
    for role in ("producer", "consumer"):
        key = await server.new_key(role)
        code, body = await request(server, "POST", path, key=key)
        assert code == 403 and body["error"]["code"] == "forbidden", (role, body)
    assert (await instance(server, instance_id))["state"] == "Waiting"

    code, _ = await request(server, "POST", "/api/instances/no-such/cancel")
    assert code == 404
    await emit(server, "order.approved", "a-1", {}, instance=instance_id)
    await until_state(server, instance_id, "Completed")
    code, body = await request(server, "POST", path)
    assert code == 409 and body["error"]["code"] == "conflict", body
    assert (await instance(server, instance_id))["state"] == "Completed"
