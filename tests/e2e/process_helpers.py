"""Shared steps of the process tests: a definition, events that start and wake instances,
and waiting for an instance to reach a state."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import Running
from tests.e2e.delivery_helpers import request


async def define(server: Running, definition_id: str, body: dict[str, Any]) -> dict[str, Any]:
    status, created = await request(server, "PUT", f"/api/processes/{definition_id}", json=body)
    assert status in (200, 201), created
    return dict(created)


def order_process(call_uri: str, **extra: Any) -> dict[str, Any]:
    """The seed's flow: started by order.created, calls a receiver, waits for approval."""
    return {
        "name": "Order approval",
        "start": {"filters": [{"exact": {"type": "order.created"}}]},
        "steps": [
            {"id": "notify", "call": {"uri": call_uri}},
            {"id": "approval", "wait": {"type": "order.approved"}},
        ],
        **extra,
    }


async def emit(
    server: Running,
    type_: str,
    event_id: str,
    data: dict[str, Any] | None = None,
    instance: str | None = None,
    source: str = "shop",
) -> dict[str, Any]:
    """One structured-mode event; returns its receipt entry."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": type_,
        "datacontenttype": "application/json",
        "data": data or {},
    }
    if instance is not None:
        event["cxpinstanceid"] = instance
    headers = {**server.admin, "Content-Type": "application/cloudevents+json"}
    async with server.http.post(server.url + "/events", json=event, headers=headers) as r:
        body = await r.json()
        assert r.status == 200, body
    entry: dict[str, Any] = body["events"][0]
    return entry


async def instance(server: Running, instance_id: str) -> dict[str, Any]:
    status, body = await request(server, "GET", f"/api/instances/{instance_id}")
    assert status == 200, body
    return dict(body)


async def instances(server: Running, **params: str) -> list[dict[str, Any]]:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    status, body = await request(server, "GET", f"/api/instances?{query}")
    assert status == 200, body
    return list(body["instances"])


async def until_state(
    server: Running, instance_id: str, state: str, timeout: float = 10.0
) -> dict[str, Any]:
    """Poll the instance until it is in ``state`` (the API is the only window on it)."""
    async with asyncio.timeout(timeout):
        while True:
            found = await instance(server, instance_id)
            if found["state"] == state:
                return found
            await asyncio.sleep(0.01)


async def until_instances(server: Running, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    async with asyncio.timeout(timeout):
        while True:
            found = await instances(server)
            if len(found) >= n:
                return found
            await asyncio.sleep(0.01)


async def unrouted(server: Running) -> list[dict[str, Any]]:
    """The first page of ``GET /api/unrouted``."""
    status, body = await request(server, "GET", "/api/unrouted")
    assert status == 200, body
    return list(body["events"])


async def until_unrouted(server: Running, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    async with asyncio.timeout(timeout):
        while True:
            found = await unrouted(server)
            if len(found) >= n:
                return found
            await asyncio.sleep(0.01)
