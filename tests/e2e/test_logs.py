"""The hub's logs (SPEC §7), read from a real ``eventhub serve``'s output: one access line per
request (method, path, status, duration, key id), one line per subscription and instance
transition with its reason, text or JSON lines, and never a secret."""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import signal
from collections.abc import AsyncIterator, Callable
from hashlib import sha256
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.conftest import ADMIN_KEY, Running
from tests.e2e.helpers import ServerProcess, bearer

KM = "/intelligence/api/knowledge-models"
SUBS = "/intelligence/api/subscriptions"
SOURCE_SECRET = "source-secret-that-must-not-leak"
HEADER_SECRET = "callback-header-value-that-must-not-leak"
# One access line, text format: "<time> INFO eventhub.access: POST /events 200 1.234ms key=id"
TEXT_ACCESS = re.compile(
    r"^\S+ \S+ INFO eventhub\.access: (?P<method>[A-Z]+) (?P<path>\S+) (?P<status>\d+|-)"
    r" (?P<ms>\d+\.\d{3})ms (?P<who>(key|source)=\S+)$"
)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def start(tmp_path: Path, http: aiohttp.ClientSession, **env: str) -> ServerProcess:
    hub = ServerProcess(
        tmp_path / "eventhub.db",
        tmp_path / "server.log",
        env={"EVENTHUB_LOG_LEVEL": "info", **env},
    )
    await hub.ready(http)
    return hub


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    expect: int,
    **kwargs: Any,
) -> Any:
    async with http.request(method, url, **kwargs) as response:
        text = await response.text()
        assert response.status == expect, text
        return orjson.loads(text) if text else None


async def until(hub: ServerProcess, found: Callable[[str], bool], timeout: float = 10.0) -> str:
    """The server's output once ``found`` holds for it (lines are written as things happen)."""
    async with asyncio.timeout(timeout):
        while True:
            output = hub.log_path.read_text(errors="replace")
            if found(output):
                return output
            await asyncio.sleep(0.02)


def signed(body: bytes) -> str:
    return hmac.new(SOURCE_SECRET.encode(), body, sha256).hexdigest()


def binary_event(event_id: str, source: str = "shop") -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": source,
        "ce-type": "order.created",
        "content-type": "application/json",
    }


async def traffic(hub: ServerProcess, http: aiohttp.ClientSession) -> dict[str, str]:
    """Every kind of caller and secret the logs must keep quiet about: a producer key (by
    header and as access_token), a source signing with its secret, a subscription with a
    whsec secret and a secret callback header, a process instance started and cancelled.
    Returns the secrets; the producer key's id is under ``producer_id``."""
    url, admin = hub.url, bearer()
    created = await call(
        http,
        "POST",
        f"{url}/admin/keys",
        201,
        json={"role": "producer", "sources": None, "name": "p"},
        headers=admin,
    )
    producer = created["key"]
    await call(
        http, "PUT", f"{url}/admin/sources/shop", 200, json={"secret": SOURCE_SECRET}, headers=admin
    )
    body = b'{"n": 1}'
    await call(
        http,
        "POST",
        f"{url}/events",
        200,
        data=body,
        headers={**binary_event("by-header"), **bearer(producer)},
    )
    await call(
        http,
        "POST",
        f"{url}/events?access_token={producer}&x=1",
        200,
        data=body,
        headers=binary_event("by-token"),
    )
    await call(
        http,
        "POST",
        f"{url}/events",
        200,
        data=body,
        headers={**binary_event("by-signature"), "x-eventhub-hmac": signed(body)},
    )
    # A trigger, a subscription (its callback never answers: nothing listens there), paused.
    await call(http, "PUT", f"{url}{KM}/orders", 200, json={"name": "orders"}, headers=admin)
    trigger = {"name": "created", "filters": [{"exact": {"type": "order.created"}}]}
    await call(http, "PUT", f"{url}{KM}/orders/triggers/created", 200, json=trigger, headers=admin)
    await call(http, "POST", f"{url}{KM}/orders/publish", 200, headers=admin)
    sub = await call(
        http,
        "POST",
        f"{url}{KM}/orders/triggers/created/subscriptions",
        201,
        json={
            "name": "logged",
            "callbackInfo": {
                "uri": "http://127.0.0.1:9/hook",
                "headers": {"X-Token": HEADER_SECRET},
            },
        },
        headers=admin,
    )
    await call(http, "PATCH", f"{url}{SUBS}/{sub['id']}/pause", 200, headers=admin)
    # A process instance: started by an event, waiting, then cancelled.
    process = {
        "name": "Approval",
        "start": {"filters": [{"exact": {"type": "order.created", "source": "desk"}}]},
        "steps": [{"id": "approval", "wait": {"type": "order.approved"}}],
    }
    definition = await call(
        http, "PUT", f"{url}/api/processes/approval", 201, json=process, headers=admin
    )
    await call(
        http,
        "POST",
        f"{url}/events",
        200,
        data=body,
        headers={**binary_event("start", source="desk"), **admin},
    )
    # Cancelled once it waits: a cancel while it still runs would skip its waiting line.
    async with asyncio.timeout(10):
        while True:
            listed = await call(http, "GET", f"{url}/api/instances", 200, headers=admin)
            if listed["instances"] and listed["instances"][0]["state"] == "Waiting":
                break
            await asyncio.sleep(0.02)
    instance_id = listed["instances"][0]["id"]
    await call(http, "POST", f"{url}/api/instances/{instance_id}/cancel", 200, headers=admin)
    return {
        "admin key": ADMIN_KEY,
        "producer key": producer,
        "source secret": SOURCE_SECRET,
        "subscription secret": sub["secret"],
        "callback header": HEADER_SECRET,
        "process secret": definition.get("secret") or "whsec_none",
        "producer_id": created["id"],
        "subscription_id": sub["id"],
        "instance_id": instance_id,
    }


