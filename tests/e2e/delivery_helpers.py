"""Shared steps of the delivery tests: a published trigger, a subscription, events, time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from eventhub.api import subscriptions
from tests.conftest import ManualClock, Running

KM = "/intelligence/api/knowledge-models"
SUBS = "/intelligence/api/subscriptions"


async def publish_trigger(
    server: Running,
    km: str = "orders",
    trigger: str = "created",
    filters: list[dict[str, Any]] | None = None,
) -> None:
    status, _ = await request(server, "PUT", f"{KM}/{km}", json={"name": km})
    assert status == 200
    body = {"name": trigger, "filters": filters or [{"exact": {"type": "order.created"}}]}
    status, _ = await request(server, "PUT", f"{KM}/{km}/triggers/{trigger}", json=body)
    assert status == 200
    status, _ = await request(server, "POST", f"{KM}/{km}/publish")
    assert status == 200


async def request(
    server: Running, method: str, path: str, key: str | None = None, **kwargs: Any
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else dict(server.admin)
    async with server.http.request(method, server.url + path, headers=headers, **kwargs) as r:
        body = await r.json() if r.content_type == "application/json" else None
        return r.status, body


async def subscribe(
    server: Running,
    uri: str,
    km: str = "orders",
    trigger: str = "created",
    key: str | None = None,
    **config: Any,
) -> dict[str, Any]:
    # One event a request unless a test asks otherwise: the tests count requests.
    body = {"name": "test", "callbackInfo": {"uri": uri, "headers": {}}, "batchSize": 1, **config}
    status, created = await request(
        server, "POST", f"{KM}/{km}/triggers/{trigger}/subscriptions", key, json=body
    )
    assert status == 201, created
    msgspec.convert(created, subscriptions.CreatedSubscription)  # the declared answer, or fail
    return dict(created)


async def send(server: Running, n: int, type_: str = "order.created", start: int = 0) -> list[int]:
    """``n`` binary-mode events; returns their offsets."""
    offsets = []
    for i in range(start, start + n):
        headers = {
            **server.admin,
            "ce-specversion": "1.0",
            "ce-id": f"e-{i}",
            "ce-source": "/shop",
            "ce-type": type_,
            "content-type": "application/json",
        }
        async with server.http.post(
            server.url + "/events", data=b'{"n": %d}' % i, headers=headers
        ) as r:
            assert r.status == 200
            offsets.append((await r.json())["events"][0]["offset"])
    return offsets


async def sub_state(server: Running, sub_id: str) -> dict[str, Any]:
    status, body = await request(server, "GET", f"{SUBS}/{sub_id}")
    assert status == 200, body
    msgspec.convert(body, subscriptions.SubscriptionView)  # the declared answer, or fail
    return dict(body)


async def wait_status(
    server: Running, sub_id: str, want: str, timeout: float = 10.0
) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            state = await sub_state(server, sub_id)
            if state["status"] == want:
                return state
            await asyncio.sleep(0.01)


async def until_sleeping(clock: ManualClock, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while clock.sleepers() == 0:
            await asyncio.sleep(0.002)


@contextlib.asynccontextmanager
async def auto_clock(clock: ManualClock, step: float = 3600.0) -> AsyncIterator[None]:
    """Moves the clock forward whenever something sleeps on it: backoffs take no real time."""

    async def run() -> None:
        while True:
            await asyncio.sleep(0.001)
            if clock.sleepers():
                clock.advance(step)

    task = asyncio.create_task(run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
