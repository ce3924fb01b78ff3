"""The Camunda Optimize event ingestion contract (seed 004), with the seed's own requests."""

from __future__ import annotations

import json
from typing import Any

import pytest

from eventhub.clock import rfc3339
from tests.conftest import ManualClock, Running
from tests.e2e.helpers import BATCH, attributes_named, bearer, error_of

PATH = "/api/ingestion/event/batch"

# The seed's "Ingest cloud events" request body, verbatim.
INGEST_THREE = b"""[
  {
    "specversion": "1.0",
    "id": "1edc4160-74e5-4ffc-af59-2d281cf5aca341",
    "source": "order-service",
    "type": "orderCreated",
    "time": "2020-01-01T10:00:00.000Z",
    "traceid": "id1",
    "group": "shop",
    "data": {
      "numberField": 1,
      "stringField": "example"
    }
  },
  {
    "specversion": "1.0",
    "id": "1edc4160-74e5-4ffc-af59-2d281cf5aca342",
    "source": "order-service",
    "type": "orderValidated",
    "time": "2020-01-01T10:00:10.000Z",
    "traceid": "id1",
    "group": "shop",
    "data": {
      "numberField": 1,
      "stringField": "example"
    }
  },
  {
    "specversion": "1.0",
    "id": "1edc4160-74e5-4ffc-af59-2d281cf5aca343",
    "source": "shipping-service",
    "type": "packageShipped",
    "traceid": "id1",
    "group": "shop",
    "time": "2020-01-01T10:00:20.000Z"
  }
]"""

# The seed's "Reingest cloud events" request body, verbatim.
REINGEST_ONE = b"""     [
       {
          "specversion": "1.0",
          "id": "1edc4160-74e5-4ffc-af59-2d281cf5aca341",
          "source": "order-service",
          "type": "orderCreated",
          "time": "2020-01-01T10:00:00.000Z",
          "traceid": "id1",
          "group": "shop",
          "data": {
              "numberField": 1,
              "stringField": "example",
              "newField": "allNew"
          }
      }
    ]"""

FIRST = "/events/order-service/1edc4160-74e5-4ffc-af59-2d281cf5aca341"


async def ingest(
    server: Running, body: bytes, content_type: str = BATCH, key: str | None = None
) -> Any:
    headers = {"Content-Type": content_type}
    if key is not None:
        headers.update(bearer(key))
    else:
        headers.update(server.admin)
    return await server.post(PATH, data=body, headers=headers)


def event(**overrides: Any) -> dict[str, Any]:
    base = {
        "specversion": "1.0",
        "id": "c-1",
        "source": "billing",
        "type": "invoiceSent",
        "time": "2020-01-01T10:00:00.000Z",
        "traceid": "trace-9",
        "data": {"amount": 10.5},
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


async def test_the_seed_examples_ingest_then_override(server: Running) -> None:
    response = await ingest(server, INGEST_THREE)
    assert response.status == 204, await response.text()
    assert response.content_length in (None, 0)
    log = await server.log()
    assert [e["event"]["id"][-2:] for e in log] == ["41", "42", "43"]
    assert all(e["revision"] == 1 for e in log)
    sent = json.loads(INGEST_THREE)
    assert [e["event"] for e in log] == sent, "stored as sent, traceid and group included"

    response = await ingest(server, REINGEST_ONE)
    assert response.status == 204, await response.text()

    latest = await server.get_json(FIRST)
    assert latest["revision"] == 2
    assert latest["event"]["data"] == {
        "numberField": 1,
        "stringField": "example",
        "newField": "allNew",
    }
    assert latest["event"]["traceid"] == "id1" and latest["event"]["group"] == "shop"

    log = await server.log()
    assert len(log) == 4, "the override is appended; the first revision stays in the log"
    assert log[-1]["offset"] == latest["offset"]
    assert "newField" not in log[0]["event"]["data"]

    # The same batches again change nothing: producer retries are safe.
    assert (await ingest(server, REINGEST_ONE)).status == 204
    assert len(await server.log()) == 4


async def test_reserved_type_camunda_is_400_and_nothing_stored(server: Running) -> None:
    batch = [event(id="a"), event(id="b", type="camunda")]
    error = await error_of(await ingest(server, json.dumps(batch).encode()), 400)
    assert error["details"][0]["index"] == 1
    assert "type" in attributes_named(error)
    assert await server.log() == []


async def test_missing_traceid_is_400_and_nothing_stored(server: Running) -> None:
    batch = [event(id="a"), event(id="b"), event(id="c", traceid=None)]
    error = await error_of(await ingest(server, json.dumps(batch).encode()), 400)
    assert {d.get("index") for d in error["details"]} == {2}
    assert "traceid" in attributes_named(error)
    assert await server.log() == []


async def test_missing_time_becomes_the_receive_time(server: Running, clock: ManualClock) -> None:
    body = json.dumps([event(id="no-time", time=None)]).encode()
    assert (await ingest(server, body)).status == 204
    (entry,) = await server.log()
    assert entry["event"]["time"] == rfc3339(clock.now())
    assert entry["event"]["time"] == entry["receivedAt"]

    # Sent again later, still without a time, it is the same event, not a new revision.
    clock.advance(60)
    assert (await ingest(server, body)).status == 204
    assert len(await server.log()) == 1


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", BATCH, f"{BATCH}; charset=UTF-8"],
)
async def test_accepted_content_types(server: Running, content_type: str) -> None:
    assert (await ingest(server, INGEST_THREE, content_type)).status == 204
    assert len(await server.log()) == 3


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/cloudevents+json", "application/xml"]
)
async def test_wrong_content_type_is_415(server: Running, content_type: str) -> None:
    await error_of(await ingest(server, INGEST_THREE, content_type), 415, "unsupported_media_type")
    assert await server.log() == []


async def test_wrong_or_missing_key_is_401(server: Running) -> None:
    error = await error_of(await ingest(server, INGEST_THREE, key="mySecret"), 401, "unauthorized")
    assert "key" in error["message"].lower()
    response = await server.post(PATH, data=INGEST_THREE, headers={"Content-Type": BATCH})
    await error_of(response, 401, "unauthorized")
    assert await server.log() == []


async def test_consumer_key_is_403(server: Running) -> None:
    consumer = await server.new_key("consumer")
    await error_of(await ingest(server, INGEST_THREE, key=consumer), 403, "forbidden")
    producer = await server.new_key("producer", ["order-service"])
    # The batch also names shipping-service: the whole batch is refused.
    await error_of(await ingest(server, INGEST_THREE, key=producer), 403, "forbidden")
    assert await server.log() == []
    assert (await ingest(server, REINGEST_ONE, key=producer)).status == 204


async def test_non_json_data_content_type_is_refused(server: Running) -> None:
    batch = [event(datacontenttype="application/xml", data="<a/>")]
    error = await error_of(await ingest(server, json.dumps(batch).encode()), 400)
    assert "datacontenttype" in attributes_named(error)
    assert await server.log() == []
