"""UiPath Orchestrator webhooks, as UiPath sends them (payloads copied from seed 002), become
CloudEvents: ``type`` = ``Type``, ``id`` = ``EventId``, ``time`` = ``Timestamp``, data = the
payload itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Running
from tests.e2e.helpers import error_of

DATA = Path(__file__).parent / "data" / "uipath"
PATH = "/api/ingestion/uipath/orchestrator"
WITH_OFFSET = [
    "job.created",
    "job.started",
    "job.faulted",
    "queueItem.added",
    "process.updated",
    "task.created",
]
# Real payloads whose Timestamp has no UTC offset ("2021-08-02T16:00:47.61"): Orchestrator
# writes UTC. A CloudEvents time needs an offset, so eventhub should store it with "Z".
WITHOUT_OFFSET = ["job.stopped", "task.forwarded"]


async def post_payload(server: Running, body: bytes) -> dict[str, object]:
    response = await server.post(
        PATH, data=body, headers={**server.admin, "content-type": "application/json"}
    )
    assert response.status == 200, await response.text()
    receipt: dict[str, object] = await response.json()
    return receipt


@pytest.mark.parametrize("name", WITH_OFFSET)
async def test_payload_is_stored_as_a_cloudevent(server: Running, name: str) -> None:
    body = (DATA / f"{name}.json").read_bytes()
    payload = json.loads(body)
    await post_payload(server, body)

    (entry,) = await server.log()
    event = entry["event"]
    assert event["type"] == payload["Type"] == name
    assert event["id"] == payload["EventId"]
    assert event["time"] == payload["Timestamp"]
    assert event["source"] == "orchestrator"
    assert event["specversion"] == "1.0"
    assert event["datacontenttype"] == "application/json"
    assert event["data"] == payload

    # The data is the very bytes UiPath sent, not a re-serialisation.
    async with server.http.get(server.url + "/events?after=0", headers=server.admin) as response:
        assert body.rstrip(b"\n") in await response.read()

    by_id = await server.get_json(f"/events/orchestrator/{payload['EventId']}")
    assert by_id["offset"] == entry["offset"]


@pytest.mark.parametrize("name", WITHOUT_OFFSET)
async def test_timestamp_without_offset_is_taken_as_utc(server: Running, name: str) -> None:
    body = (DATA / f"{name}.json").read_bytes()
    payload = json.loads(body)
    await post_payload(server, body)
    (entry,) = await server.log()
    assert entry["event"]["time"] == payload["Timestamp"] + "Z"
    assert entry["event"]["data"] == payload


async def test_every_payload_in_one_stream_and_redelivery_is_a_duplicate(server: Running) -> None:
    bodies = [(DATA / f"{name}.json").read_bytes() for name in WITH_OFFSET]
    for body in bodies:
        await post_payload(server, body)
    # UiPath retries a webhook it got no answer for: the same payload is acknowledged again.
    receipt = await post_payload(server, bodies[0])
    assert receipt["events"] == [
        {
            "source": "orchestrator",
            "id": json.loads(bodies[0])["EventId"],
            "offset": 1,
            "revision": 1,
            "duplicate": True,
        }
    ]
    log = await server.log()
    assert [e["event"]["type"] for e in log] == WITH_OFFSET


async def test_source_is_one_percent_encoded_segment(server: Running) -> None:
    body = (DATA / "job.started.json").read_bytes()
    response = await server.post(
        "/api/ingestion/uipath/%2Ftenant%2Fprod",
        data=body,
        headers={**server.admin, "content-type": "application/json"},
    )
    assert response.status == 200, await response.text()
    (entry,) = await server.log()
    assert entry["event"]["source"] == "/tenant/prod"
    for path in ("/api/ingestion/uipath/", "/api/ingestion/uipath/a/b"):
        response = await server.post(
            path, data=body, headers={**server.admin, "content-type": "application/json"}
        )
        await error_of(response, 404)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"EventId": "e", "Timestamp": "2018-11-26T14:34:30Z"}, "Type"),
        ({"Type": "job.created", "Timestamp": "2018-11-26T14:34:30Z"}, "EventId"),
        ({"Type": "job.created", "EventId": "e", "Timestamp": "last tuesday"}, "Timestamp"),
    ],
)
async def test_invalid_payloads_are_400(server: Running, payload: object, field: str) -> None:
    response = await server.post(
        PATH,
        data=json.dumps(payload).encode(),
        headers={**server.admin, "content-type": "application/json"},
    )
    error = await error_of(response, 400)
    assert field in {d.get("attribute") for d in error["details"]}
    assert await server.log() == []


async def test_missing_timestamp_becomes_the_receive_time(server: Running) -> None:
    payload = {"Type": "job.created", "EventId": "no-stamp", "TenantId": 1}
    await post_payload(server, json.dumps(payload).encode())
    (entry,) = await server.log()
    assert entry["event"]["time"] == entry["receivedAt"]
