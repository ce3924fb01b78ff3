"""The ingest endpoints are raw ASGI applications (api/ingest.py), answered ahead of Starlette's
router for ``POST /events``: what the router and its middleware used to do for them still
happens."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from eventhub.events import NewEvent
from tests.conftest import Running
from tests.e2e.helpers import BATCH, STRUCTURED, error_of


def _event(event_id: str = "a-1") -> bytes:
    return json.dumps(
        {"specversion": "1.0", "id": event_id, "source": "/asgi", "type": "com.example.t"}
    ).encode()


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
async def test_other_methods_on_events_are_405_with_allow(server: Running, method: str) -> None:
    async with server.http.request(method, server.url + "/events", headers=server.admin) as r:
        await error_of(r, 405, "method_not_allowed")
        # Every method /events takes (RFC 9110 §15.5.6), not only the ingest one.
        assert sorted(r.headers["Allow"].split(", ")) == ["GET", "HEAD", "OPTIONS", "POST"]


async def test_an_unexpected_error_is_500_in_the_error_shape_and_stores_nothing(
    server: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(events: list[NewEvent]) -> Any:
        raise RuntimeError("the disk is on fire")

    def broken_soon(events: list[NewEvent]) -> asyncio.Future[Any]:
        # The path served from the protocol's callbacks (api/_direct.py): the commit fails.
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_exception(RuntimeError("the disk is on fire"))
        return future

    monkeypatch.setattr(server.hub.store, "append", broken)
    monkeypatch.setattr(server.hub.store, "append_soon", broken_soon)
    paths = [
        ("/events", STRUCTURED, _event()),
        (
            "/api/ingestion/event/batch",
            BATCH,
            b'[{"specversion": "1.0", "id": "c", "source": "/asgi", "type": "t", "traceid": "t1"}]',
        ),
    ]
    for path, content_type, body in paths:
        # uvicorn closes a connection after an error it was handed: one connection a request.
        headers = {**server.admin, "content-type": content_type, "Connection": "close"}
        response = await server.post(path, data=body, headers=headers)
        error = await error_of(response, 500, "internal")
        assert "the disk is on fire" not in error["message"]
    monkeypatch.undo()
    assert await server.log() == []
    # The admission slots were given back: ingest works again.
    response = await server.post(
        "/events", data=_event(), headers={**server.admin, "content-type": STRUCTURED}
    )
    assert response.status == 200, await response.text()


async def test_the_receipt_and_its_headers(server: Running) -> None:
    response = await server.post(
        "/events", data=_event("r-1"), headers={**server.admin, "content-type": STRUCTURED}
    )
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    body = (await response.text()).encode()  # read already: text() gives the kept body
    assert response.headers["Content-Length"] == str(len(body))
    receipt = json.loads(body)
    assert receipt == {
        "accepted": 1,
        "events": [
            {"source": "/asgi", "id": "r-1", "offset": 1, "revision": 1, "duplicate": False}
        ],
    }
    # Camunda answers 204 without a body or a Content-Type.
    async with server.http.post(
        server.url + "/api/ingestion/event/batch",
        data=b'[{"specversion": "1.0", "id": "c-1", "source": "/asgi", "type": "t",'
        b' "traceid": "t1"}]',
        headers={**server.admin, "content-type": BATCH},
    ) as response:
        assert response.status == 204
        assert "Content-Type" not in response.headers
        assert await response.read() == b""
