"""Shared steps of the process tests: a definition, events that start and wake instances,
and waiting for an instance to reach a state. Every answer they read is first decoded
strictly into the Struct the API declares for it (the schema ``/openapi.json`` shows)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import msgspec

from eventhub.api import processes as api
from tests.conftest import Running


async def typed(
    server: Running, method: str, path: str, types: Mapping[int, type], **kwargs: Any
) -> tuple[int, Any]:
    """``method path`` as the admin; a success answer must decode strictly into the Struct
    ``types`` gives for its status. Returns the status and the answer as plain JSON."""
    url = server.url + path
    async with server.http.request(method, url, headers=server.admin, **kwargs) as r:
        raw = await r.read()
        status = r.status
    if status in types:
        msgspec.json.decode(raw, type=types[status])
    return status, json.loads(raw) if raw else None


async def define(server: Running, definition_id: str, body: dict[str, Any]) -> dict[str, Any]:
    path = f"/api/processes/{definition_id}"
    answers = {200: api.Process, 201: api.CreatedProcess}
    status, created = await typed(server, "PUT", path, answers, json=body)
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
    answers = {200: api.InstanceDetail}
    status, body = await typed(server, "GET", f"/api/instances/{instance_id}", answers)
    assert status == 200, body
    return dict(body)


async def instances(server: Running, **params: str) -> list[dict[str, Any]]:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    status, body = await typed(server, "GET", f"/api/instances?{query}", {200: api.InstancePage})
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
    status, body = await typed(server, "GET", "/api/unrouted", {200: api.UnroutedPage})
    assert status == 200, body
    return list(body["events"])


async def until_unrouted(server: Running, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    async with asyncio.timeout(timeout):
        while True:
            found = await unrouted(server)
            if len(found) >= n:
                return found
            await asyncio.sleep(0.01)
