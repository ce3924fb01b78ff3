"""The console's own API (issue 11): ``GET /api/me``, ``GET /api/overview``, and the
console's files with their policy. The pages themselves are driven in tests/browser."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from eventhub.api import console
from tests.conftest import ManualClock, Running
from tests.e2e import receiver as scripted
from tests.e2e.delivery_helpers import publish_trigger, request, send, subscribe, wait_status
from tests.e2e.process_helpers import define, emit
from tests.e2e.receiver import Receiver

STATIC = Path(console.__file__).parent / "static" / "console"


@pytest.mark.parametrize("role", ["admin", "consumer", "producer"])
async def test_me_says_who_the_key_is(server: Running, role: str) -> None:
    key = await server.new_key(role, ["shop"] if role == "producer" else None)
    status, me = await request(server, "GET", "/api/me", key)
    assert status == 200
    assert me == {
        "keyId": key.split("_")[1],
        "role": role,
        "sources": ["shop"] if role == "producer" else None,
    }


async def test_me_needs_a_valid_key(server: Running) -> None:
    async with server.http.get(server.url + "/api/me") as r:
        assert r.status == 401
    status, _ = await request(server, "GET", "/api/me", "eh_000000000000_wrong")
    assert status == 401


async def overview(server: Running, key: str | None = None, query: str = "") -> dict[str, Any]:
    status, body = await request(server, "GET", f"/api/overview{query}", key)
    assert status == 200, body
    return dict(body)


async def test_overview_counts_lag_and_instances(
    server: Running, receiver: Receiver, clock: ManualClock
) -> None:
    await publish_trigger(server)
    receiver.default = scripted.status(503)
    behind = await subscribe(server, receiver.url, name="behind", maxRetries=0)
    await send(server, 3)
    await wait_status(server, behind["id"], "Failed")
    await define(
        server,
        "approval",
        {
            "name": "Approval",
            "start": {"filters": [{"exact": {"type": "order.placed"}}]},
            "steps": [{"id": "approve", "wait": {"type": "order.approved"}}],
        },
    )
    await emit(server, "order.placed", "p-1")
    found = await overview(server)
    assert found["head"] >= 4
    assert found["databaseBytes"] > 0
    assert found["subscriptions"] == {
        "Active": 0,
        "Failed": 1,
        "Rejected": 0,
        "Paused": 0,
        "Suspended": 0,
    }
    (lag,) = found["lagging"]
    assert lag["id"] == behind["id"] and lag["status"] == "Failed" and lag["events"] == 3
    assert lag["knowledgeModelId"] == "orders" and lag["triggerId"] == "created"
    # The oldest undelivered event's age runs on the hub's clock.
    clock.advance(120)
    aged = (await overview(server))["lagging"][0]
    assert aged["oldestAgeSeconds"] >= 120
    async with asyncio.timeout(10):
        while (await overview(server))["instances"]["Waiting"] != 1:
            await asyncio.sleep(0.01)
    assert (await overview(server, query="?lagging=0"))["lagging"] == []


async def test_a_consumer_sees_only_its_own_subscriptions(
    server: Running, receiver: Receiver
) -> None:
    await publish_trigger(server)
    mine, theirs = await server.new_key("consumer"), await server.new_key("consumer")
    receiver.default = scripted.status(503)
    await subscribe(server, receiver.url, key=mine, name="mine", maxRetries=0)
    other = await subscribe(server, receiver.url, key=theirs, name="theirs", maxRetries=0)
    await send(server, 2)
    await wait_status(server, other["id"], "Failed")
    seen = await overview(server, mine)
    assert sum(seen["subscriptions"].values()) == 1
    assert [lag["name"] for lag in seen["lagging"]] == ["mine"]
    assert sum((await overview(server))["subscriptions"].values()) == 2
    status, _ = await request(server, "GET", "/api/overview", await server.new_key("producer"))
    assert status == 403


async def test_overview_rates_are_sampled_on_the_hub_clock(
    server: Running, clock: ManualClock
) -> None:
    first = (await overview(server))["rates"]
    assert len(first) == 1 and first[0]["ingested"] == 0  # the bucket still filling
    await send(server, 4)
    assert (await overview(server))["rates"][-1]["ingested"] == 4
    clock.advance(15)
    async with asyncio.timeout(10):
        while len(rates := (await overview(server))["rates"]) < 2:
            await asyncio.sleep(0.01)
    assert rates[0]["ingested"] == 4 and rates[0]["seconds"] == 15
    assert rates[1]["ingested"] == 0
    assert (await overview(server))["bucketSeconds"] == 15


async def test_the_console_is_served_with_a_strict_policy(server: Running) -> None:
    async with server.http.get(server.url + "/console") as r:
        assert r.status == 200
        assert r.content_type == "text/html"
        page = await r.text()
        policy = r.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["require-trusted-types-for"] == "'script'"
    assert "unsafe" not in policy and "*" not in policy and "http" not in policy
    assert "script-src" not in directives and "style-src" not in directives  # default: self
    for name in re.findall(r'(?:src|href)="/console/([^"]+)"', page):
        async with server.http.get(f"{server.url}/console/{name}") as r:
            assert r.status == 200, name
            assert r.headers["Content-Security-Policy"] == policy
            assert r.headers["X-Content-Type-Options"] == "nosniff"
    async with server.http.get(server.url + "/console/../app.py") as r:
        assert r.status == 404
    async with server.http.get(server.url + "/console/secret.txt") as r:
        assert r.status == 404


def test_every_shipped_file_is_served_and_none_reaches_another_origin() -> None:
    shipped = {p.name for p in STATIC.iterdir()}
    assert shipped == {"index.html", *console.FILES}
    for path in STATIC.iterdir():
        text = path.read_text()
        # The only absolute URL is the SVG namespace, a name, never fetched.
        urls = set(re.findall(r"[a-z]+://[^\s\"'`)]+|//[a-z0-9.-]+\.[a-z]{2,}", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, (path.name, urls)
        assert not re.search(r"@import|url\(", text), path.name
        if path.suffix == ".js":
            # Modules import only their siblings.
            for spec in re.findall(r'from\s+"([^"]+)"', text):
                assert spec.startswith("./"), (path.name, spec)
            assert "innerHTML" not in text and "eval(" not in text, path.name
        if path.suffix == ".html":
            assert "<script>" not in text and "<style" not in text
            assert not re.search(r"\s(?:style|on[a-z]+)=", text)
