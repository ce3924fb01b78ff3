"""Traces (SPEC §6.1) over HTTP: the seed 004 examples, moves, paging, rights, restarts."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import msgspec
import pytest

from eventhub import cli
from eventhub.api import traces as api_traces
from tests.conftest import ADMIN_KEY, Running
from tests.e2e.helpers import BATCH, ServerProcess, bearer, error_of
from tests.e2e.test_camunda import INGEST_THREE, REINGEST_ONE, ingest

# The seed's three events, sent out of time order: the trace must put them back in order.
_THREE = json.loads(INGEST_THREE)
OUT_OF_ORDER = json.dumps([_THREE[2], _THREE[0], _THREE[1]]).encode()


def camunda(id_: str, trace: str, time: str, data: Any = None, **more: Any) -> dict[str, Any]:
    event = {
        "specversion": "1.0",
        "id": id_,
        "source": "order-service",
        "type": "step",
        "time": time,
        "traceid": trace,
        **more,
    }
    if data is not None:
        event["data"] = data
    return event


async def read(server: Running, path: str, key: str | None = None) -> Any:
    """A trace or a page of traces, decoded strictly into the Struct the API declares (the
    document's schema) before it is read as plain JSON."""
    async with server.http.get(server.url + path, headers=bearer(key or ADMIN_KEY)) as response:
        raw = await response.read()
        assert response.status == 200, raw
    listing = path.split("?")[0] == "/api/traces"
    msgspec.json.decode(raw, type=api_traces.TracePage if listing else api_traces.Trace)
    return json.loads(raw)


async def send(server: Running, *events: dict[str, Any]) -> None:
    response = await ingest(server, json.dumps(list(events)).encode())
    assert response.status == 204, await response.text()


async def test_the_seed_trace_in_time_order_then_overridden(server: Running) -> None:
    await send(server, *json.loads(OUT_OF_ORDER))
    trace = await read(server, "/api/traces/id1")
    assert trace["traceId"] == "id1"
    assert [e["type"] for e in trace["events"]] == [
        "orderCreated",
        "orderValidated",
        "packageShipped",
    ]
    first = trace["events"][0]
    assert first == {
        "offset": 2,
        "source": "order-service",
        "id": "1edc4160-74e5-4ffc-af59-2d281cf5aca341",
        "type": "orderCreated",
        "time": "2020-01-01T10:00:00.000Z",
        "group": "shop",
        "revision": 1,
    }
    assert trace["variables"] == {"numberField": 1, "stringField": "example"}

    response = await ingest(server, REINGEST_ONE)
    assert response.status == 204
    trace = await read(server, "/api/traces/id1")
    assert len(trace["events"]) == 3, "the new revision replaces the old one"
    assert trace["events"][0]["revision"] == 2 and trace["events"][0]["offset"] == 4
    assert trace["variables"] == {
        "numberField": 1,
        "stringField": "example",
        "newField": "allNew",
    }
    listed = await read(server, "/api/traces")
    assert listed == {
        "traces": [
            {
                "traceId": "id1",
                "events": 3,
                "firstTime": "2020-01-01T10:00:00.000Z",
                "lastTime": "2020-01-01T10:00:20.000Z",
            }
        ],
        "nextAfter": None,
    }


async def test_nested_objects_and_arrays_are_not_variables(server: Running) -> None:
    big = 2**70
    await send(
        server,
        camunda("a", "t", "2020-01-01T10:00:00Z", {"reviewSuccessful": True, "amount": 10.5}),
        camunda(
            "b",
            "t",
            "2020-01-01T10:00:01Z",
            {
                "customer": {"firstName": "John", "lasTName": "Doe"},
                "items": [1, 2],
                "customerId": "lovelyCustomer1",
                "amount": 11,
                "note": None,
            },
        ),
    )
    # A big integer, kept exact through the log and the variables.
    body = (
        b'[{"specversion":"1.0","id":"c","source":"order-service","type":"step",'
        b'"time":"2020-01-01T10:00:02Z","traceid":"t","data":{"big":%d,"amount":[3]}}]' % big
    )
    assert (await ingest(server, body)).status == 204
    async with server.http.get(server.url + "/api/traces/t", headers=server.admin) as response:
        raw = await response.read()
    assert b'"big":%d' % big in raw
    assert msgspec.json.decode(raw, type=api_traces.Trace).variables["big"] == big
    assert json.loads(raw)["variables"] == {
        "reviewSuccessful": True,
        "amount": 11,  # a later array named amount does not hide the flat value
        "customerId": "lovelyCustomer1",
        "note": None,
        "big": big,
    }


async def test_a_revision_with_another_traceid_moves_and_one_without_leaves(
    server: Running,
) -> None:
    await send(
        server,
        camunda("a", "t1", "2020-01-01T10:00:00Z", {"x": 1}),
        camunda("b", "t1", "2020-01-01T10:00:05Z", {"y": 1}),
    )
    await send(server, camunda("a", "t2", "2020-01-01T11:00:00Z", {"x": 2}))
    t1 = await read(server, "/api/traces/t1")
    t2 = await read(server, "/api/traces/t2")
    assert [e["id"] for e in t1["events"]] == ["b"] and t1["variables"] == {"y": 1}
    assert [(e["id"], e["revision"]) for e in t2["events"]] == [("a", 2)]
    listed = {t["traceId"]: t for t in (await read(server, "/api/traces"))["traces"]}
    assert listed["t1"]["events"] == 1
    assert listed["t1"]["firstTime"] == listed["t1"]["lastTime"] == "2020-01-01T10:00:05Z"

    # Through /events (a traceid is optional there): a revision without one leaves its trace.
    response = await server.post(
        "/events",
        json={"specversion": "1.0", "id": "a", "source": "order-service", "type": "step"},
        headers={**server.admin, "Content-Type": "application/cloudevents+json"},
    )
    assert response.status in (200, 201, 202), await response.text()
    await error_of(await _get(server, "/api/traces/t2"), 404)
    assert [t["traceId"] for t in (await read(server, "/api/traces"))["traces"]] == ["t1"]


async def _get(server: Running, path: str, key: str = ADMIN_KEY) -> aiohttp.ClientResponse:
    async with server.http.get(server.url + path, headers=bearer(key)) as response:
        await response.read()
        return response


async def test_list_is_most_recently_active_first_and_pages(server: Running) -> None:
    for n in range(5):
        await send(server, camunda(f"e{n}", f"t{n}", "2020-01-01T10:00:00Z"))
    await send(server, camunda("late", "t1", "2020-01-01T09:00:00Z"))  # t1 is active again
    seen: list[str] = []
    after = 0
    while True:
        page = await read(server, f"/api/traces?after={after}&limit=2")
        seen += [t["traceId"] for t in page["traces"]]
        if page["nextAfter"] is None:
            break
        after = page["nextAfter"]
    assert seen == ["t1", "t4", "t3", "t2", "t0"]
    t1 = (await read(server, "/api/traces?limit=1"))["traces"][0]
    assert t1 == {
        "traceId": "t1",
        "events": 2,
        "firstTime": "2020-01-01T09:00:00Z",
        "lastTime": "2020-01-01T10:00:00Z",
    }
    await error_of(await _get(server, "/api/traces?limit=0"), 400)
    await error_of(await _get(server, "/api/traces?limit=1001"), 400)
    await error_of(await _get(server, "/api/traces?after=-1"), 400)


async def test_unknown_trace_and_odd_ids(server: Running) -> None:
    error = await error_of(await _get(server, "/api/traces/nope"), 404)
    assert "nope" in error["message"]
    await send(server, camunda("s", "a/b c", "2020-01-01T10:00:00Z"))
    trace = await read(server, "/api/traces/" + quote("a/b c", safe=""))
    assert trace["traceId"] == "a/b c"
    await error_of(await _get(server, "/api/traces/a/b"), 404)


async def test_rights_are_those_of_reading_the_log(server: Running) -> None:
    await send(server, camunda("a", "t", "2020-01-01T10:00:00Z"))
    consumer = await server.new_key("consumer")
    producer = await server.new_key("producer")
    assert (await read(server, "/api/traces/t", key=consumer))["traceId"] == "t"
    assert (await read(server, "/api/traces", key=consumer))["traces"]
    for path in ("/api/traces", "/api/traces/t", "/events"):
        await error_of(await _get(server, path, producer), 403)
    async with server.http.get(server.url + "/api/traces") as response:
        assert response.status == 401


async def test_traces_survive_a_restart_and_kill_9(tmp_path: Path) -> None:
    data = tmp_path / "hub.db"
    async with aiohttp.ClientSession() as http:
        headers = {**bearer(), "Content-Type": BATCH}
        for stop in (signal.SIGTERM, signal.SIGKILL):
            process = ServerProcess(data, tmp_path / "server.log")
            try:
                await process.ready(http)
                id_ = f"by-{stop.name}"
                body = json.dumps([camunda(id_, "t", "2020-01-01T10:00:00Z", {"k": stop.name})])
                async with http.post(
                    process.url + "/api/ingestion/event/batch", data=body, headers=headers
                ) as response:
                    assert response.status == 204  # acknowledged
                process.signal(stop)
                await process.exited()
            finally:
                process.close()
        process = ServerProcess(data, tmp_path / "server.log")
        try:
            await process.ready(http)
            async with http.get(process.url + "/api/traces/t", headers=bearer()) as response:
                trace = await response.json()
        finally:
            process.close()
    assert [e["id"] for e in trace["events"]] == ["by-SIGTERM", "by-SIGKILL"]
    assert trace["variables"] == {"k": "SIGKILL"}


async def test_cli_lists_and_shows_a_trace(
    server: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    await send(server, *json.loads(OUT_OF_ORDER))
    common = ("--url", server.url, "--key", await server.new_key("consumer"))

    def run(*argv: str) -> str:
        assert cli.main(list(argv)) == 0
        return capsys.readouterr().out

    as_json = json.loads(await asyncio.to_thread(run, "traces", "get", "id1", *common, "--json"))
    assert as_json == await read(server, "/api/traces/id1")
    table = (await asyncio.to_thread(run, "traces", "get", "id1", *common)).splitlines()
    assert table[0] == "trace id1"
    assert table[1].split() == ["TIME", "TYPE", "SOURCE", "ID", "GROUP", "REVISION"]
    assert [line.split()[1] for line in table[2:5]] == [
        "orderCreated",
        "orderValidated",
        "packageShipped",
    ]
    assert table[5:] == ["variables:", "  numberField = 1", '  stringField = "example"']
    listed = (await asyncio.to_thread(run, "traces", "list", *common)).splitlines()
    assert listed[1].split() == ["id1", "3", "2020-01-01T10:00:00.000Z", "2020-01-01T10:00:20.000Z"]
    with pytest.raises(SystemExit, match="404"):
        await asyncio.to_thread(cli.main, ["traces", "get", "nope", *common])