def assert_no_secret(output: str, secrets: dict[str, str]) -> None:
    for what in (
        "admin key",
        "producer key",
        "source secret",
        "subscription secret",
        "callback header",
        "process secret",
    ):
        assert secrets[what] not in output, f"the {what} is in the logs"
    assert "access_token" not in output


async def test_json_lines_one_per_request_and_transition_and_no_secret(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    hub = await start(tmp_path, http, EVENTHUB_LOG_FORMAT="json")
    try:
        secrets = await traffic(hub, http)
        instance_id = secrets["instance_id"]
        output = await until(
            hub, lambda text: f'"id":"{instance_id}"' in text and '"transition":"cancelled"' in text
        )
    finally:
        hub.close()
    lines = [orjson.loads(line) for line in output.splitlines() if line.strip()]  # all JSON
    assert_no_secret(output, secrets)
    access = [line for line in lines if line["logger"] == "eventhub.access"]
    for line in access:
        assert set(line) >= {"time", "level", "method", "path", "status", "duration_ms", "key_id"}
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    posts = [line for line in access if (line["method"], line["path"]) == ("POST", "/events")]
    # One line per request: the producer by header and by access_token, the signed source,
    # the admin starting the instance.
    assert [(p["status"], p["key_id"], p["source"]) for p in posts] == [
        (200, secrets["producer_id"], None),
        (200, secrets["producer_id"], None),
        (200, None, "shop"),
        (200, "env-admin", None),
    ]
    keys = [line for line in access if line["path"] == "/admin/keys"]
    assert [(k["method"], k["status"], k["key_id"]) for k in keys] == [("POST", 201, "env-admin")]
    transitions = [line for line in lines if line["logger"] == "eventhub.transitions"]
    subscription = [
        (t["transition"], t["status"], t["reason"])
        for t in transitions
        if t["kind"] == "subscription" and t["id"] == secrets["subscription_id"]
    ]
    assert subscription[:2] == [("created", "Active", "created"), ("paused", "Paused", "pause")]
    moves = [
        (t["transition"], t["state"])
        for t in transitions
        if t["kind"] == "instance" and t["id"] == instance_id
    ]
    assert moves == [("started", "Running"), ("waiting", "Waiting"), ("cancelled", "Cancelled")]
    cancelled = next(t for t in transitions if t.get("transition") == "cancelled")
    assert cancelled["reason"] == "cancelled by key env-admin"


async def test_text_lines_and_a_refused_request(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    hub = await start(tmp_path, http)  # log_format defaults to text
    try:
        await call(http, "GET", f"{hub.url}/admin/keys", 200, headers=bearer())
        # A wrong access_token: refused, logged without its query string and with no key id.
        wrong = "wrong-token-0123456789"
        await call(
            http,
            "POST",
            f"{hub.url}/events?access_token={wrong}",
            401,
            data=b"{}",
            headers=binary_event("x"),
        )
        # A path that decodes to a line break stays one line (the router matches no route).
        await call(http, "DELETE", f"{hub.url}/admin/sources/a%0Ab", 404, headers=bearer())
        output = await until(hub, lambda text: "/admin/sources/a%0Ab" in text)
    finally:
        hub.close()
    assert wrong not in output and ADMIN_KEY not in output and "access_token" not in output
    lines = [TEXT_ACCESS.match(line) for line in output.splitlines() if "eventhub.access" in line]
    assert all(lines), output
    found = [(m["method"], m["path"], m["status"], m["who"]) for m in lines if m is not None]
    assert ("GET", "/admin/keys", "200", "key=env-admin") in found
    assert ("POST", "/events", "401", "key=-") in found
    assert ("DELETE", "/admin/sources/a%0Ab", "404", "key=-") in found


async def test_no_access_lines_above_info(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    hub = await start(tmp_path, http, EVENTHUB_LOG_LEVEL="warning")
    try:
        await call(http, "GET", f"{hub.url}/admin/keys", 200, headers=bearer())
        await call(http, "GET", f"{hub.url}/healthz", 200)
        hub.signal(signal.SIGTERM)
        assert await hub.exited() == 0
        output = hub.output()
    finally:
        hub.close()
    assert "eventhub.access" not in output


async def test_an_embedded_hub_logs_access_through_the_logger(
    server: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """Without ``eventhub serve``'s set-up, access lines are ordinary ``eventhub.access``
    records, with the same fields for whatever handler the embedding program installed."""
    caplog.set_level(logging.INFO, logger="eventhub.access")
    async with server.http.get(f"{server.url}/admin/keys?x=1", headers=server.admin) as response:
        assert response.status == 200
    records = [r for r in caplog.records if r.name == "eventhub.access"]
    assert len(records) == 1
    assert records[0].getMessage().startswith("GET /admin/keys 200 ")
    fields = getattr(records[0], "fields", {})
    assert fields["key_id"] == "env-admin" and fields["path"] == "/admin/keys"
