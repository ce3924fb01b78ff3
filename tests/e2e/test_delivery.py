"""Delivery end to end: the real hub, real receivers on 127.0.0.1, injected time."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import standardwebhooks.webhooks
import svix.webhooks

from tests.conftest import BACKENDS, ManualClock, Running, hub_of
from tests.e2e.delivery_helpers import (
    SUBS,
    auto_clock,
    publish_trigger,
    request,
    send,
    sub_state,
    subscribe,
    until_sleeping,
    wait_status,
)
from tests.e2e.helpers import custom_server
from tests.e2e.receiver import Receiver, reset, status

# Every test here on SQLite and on PostgreSQL (issue 12): the same guarantees on both.
pytestmark = pytest.mark.parametrize("backend", BACKENDS)


async def test_events_arrive_in_order_in_the_envelope_format(
    server: Running, receiver: Receiver
) -> None:
    await publish_trigger(server)
    sub = await subscribe(server, receiver.url)
    assert sub["status"] == "Active" and sub["secret"].startswith("whsec_")
    await send(server, 3, type_="order.cancelled")  # another trigger's events
    offsets = await send(server, 10)
    await receiver.wait_for(10)
    envelopes = [item for body in receiver.json_bodies() for item in body]
    assert [e["offset"] for e in envelopes] == offsets
    first = envelopes[0]
    assert first["subscriptionId"] == sub["id"] and first["triggerId"] == "created"
    assert first["eventId"] == "e-0" and first["event"]["data"] == {"n": 0}
    assert first["event"]["type"] == "order.created" and first["creationDate"]
    state = await sub_state(server, sub["id"])
    assert state["offset"] == offsets[-1] and state["latestSucceedOffset"] == offsets[-1]
    assert state["latestSucceedEvent"] == "e-9" and state["counts"]["delivered"] == 10
    assert state["lag"] == 0


async def test_the_cursor_starts_at_the_head(server: Running, receiver: Receiver) -> None:
    await publish_trigger(server)
    await send(server, 3)
    sub = await subscribe(server, receiver.url)
    new = await send(server, 1, start=100)
    await receiver.wait_for(1)
    await asyncio.sleep(0.05)
    assert [e["offset"] for e in receiver.json_bodies()[0]] == new
    assert len(receiver.seen) == 1
    assert (await sub_state(server, sub["id"]))["offset"] == new[0]


async def test_signatures_verify_with_standardwebhooks_and_svix(
    server: Running, receiver: Receiver
) -> None:
    await publish_trigger(server)
    sub = await subscribe(server, receiver.url)
    await send(server, 2)
    seen = await receiver.wait_for(2)
    for request_ in seen:
        headers = {k.lower(): v for k, v in request_.headers.items()}
        standardwebhooks.webhooks.Webhook(sub["secret"]).verify(request_.body, headers)
        svix.webhooks.Webhook(sub["secret"]).verify(request_.body, headers)
        assert headers["webhook-id"].startswith("msg_")


@pytest.mark.parametrize("fmt", ["binary", "structured", "batch"])
async def test_cloudevents_formats(server: Running, receiver: Receiver, fmt: str) -> None:
    await publish_trigger(server)
    await subscribe(server, receiver.url, format=fmt, batchSize=5)
    await send(server, 3)
    seen = await receiver.wait_for(1)
    first = seen[0]
    headers = {k.lower(): v for k, v in first.headers.items()}
    if fmt == "binary":
        assert headers["ce-id"] == "e-0" and headers["ce-type"] == "order.created"
        assert headers["content-type"] == "application/json"
        assert first.body == b'{"n": 0}'
    elif fmt == "structured":
        assert headers["content-type"] == "application/cloudevents+json"
        assert orjson.loads(first.body)["id"] == "e-0"
    else:
        assert headers["content-type"] == "application/cloudevents-batch+json"
        assert orjson.loads(first.body)[0]["id"] == "e-0"


async def test_transient_failures_retry_then_fail_then_auto_recover(
    server: Running, receiver: Receiver, clock: ManualClock
) -> None:
    await publish_trigger(server)
    sub = await subscribe(server, receiver.url, maxRetries=2)
    receiver.default = status(503)
    await send(server, 2)
    for _ in range(2):  # two retries after the first try
        await until_sleeping(clock)
        clock.advance(600)
    state = await wait_status(server, sub["id"], "Failed")
    assert state["lastError"] == "HTTP 503"
    assert len(receiver.seen) == 3
    ids = {s.headers["webhook-id"] for s in receiver.seen}
    assert len(ids) == 1, "retries of one delivery carry the same webhook-id"
    receiver.default = status(200)
    await until_sleeping(clock)
    clock.advance(3600)  # the recovery probe
    state = await wait_status(server, sub["id"], "Active")
    await receiver.wait_for(5)
    assert state["counts"]["delivered"] >= 1
    delivered = [e["eventId"] for s in receiver.seen[3:] for e in orjson.loads(s.body)]
    assert delivered == ["e-0", "e-1"]


async def test_rejections_end_in_rejected_and_update_revives(
    server: Running, receiver: Receiver, clock: ManualClock
) -> None:
    await publish_trigger(server)
    sub = await subscribe(server, receiver.url, maxRetries=1)
    receiver.default = status(410)
    await send(server, 1)
    await until_sleeping(clock)
    clock.advance(600)
    await wait_status(server, sub["id"], "Rejected")
    code, body = await request(server, "PATCH", f"{SUBS}/{sub['id']}/resume")
    assert code == 409 and "Rejected" in body["error"]["message"]
    receiver.default = status(204)
    code, body = await request(
        server, "PUT", f"{SUBS}/{sub['id']}", json={"callbackInfo": {"uri": receiver.url}}
    )
    assert code == 200 and body["status"] == "Active"
    await receiver.wait_for(3)
    assert (await sub_state(server, sub["id"]))["counts"]["delivered"] == 1


async def test_eight_hours_in_failed_suspends_and_drops_the_backlog(
    server: Running, receiver: Receiver, clock: ManualClock
) -> None:
    await publish_trigger(server)
    sub = await subscribe(server, receiver.url, maxRetries=0)
    receiver.default = status(500)
    await send(server, 4)
    await wait_status(server, sub["id"], "Failed")
    async with auto_clock(clock, step=1800):
        state = await wait_status(server, sub["id"], "Suspended")
    assert state["counts"]["lost"] == 4
    assert state["lag"] == 0
    code, _ = await request(server, "PATCH", f"{SUBS}/{sub['id']}/replay?fromOffset=1")
    assert code == 409
    receiver.default = status(200)
    before = len(receiver.seen)
    code, body = await request(server, "PUT", f"{SUBS}/{sub['id']}", json={})
    assert code == 200 and body["status"] == "Active"
    new = await send(server, 1, start=50)
    # The next delivery is the new event: the dropped backlog is not sent after all.
    seen = await receiver.wait_for(before + 1)
    assert orjson.loads(seen[before].body)[0]["offset"] == new[0]


async def test_skip_errors_skips_and_stays_active(
    server: Running, receiver: Receiver, clock: ManualClock
) -> None:
    await publish_trigger(server)
    sub = await subscribe(server, receiver.url, maxRetries=1, configurations=["SKIP_ERRORS"])
    receiver.decide = lambda seen: status(500) if b'"n": 1' in seen.body else status(200)
    async with auto_clock(clock):
        await send(server, 3)
        async with asyncio.timeout(10):
            while (await sub_state(server, sub["id"]))["counts"]["delivered"] < 2:
                await asyncio.sleep(0.01)
    state = await sub_state(server, sub["id"])
    assert state["status"] == "Active"
    assert state["counts"] == {"delivered": 2, "skipped": 1, "lost": 0}


async def test_retry_after_is_honoured(
    server: Running, receiver: Receiver, clock: ManualClock
) -> None:
    await publish_trigger(server)
    await subscribe(server, receiver.url, maxRetries=3)
    receiver.script.append(status(429, Retry_After="120"))
    await send(server, 1)
    await until_sleeping(clock)
    clock.advance(119)
    await asyncio.sleep(0.05)
    assert len(receiver.seen) == 1, "retried before Retry-After"
    clock.advance(1.5)
    await receiver.wait_for(2)


async def test_connection_resets_are_transient(
    server: Running, receiver: Receiver, clock: ManualClock
) -> None:
    await publish_trigger(server)
    sub = await subscribe(server, receiver.url, maxRetries=3)
    receiver.script.extend([reset(), reset()])
    await send(server, 1)
    async with auto_clock(clock, step=60):
        await receiver.wait_for(1)
    state = await sub_state(server, sub["id"])
    assert state["status"] == "Active" and state["counts"]["delivered"] == 1
    code, attempts = await request(server, "GET", f"{SUBS}/{sub['id']}/attempts")
    assert code == 200
    assert [a["statusCode"] for a in attempts["content"]] == [200, None, None]


async def test_pause_resume_resume_from_latest_replay_delete(
    server: Running, receiver: Receiver
) -> None:
    await publish_trigger(server)
    sub = await subscribe(server, receiver.url)
    path = f"{SUBS}/{sub['id']}"
    code, body = await request(server, "PATCH", f"{path}/pause")
    assert code == 200 and body["status"] == "Paused"
    code, body = await request(server, "PATCH", f"{path}/pause")
    assert code == 409 and "Paused" in body["error"]["message"]
    offsets = await send(server, 3)
    await asyncio.sleep(0.05)
    assert receiver.seen == []
    assert (await sub_state(server, sub["id"]))["lag"] == 3
    code, body = await request(server, "PATCH", f"{path}/resume")
    assert code == 200 and body["status"] == "Active"
    await receiver.wait_for(3)

    await request(server, "PATCH", f"{path}/pause")
    await send(server, 2, start=10)
    code, body = await request(server, "PATCH", f"{path}/resume-from-latest")
    assert code == 200 and body["status"] == "Active" and body["lag"] == 0
    await asyncio.sleep(0.05)
    assert len(receiver.seen) == 3

    code, body = await request(server, "PATCH", f"{path}/replay?fromOffset={offsets[1]}")
    assert code == 200
    await receiver.wait_for(3 + 4)
    replayed = [orjson.loads(s.body)[0]["offset"] for s in receiver.seen[3:]]
    assert replayed[:2] == offsets[1:]

    code, _ = await request(server, "DELETE", path)
    assert code == 204
    code, _ = await request(server, "GET", path)
    assert code == 404


async def test_owners_see_only_their_own(server: Running, receiver: Receiver) -> None:
    await publish_trigger(server)
    alice, bob = await server.new_key("consumer"), await server.new_key("consumer")
    sub = await subscribe(server, receiver.url, key=alice)
    code, _ = await request(server, "GET", f"{SUBS}/{sub['id']}", key=bob)
    assert code == 404
    code, _ = await request(server, "PATCH", f"{SUBS}/{sub['id']}/pause", key=bob)
    assert code == 404
    code, listed = await request(server, "GET", SUBS, key=bob)
    assert listed["content"] == []
    code, listed = await request(server, "GET", SUBS, key=alice)
    assert [s["id"] for s in listed["content"]] == [sub["id"]]
    code, listed = await request(server, "GET", SUBS)  # admin sees all
    assert [s["id"] for s in listed["content"]] == [sub["id"]]
    producer = await server.new_key("producer")
    code, _ = await request(server, "GET", SUBS, key=producer)
    assert code == 403


async def test_callback_headers_are_sent_but_never_echoed(
    server: Running, receiver: Receiver
) -> None:
    await publish_trigger(server)
    body = {
        "name": "h",
        "callbackInfo": {"uri": receiver.url, "headers": {"Authorization": "Bearer s3cret"}},
    }
    code, sub = await request(
        server,
        "POST",
        "/intelligence/api/knowledge-models/orders/triggers/created/subscriptions",
        json=body,
    )
    assert code == 201
    assert "s3cret" not in orjson.dumps(sub).decode()
    assert "s3cret" not in orjson.dumps(await sub_state(server, sub["id"])).decode()
    await send(server, 1)
    (seen,) = await receiver.wait_for(1)
    assert seen.headers["Authorization"] == "Bearer s3cret"


async def test_lifecycle_notifications_reach_an_operator(
    server: Running, receiver: Receiver
) -> None:
    operator = await subscribe(server, receiver.url, km="eventhub", trigger="all")
    await publish_trigger(server)
    other = await Receiver().start()
    try:
        sub = await subscribe(server, other.url)
        await request(server, "PATCH", f"{SUBS}/{sub['id']}/pause")
        await request(server, "DELETE", f"{SUBS}/{sub['id']}")
    finally:
        await other.stop()
    await receiver.wait_for(4)
    events = [e["event"] for body in receiver.json_bodies() for e in body]
    # The operator's own creation comes first: its cursor starts at the head, before it.
    assert [(e["type"], e["data"]["subscriptionId"]) for e in events] == [
        ("eventhub.subscription.created", operator["id"]),
        ("eventhub.subscription.created", sub["id"]),
        ("eventhub.subscription.paused", sub["id"]),
        ("eventhub.subscription.deleted", sub["id"]),
    ]
    assert all(e["source"] == "eventhub" for e in events)
    assert events[2]["data"]["status"] == "Paused"


async def test_random_failures_lose_nothing_and_keep_order(
    server: Running, receiver: Receiver, clock: ManualClock
) -> None:
    await publish_trigger(server)
    sub = await subscribe(server, receiver.url, maxRetries=100)
    rng = random.Random(42)
    receiver.decide = lambda seen: status(500) if rng.random() < 0.3 else status(200)
    async with auto_clock(clock, step=600):
        offsets = await send(server, 40)
        async with asyncio.timeout(20):
            while (await sub_state(server, sub["id"]))["counts"]["delivered"] < 40:
                await asyncio.sleep(0.01)
    # Every event arrived; repeats are only retries of the delivery just before, same id.
    firsts: list[int] = []
    for s in receiver.seen:
        offset = orjson.loads(s.body)[0]["offset"]
        if firsts and firsts[-1] == offset:
            continue
        firsts.append(offset)
    assert firsts == offsets


async def test_a_stalled_receiver_does_not_delay_another_subscription(
    tmp_path: Path, receiver: Receiver, backend_settings: dict[str, Any]
) -> None:
    slow = await Receiver().start()
    slow.default = status(200)
    slow.default.stall = 3.0
    try:
        async with custom_server(tmp_path, delivery_timeout=5.0, **backend_settings) as running:
            await publish_trigger(running)
            await subscribe(running, slow.url)
            await subscribe(running, receiver.url)
            loop = asyncio.get_running_loop()
            started = loop.time()
            await send(running, 5)
            await receiver.wait_for(5, timeout=2.5)
            assert loop.time() - started < 2.0
            assert slow.seen == []
    finally:
        await slow.stop()


async def test_subscriptions_resume_after_a_restart(
    tmp_path: Path, receiver: Receiver, backend_settings: dict[str, Any]
) -> None:
    import aiohttp

    from tests.conftest import ADMIN_KEY, settings_for, start

    settings = settings_for(tmp_path, **backend_settings)
    async with aiohttp.ClientSession() as http:
        uv, task = await start(settings)
        running = Running(
            f"http://127.0.0.1:{settings.port}",
            hub_of(uv),
            http,
            {"Authorization": f"Bearer {ADMIN_KEY}"},
        )
        await publish_trigger(running)
        sub = await subscribe(running, receiver.url)
        await request(running, "PATCH", f"{SUBS}/{sub['id']}/pause")
        await send(running, 2)
        uv.should_exit = True
        await task

        uv, task = await start(settings)
        running.hub = hub_of(uv)
        try:
            state = await sub_state(running, sub["id"])
            assert state["status"] == "Paused" and state["lag"] == 2
            await request(running, "PATCH", f"{SUBS}/{sub['id']}/resume")
            await receiver.wait_for(2)
        finally:
            uv.should_exit = True
            await task


async def test_the_subscription_limit_is_clear_and_notified(
    tmp_path: Path, receiver: Receiver, backend_settings: dict[str, Any]
) -> None:
    async with custom_server(tmp_path, max_subscriptions=2, **backend_settings) as running:
        await publish_trigger(running)
        operator = await subscribe(
            running, receiver.url, km="eventhub", trigger="subscriptions-limit-reached"
        )
        await subscribe(running, receiver.url)
        code, body = await request(
            running,
            "POST",
            "/intelligence/api/knowledge-models/orders/triggers/created/subscriptions",
            json={"name": "third", "callbackInfo": {"uri": receiver.url}},
        )
        assert code == 409
        assert body["error"]["code"] == "subscription_limit_reached"
        assert "2" in body["error"]["message"]
        (seen,) = await receiver.wait_for(1)
        event = orjson.loads(seen.body)[0]
        assert event["subscriptionId"] == operator["id"]
        assert event["event"]["type"] == "eventhub.subscriptions.limit_reached"


async def test_rotating_the_secret_signs_with_both_during_the_overlap(
    server: Running, receiver: Receiver, clock: ManualClock
) -> None:
    await publish_trigger(server)
    sub = await subscribe(server, receiver.url)
    code, rotated = await request(server, "POST", f"{SUBS}/{sub['id']}/rotate-secret")
    assert code == 200 and rotated["secret"] != sub["secret"]
    await send(server, 1)
    (seen,) = await receiver.wait_for(1)
    headers = {k.lower(): v for k, v in seen.headers.items()}
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (sub["secret"], rotated["secret"]):
        standardwebhooks.webhooks.Webhook(secret).verify(seen.body, headers)
    state = await sub_state(server, sub["id"])
    assert "secret" not in state
    code, _ = await request(server, "POST", f"{SUBS}/nope/rotate-secret")
    assert code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"callbackInfo": {"uri": "http://x"}},
        {"name": "x"},
        {"name": "x", "callbackInfo": {"uri": "ftp://x"}},
        {"name": "x", "callbackInfo": {"uri": "http://x"}, "configurations": ["NOPE"]},
        {"name": "x", "callbackInfo": {"uri": "http://x"}, "format": "xml"},
        {"name": "x", "callbackInfo": {"uri": "http://x"}, "batchSize": 0},
        {"name": "x", "callbackInfo": {"uri": "http://x", "headers": {"webhook-id": "1"}}},
    ],
)
async def test_bad_subscriptions_are_refused(server: Running, body: dict[str, object]) -> None:
    await publish_trigger(server)
    code, answer = await request(
        server,
        "POST",
        "/intelligence/api/knowledge-models/orders/triggers/created/subscriptions",
        json=body,
    )
    assert code == 400 and answer["error"]["message"]
    code, _ = await request(
        server,
        "POST",
        "/intelligence/api/knowledge-models/orders/triggers/nope/subscriptions",
        json={"name": "x", "callbackInfo": {"uri": "http://x"}},
    )
    assert code == 404


async def test_a_backlog_drains_a_page_at_a_time(server: Running, receiver: Receiver) -> None:
    await publish_trigger(server)
    body = {"name": "paged", "callbackInfo": {"uri": receiver.url}}  # batchSize by default
    code, sub = await request(
        server,
        "POST",
        "/intelligence/api/knowledge-models/orders/triggers/created/subscriptions",
        json=body,
    )
    assert code == 201 and sub["batchSize"] == 100
    await request(server, "PATCH", f"{SUBS}/{sub['id']}/pause")
    offsets = await send(server, 5)
    await request(server, "PATCH", f"{SUBS}/{sub['id']}/resume")
    (seen,) = await receiver.wait_for(1)
    assert [e["offset"] for e in orjson.loads(seen.body)] == offsets
    assert seen.headers["webhook-id"] == f"msg_{sub['id']}_{offsets[0]}_{offsets[-1]}"


async def test_subscriptions_in_backoff_leave_room_for_the_others(
    tmp_path: Path, receiver: Receiver, backend_settings: dict[str, Any]
) -> None:
    # One connection and two page permits for the whole hub: three failing subscriptions
    # waiting out their backoff must not hold them.
    failing = await Receiver().start()
    failing.default = status(503)
    try:
        async with custom_server(tmp_path, delivery_connections=1, **backend_settings) as running:
            await publish_trigger(running)
            for _ in range(3):
                await subscribe(running, failing.url, maxRetries=5)
            healthy = await subscribe(running, receiver.url)
            await send(running, 4)
            await receiver.wait_for(4, timeout=5)
            assert len(failing.seen) == 3, "each failing subscription tried once, then backs off"
            state = await sub_state(running, healthy["id"])
            assert state["counts"]["delivered"] == 4
    finally:
        await failing.stop()


async def test_binary_delivery_labels_data_without_datacontenttype_by_its_kind(
    server: Running, receiver: Receiver
) -> None:
    """Structured-mode ``data`` without ``datacontenttype`` is JSON (json-format.md 3.1), so
    its binary-mode delivery says ``application/json``; ``data_base64`` stays opaque bytes."""
    await publish_trigger(server)
    await subscribe(server, receiver.url, format="binary")
    base = {"specversion": "1.0", "source": "/shop", "type": "order.created"}
    for event in (
        {**base, "id": "json", "data": {"n": 1}},
        {**base, "id": "blob", "data_base64": "AAEC"},
    ):
        async with server.http.post(
            server.url + "/events",
            data=orjson.dumps(event),
            headers={**server.admin, "content-type": "application/cloudevents+json"},
        ) as response:
            assert response.status == 200, await response.text()
    seen = await receiver.wait_for(2)
    headers = {s.body: {k.lower(): v for k, v in s.headers.items()} for s in seen}
    json_headers, blob_headers = headers[b'{"n":1}'], headers[b"\x00\x01\x02"]
    assert (json_headers["ce-id"], json_headers["content-type"]) == ("json", "application/json")
    assert blob_headers["content-type"] == "application/octet-stream"
    assert "ce-datacontenttype" not in json_headers | blob_headers


def epoch_like(value: object) -> list[object]:
    """Every number in a JSON answer large enough to be seconds since 1970 (offsets, counts
    and latencies in a test are far smaller)."""
    if isinstance(value, dict):
        return [n for v in value.values() for n in epoch_like(v)]
    if isinstance(value, list):
        return [n for v in value for n in epoch_like(v)]
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return [value] if is_number and value > 1e8 else []  # type: ignore[operator]


async def test_times_in_subscription_answers_are_rfc3339(
    server: Running, receiver: Receiver, clock: ManualClock
) -> None:
    """``previousSecretExpiresAt`` was epoch seconds; every time the subscription API answers
    with is RFC 3339 now, like ``createdAt``."""
    await publish_trigger(server)
    sub = await subscribe(server, receiver.url)
    code, rotated = await request(server, "POST", f"{SUBS}/{sub['id']}/rotate-secret")
    assert code == 200, rotated
    expires = rotated["previousSecretExpiresAt"]
    assert isinstance(expires, str) and expires.endswith("Z"), expires
    overlap = server.hub.settings.secret_rotation_overlap
    parsed = datetime.fromisoformat(expires).timestamp()
    assert abs(parsed - (clock.now() + overlap)) < 1e-3
    await send(server, 1)
    await receiver.wait_for(1)
    answers = [sub, rotated, await sub_state(server, sub["id"])]
    for path in (SUBS, f"{SUBS}/{sub['id']}/attempts", "/admin/keys", "/admin/sources"):
        code, body = await request(server, "GET", path)
        assert code == 200, body
        answers.append(body)
    assert epoch_like(answers) == []
