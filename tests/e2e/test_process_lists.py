"""The instance and unrouted lists (SPEC §6.2): filters by definition and state, and paging
with ``after``/``limit``/``nextAfter`` that walks every row once."""

from __future__ import annotations

from typing import Any

from eventhub.api import processes as api
from tests.conftest import Running
from tests.e2e.delivery_helpers import request
from tests.e2e.process_helpers import (
    define,
    emit,
    order_process,
    typed,
    until_instances,
    until_state,
)
from tests.e2e.receiver import Receiver


async def _walk(server: Running, path: str, key: str, limit: int) -> list[list[dict[str, Any]]]:
    """Every page of ``path`` (a query string ending in ``&`` or ``?``), ``limit`` a page."""
    pages: list[list[dict[str, Any]]] = []
    after = 0
    while True:
        page = api.InstancePage if key == "instances" else api.UnroutedPage
        code, body = await typed(server, "GET", f"{path}after={after}&limit={limit}", {200: page})
        assert code == 200, body
        pages.append(body[key])
        if body["nextAfter"] is None:
            return pages
        after = body["nextAfter"]


async def test_instances_filter_by_definition_and_state_and_page_once(
    server: Running, receiver: Receiver
) -> None:
    await define(server, "orders", order_process(receiver.url))
    other = order_process(receiver.url)
    other["start"] = {"filters": [{"exact": {"type": "refund.created"}}]}
    await define(server, "refunds", other)
    for i in range(5):
        await emit(server, "order.created", f"o-{i}", {})
    for i in range(2):
        await emit(server, "refund.created", f"r-{i}", {})
    every = await until_instances(server, 7)
    for found in every:
        await until_state(server, found["id"], "Waiting")
    first = next(i for i in every if i["definitionId"] == "orders")
    await emit(server, "order.approved", "a-1", {}, instance=first["id"])
    await until_state(server, first["id"], "Completed")

    code, body = await request(server, "GET", "/api/instances?definition=refunds")
    assert code == 200 and {i["startedBy"]["id"] for i in body["instances"]} == {"r-0", "r-1"}
    assert all("history" not in i for i in body["instances"])
    code, body = await request(server, "GET", "/api/instances?definition=orders&state=Waiting")
    assert code == 200 and len(body["instances"]) == 4
    assert first["id"] not in {i["id"] for i in body["instances"]}
    code, body = await request(server, "GET", "/api/instances?state=Completed")
    assert code == 200 and [i["id"] for i in body["instances"]] == [first["id"]]
    code, body = await request(server, "GET", "/api/instances?definition=nothing")
    assert code == 200 and body == {"instances": [], "nextAfter": None}

    pages = await _walk(server, "/api/instances?", "instances", 3)
    assert [len(p) for p in pages] == [3, 3, 1]
    walked = [i["id"] for p in pages for i in p]
    assert walked == [i["id"] for i in every]  # each once, oldest first
    pages = await _walk(server, "/api/instances?definition=orders&", "instances", 2)
    assert [len(p) for p in pages] == [2, 2, 1]


async def test_a_bad_state_or_page_is_refused(server: Running) -> None:
    for query in ("state=Done", "state=running", "limit=0", "limit=1001", "after=-1"):
        code, body = await request(server, "GET", f"/api/instances?{query}")
        assert code == 400, (query, body)
        assert body["error"]["code"] == "invalid_request"
    code, body = await request(server, "GET", "/api/instances?state=Done")
    assert "Running" in body["error"]["message"] and "TimedOut" in body["error"]["message"]
    code, _ = await request(server, "GET", "/api/unrouted?limit=0")
    assert code == 400


async def test_unrouted_events_page_once_each(server: Running) -> None:
    sent = [await emit(server, "order.approved", f"a-{i}", {}, instance=f"i-{i}") for i in range(5)]
    assert {s["correlation"] for s in sent} == {"unrouted"}
    await emit(server, "order.approved", "plain", {})  # names no instance: not listed
    pages = await _walk(server, "/api/unrouted?", "events", 2)
    assert [len(p) for p in pages] == [2, 2, 1]
    walked = [e for p in pages for e in p]
    assert [e["offset"] for e in walked] == [s["offset"] for s in sent]
    assert walked[0] == {
        "offset": sent[0]["offset"],
        "source": "shop",
        "id": "a-0",
        "type": "order.approved",
        "cxpinstanceid": "i-0",
        "reason": "no such instance",
    }
    consumer = await server.new_key("consumer")
    code, _ = await request(server, "GET", "/api/unrouted", key=consumer)
    assert code == 200
    producer = await server.new_key("producer")
    code, _ = await request(server, "GET", "/api/unrouted", key=producer)
    assert code == 403
    code, _ = await request(server, "GET", "/api/instances", key=producer)
    assert code == 403
