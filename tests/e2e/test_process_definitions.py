"""The process definitions API (SPEC §6.2): create and replace, what reads show, what is
refused and why, delete with live instances, who may do what, a start from a published
trigger, and a change of steps while an instance waits."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from eventhub.api import processes as api
from tests.conftest import Running
from tests.e2e.delivery_helpers import publish_trigger, request
from tests.e2e.process_helpers import (
    define,
    emit,
    instance,
    instances,
    order_process,
    typed,
    until_instances,
    until_state,
)
from tests.e2e.receiver import Receiver

PATH = "/api/processes/orders"


async def test_the_secret_is_shown_once_and_header_values_never(
    server: Running, receiver: Receiver
) -> None:
    body = order_process(receiver.url)
    body["steps"][0]["call"]["headers"] = {"Authorization": "Bearer s3cr3t"}
    answers = {200: api.Process, 201: api.CreatedProcess}
    code, created = await typed(server, "PUT", PATH, answers, json=body)
    assert code == 201, created
    assert created["secret"].startswith("whsec_") and created["version"] == 1
    assert created["steps"][0]["call"]["headers"] == {"Authorization": "********"}

    code, again = await typed(server, "PUT", PATH, answers, json={**body, "name": "Renamed"})
    assert code == 200 and "secret" not in again and again["version"] == 2, again
    code, read = await typed(server, "GET", PATH, {200: api.Process})
    assert code == 200 and "secret" not in read and read["name"] == "Renamed"
    assert read["steps"][0]["call"]["headers"] == {"Authorization": "********"}
    assert read["bufferSeconds"] == 3600
    # Sent back as read (less its timestamps), a definition is accepted: id and version too,
    # and the masked header keeps the value stored under its name.
    resend = {k: v for k, v in copy.deepcopy(read).items() if k not in ("createdAt", "updatedAt")}
    code, third = await typed(server, "PUT", PATH, answers, json=resend)
    assert code == 200 and third["version"] == 3, third
    code, listed = await typed(server, "GET", "/api/processes", {200: api.ProcessList})
    assert code == 200 and listed["total"] == 1 and listed["processes"][0]["version"] == 3
    assert "secret" not in listed["processes"][0]
    assert "s3cr3t" not in str(listed) + str(read) + str(again)

    # A masked value stands for a stored one: for a header with none, it is refused.
    masked_new = copy.deepcopy(resend)
    masked_new["steps"][0]["call"]["headers"]["X-Other"] = "********"
    code, refused = await typed(server, "PUT", PATH, answers, json=masked_new)
    assert code == 400, refused
    assert refused["error"]["message"].startswith("steps[0].call.headers.X-Other: ********")

    # The header goes out with the call all the same, and the same secret signs it.
    await emit(server, "order.created", "o-1", {})
    (call,) = await receiver.wait_for(1)
    assert call.headers["Authorization"] == "Bearer s3cr3t"


def _valid(uri: str) -> dict[str, Any]:
    return order_process(uri)


def _broken(uri: str, change: str) -> dict[str, Any]:
    body = _valid(uri)
    steps: list[dict[str, Any]] = body["steps"]
    if change == "no name":
        del body["name"]
    elif change == "empty steps":
        body["steps"] = []
    elif change == "duplicate step ids":
        steps[1]["id"] = steps[0]["id"]
    elif change == "call and wait":
        steps[0]["wait"] = {"type": "x"}
    elif change == "timeout zero":
        steps[1]["wait"]["timeoutSeconds"] = 0
    elif change == "timeout text":
        steps[1]["wait"]["timeoutSeconds"] = "10"
    elif change == "buffer negative":
        body["bufferSeconds"] = -1
    elif change == "buffer too long":
        body["bufferSeconds"] = 10**9
    elif change == "unknown field":
        body["colour"] = "blue"
    elif change == "unpublished trigger":
        body["start"] = {"knowledgeModel": "nope", "trigger": "created"}
    elif change == "invalid filters":
        body["start"] = {"filters": [{"exact": "type"}]}
    elif change == "filters and trigger":
        body["start"] = {"filters": [{"exact": {"type": "a"}}], "trigger": "t"}
    elif change == "reserved header":
        steps[0]["call"]["headers"] = {"ce-id": "mine"}
    elif change == "wait without type":
        steps[1]["wait"] = {"timeoutSeconds": 5}
    elif change == "id mismatch":
        body["id"] = "other"
    return body


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ("no name", "object missing required field `name`"),
        ("empty steps", "steps: expected `array` of length >= 1"),
        ("duplicate step ids", "is used twice"),
        ("call and wait", "exactly one of call, wait"),
        ("timeout zero", "steps[1].wait.timeoutSeconds: expected `float` > 0"),
        ("timeout text", "steps[1].wait.timeoutSeconds: expected `float`, got `str`"),
        ("buffer negative", "bufferSeconds: expected `float` >= 0"),
        ("buffer too long", "bufferSeconds: expected `float` <= 2592000"),
        ("unknown field", "object contains unknown field `colour`"),
        ("unpublished trigger", "start: "),
        ("invalid filters", "start.filters: "),
        ("filters and trigger", "start takes filters, or knowledgeModel and trigger"),
        ("reserved header", "steps[0].call.headers may not set ce-id"),
        ("wait without type", "steps[1].wait: object missing required field `type`"),
        ("id mismatch", "id in the body must match the path"),
    ],
)
async def test_bad_definitions_are_refused_with_a_clear_message(
    server: Running, receiver: Receiver, change: str, words: str
) -> None:
    code, body = await request(server, "PUT", PATH, json=_broken(receiver.url, change))
    assert code == 400, body
    assert body["error"]["code"] == "invalid_request"
    assert words in body["error"]["message"], body
    code, _ = await request(server, "GET", PATH)
    assert code == 404


async def test_a_call_outside_the_allowed_networks_is_refused_unconnected(
    server: Running,
) -> None:
    # Never connected: 10.0.0.5 is refused before any socket (the suite allows 127.0.0.0/8).
    code, body = await request(server, "PUT", PATH, json=_valid("http://10.0.0.5/hook"))
    assert code == 400, body
    assert body["error"]["code"] == "callback_refused"
    assert body["error"]["message"].startswith("steps[0].call.uri: ")
    assert body["error"]["details"][0]["attribute"] == "steps[0].call.uri"


async def test_delete_refuses_live_instances_unless_told_to_cancel_them(
    server: Running, receiver: Receiver
) -> None:
    await define(server, "orders", order_process(receiver.url))
    await emit(server, "order.created", "o-1", {})
    (call,) = await receiver.wait_for(1)
    instance_id = call.headers["ce-cxpinstanceid"]
    await until_state(server, instance_id, "Waiting")

    code, body = await request(server, "DELETE", PATH)
    assert code == 409 and body["error"]["code"] == "conflict", body
    assert "cancelInstances=true" in body["error"]["message"]
    assert (await instance(server, instance_id))["state"] == "Waiting"
    code, _ = await request(server, "GET", PATH)
    assert code == 200  # still there, still starting instances
    await emit(server, "order.created", "o-2", {})
    await until_instances(server, 2)

    code, _ = await request(server, "DELETE", PATH + "?cancelInstances=true")
    assert code == 204
    states = {i["state"] for i in await instances(server)}
    assert states == {"Cancelled"}
    code, _ = await request(server, "GET", PATH)
    assert code == 404
    code, _ = await request(server, "DELETE", PATH)
    assert code == 404
    code, _ = await request(server, "GET", "/api/processes/never")
    assert code == 404
    # The deleted definition starts nothing more; its instances stay readable. A second
    # definition on the same start is the witness that o-3 was read by the start consumers.
    witness = {**order_process(receiver.url), "steps": [{"id": "w", "wait": {"type": "x"}}]}
    await define(server, "witness", witness)
    await emit(server, "order.created", "o-3", {})
    await until_instances(server, 3)
    assert [i["definitionId"] for i in await instances(server)] == ["orders", "orders", "witness"]
    assert (await instance(server, instance_id))["history"][-1]["what"] == "cancelled"


async def test_a_consumer_reads_definitions_but_only_an_admin_writes(
    server: Running, receiver: Receiver
) -> None:
    await define(server, "orders", order_process(receiver.url))
    consumer = await server.new_key("consumer")
    producer = await server.new_key("producer")
    code, read = await request(server, "GET", PATH, key=consumer)
    assert code == 200 and read["id"] == "orders" and "secret" not in read
    code, _ = await request(server, "GET", "/api/processes", key=consumer)
    assert code == 200
    for key in (consumer, producer):
        code, body = await request(server, "PUT", PATH, key=key, json=_valid(receiver.url))
        assert code == 403 and body["error"]["code"] == "forbidden", body
        code, _ = await request(server, "DELETE", PATH, key=key)
        assert code == 403
    code, _ = await request(server, "GET", PATH, key=producer)
    assert code == 403


async def test_a_published_trigger_starts_instances(server: Running, receiver: Receiver) -> None:
    await publish_trigger(server, "shop", "orders-created")
    body = order_process(receiver.url)
    body["start"] = {"knowledgeModel": "shop", "trigger": "orders-created"}
    await define(server, "orders", body)
    await emit(server, "order.cancelled", "c-1", {})  # not the trigger's
    await emit(server, "order.created", "o-1", {"orderId": "o-1"})
    (call,) = await receiver.wait_for(1)
    (found,) = await until_instances(server, 1)
    assert found["startedBy"]["id"] == "o-1"
    assert call.headers["ce-cxpinstanceid"] == found["id"]


async def test_a_change_of_steps_leaves_a_waiting_instance_on_its_version(
    server: Running, receiver: Receiver
) -> None:
    await define(server, "orders", order_process(receiver.url))
    await emit(server, "order.created", "o-1", {})
    (call,) = await receiver.wait_for(1)
    old_id = call.headers["ce-cxpinstanceid"]
    await until_state(server, old_id, "Waiting")

    second = Receiver()
    await second.start()
    try:
        new = order_process(receiver.url)
        new["steps"] = [
            {"id": "approval", "wait": {"type": "order.approved"}},
            {"id": "after", "call": {"uri": second.url}},
        ]
        await define(server, "orders", new)
        await emit(server, "order.approved", "a-1", {}, instance=old_id)
        old = await until_state(server, old_id, "Completed")
        assert old["version"] == 1 and second.seen == []

        await emit(server, "order.created", "o-2", {})
        (_, fresh) = await until_instances(server, 2)
        assert fresh["version"] == 2
        waiting = await until_state(server, fresh["id"], "Waiting")  # the new first step
        assert waiting["step"] == "approval"
        await emit(server, "order.approved", "a-2", {}, instance=fresh["id"])
        (after,) = await second.wait_for(1)
        assert after.headers["ce-cxpinstanceid"] == fresh["id"]
        await until_state(server, fresh["id"], "Completed")
        assert len(receiver.seen) == 1  # the old first step never ran for the new one
    finally:
        await second.stop()
