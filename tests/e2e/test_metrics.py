"""``GET /metrics`` (SPEC §7, README "Metrics"): the Prometheus text format, parsed back with
prometheus-client's own parser; its values move as events flow, deliveries succeed, fail,
retry and recover, subscriptions change state, lag builds up, and instances run. Only an
admin key or the metrics token may scrape."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from eventhub import errors, settings
from eventhub.hub import Hub
from tests.conftest import ADMIN_KEY, ManualClock, Running, settings_for, start
from tests.e2e import receiver as scripted
from tests.e2e import test_camunda, test_uipath
from tests.e2e.call_receiver import CallReceiver
from tests.e2e.delivery_helpers import (
    publish_trigger,
    request,
    send,
    subscribe,
    until_sleeping,
    wait_status,
)
from tests.e2e.process_helpers import define, emit, order_process, until_state
from tests.e2e.receiver import Receiver

METRICS_TOKEN = "metrics-token-0123456789"

# {(sample name, sorted labels): value}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(server: Running, key: str = ADMIN_KEY) -> Samples:
    headers = {"Authorization": f"Bearer {key}"}
    async with server.http.get(server.url + "/metrics", headers=headers) as response:
        text = await response.text()
        assert response.status == 200, text
        assert response.content_type == "text/plain"
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("eventhub_"), family.name
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


async def until(server: Running, name: str, want: float, **labels: str) -> Samples:
    """Scrape until the sample has the value ``want`` (the supervisors run on their own)."""
    async with asyncio.timeout(10):
        while True:
            samples = await scrape(server)
            if value(samples, name, **labels) == want:
                return samples
            await asyncio.sleep(0.01)


@pytest.fixture
async def per_subscription(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Running]:
    """A hub with ``metrics_per_subscription`` on and a metrics token."""
    config = settings_for(tmp_path, metrics_per_subscription=True, metrics_token=METRICS_TOKEN)
    uv, task = await start(config, clock)
    app: Any = uv.config.app
    hub: Hub = app.state.hub
    async with aiohttp.ClientSession() as http:
        yield Running(
            f"http://127.0.0.1:{config.port}", hub, http, {"Authorization": f"Bearer {ADMIN_KEY}"}
        )
    uv.should_exit = True
    await task


async def test_ingest_counts_requests_and_events_by_path_mode_and_outcome(server: Running) -> None:
    before = await scrape(server)
    assert value(before, "eventhub_ingest_requests_total", path="/events", mode="binary") == 0

    offsets = await send(server, 3)  # binary mode, one event each
    batch = [
        {"specversion": "1.0", "id": f"b-{i}", "source": "/shop", "type": "order.created"}
        for i in range(2)
    ]
    headers = {**server.admin, "Content-Type": "application/cloudevents-batch+json"}
    response = await server.post("/events", json=batch, headers=headers)
    assert response.status == 200
    bad = {**server.admin, "Content-Type": "application/cloudevents+json"}
    response = await server.post("/events", data=b"{not json", headers=bad)
    assert response.status == 400
    response = await server.post("/events", data=b"{}", headers={"Content-Type": "text/plain"})
    assert response.status == 401  # refused on its headers: before its mode was read

    after = await scrape(server)
    labels = {"path": "/events", "mode": "binary", "outcome": "ok"}
    assert value(after, "eventhub_ingest_requests_total", **labels) == 3
    assert value(after, "eventhub_ingest_events_total", **labels) == 3
    labels = {"path": "/events", "mode": "batch", "outcome": "ok"}
    assert value(after, "eventhub_ingest_requests_total", **labels) == 1
    assert value(after, "eventhub_ingest_events_total", **labels) == 2
    labels = {"path": "/events", "mode": "structured", "outcome": "invalid_json"}
    assert value(after, "eventhub_ingest_requests_total", **labels) == 1
    assert value(after, "eventhub_ingest_events_total", **labels) == 0
    labels = {"path": "/events", "mode": "unknown", "outcome": "unauthorized"}
    assert value(after, "eventhub_ingest_requests_total", **labels) == 1
    # Every request is in the latency histogram, in its +Inf bucket.
    assert value(after, "eventhub_ingest_duration_seconds_count", path="/events") == 6
    assert value(after, "eventhub_ingest_duration_seconds_bucket", path="/events", le="+Inf") == 6
    assert value(after, "eventhub_ingest_duration_seconds_sum", path="/events") > 0
    # The head is the last event's offset; commits grouped the writes.
    assert value(after, "eventhub_log_head_offset") == offsets[-1] + 2
    commits = value(after, "eventhub_group_commit_size_count")
    assert commits > value(before, "eventhub_group_commit_size_count")
    assert value(after, "eventhub_group_commit_size_sum") >= 4  # the four appends, at least
    assert value(after, "eventhub_group_commit_duration_seconds_count") == commits
    assert value(after, "eventhub_database_size_bytes", file="db") > 0


async def test_camunda_and_uipath_have_their_own_path_labels(server: Running) -> None:
    headers = {**server.admin, "Content-Type": "application/json"}
    response = await server.post(
        "/api/ingestion/event/batch", data=test_camunda.INGEST_THREE, headers=headers
    )
    assert response.status == 204
    uipath = (test_uipath.DATA / "job.created.json").read_bytes()
    response = await server.post("/api/ingestion/uipath/robots", data=uipath, headers=headers)
    assert response.status == 200, await response.text()

    samples = await scrape(server)
    labels = {"path": "/api/ingestion/event/batch", "mode": "batch", "outcome": "ok"}
    assert value(samples, "eventhub_ingest_events_total", **labels) == 3
    # The source in UiPath's path is not a label value: one series for every source.
    labels = {"path": "/api/ingestion/uipath/{source}", "mode": "webhook", "outcome": "ok"}
    assert value(samples, "eventhub_ingest_requests_total", **labels) == 1


async def test_deliveries_retries_failure_lag_and_recovery(
    server: Running, receiver: Receiver, clock: ManualClock
) -> None:
    await publish_trigger(server)
    sub = await subscribe(server, receiver.url, maxRetries=1)
    await send(server, 1)
    # Counted when the answer came, before the cursor moved: wait for both.
    await until(server, "eventhub_deliveries_total", 1, outcome="success")
    samples = await until(server, "eventhub_subscriptions_lag_events", 0, state="Active")
    assert value(samples, "eventhub_delivered_events_total") == 1
    assert value(samples, "eventhub_delivery_duration_seconds_count") == 1
    assert value(samples, "eventhub_subscriptions", state="Active") == 1
    assert value(samples, "eventhub_subscriptions_lag_events", state="Active") == 0

    # Two 500s: the first try and one retry, then Failed.
    receiver.default = scripted.status(500)
    await send(server, 1, start=1)
    await until_sleeping(clock)  # the retry's backoff (at most delivery_initial_delay)
    clock.advance(2.0)
    await wait_status(server, sub["id"], "Failed")
    samples = await scrape(server)
    assert value(samples, "eventhub_deliveries_total", outcome="transient") == 2
    assert value(samples, "eventhub_delivery_retries_total") == 1
    assert value(samples, "eventhub_subscriptions", state="Failed") == 1
    assert value(samples, "eventhub_subscriptions", state="Active") == 0

    # Behind while Failed: the undelivered event, and three more; the oldest ages with the clock.
    await send(server, 3, start=2)
    clock.advance(5.0)
    samples = await scrape(server)
    assert value(samples, "eventhub_subscriptions_lag_events", state="Failed") == 4
    age = value(samples, "eventhub_subscriptions_oldest_undelivered_age_seconds", state="Failed")
    assert age >= 5.0
    # Off by default: no series per subscription.
    assert "eventhub_subscription_lag_events" not in names(samples)

    # A probe that fails, then one that succeeds: Active again.
    await until_sleeping(clock)
    clock.advance(3600.0)
    await until(server, "eventhub_recovery_probes_total", 1, outcome="failure")
    receiver.default = scripted.OK
    await until_sleeping(clock)
    clock.advance(3600.0)
    await wait_status(server, sub["id"], "Active")
    samples = await until(server, "eventhub_subscriptions_lag_events", 0, state="Active")
    assert value(samples, "eventhub_recovery_probes_total", outcome="success") == 1
    assert value(samples, "eventhub_subscriptions", state="Active") == 1
    assert value(samples, "eventhub_delivered_events_total") == 5


async def test_a_rejection_is_counted_and_rejected_subscriptions_by_state(
    server: Running, receiver: Receiver
) -> None:
    await publish_trigger(server)
    receiver.default = scripted.status(404)
    sub = await subscribe(server, receiver.url, maxRetries=0)
    await send(server, 1)
    await wait_status(server, sub["id"], "Rejected")
    samples = await scrape(server)
    assert value(samples, "eventhub_deliveries_total", outcome="rejection") == 1
    assert value(samples, "eventhub_subscriptions", state="Rejected") == 1
    status, _ = await request(server, "PATCH", f"/intelligence/api/subscriptions/{sub['id']}/pause")
    assert status == 409  # Rejected cannot be paused; delete it instead
    status, _ = await request(server, "DELETE", f"/intelligence/api/subscriptions/{sub['id']}")
    assert status in (200, 204)
    samples = await scrape(server)
    assert value(samples, "eventhub_subscriptions", state="Rejected") == 0


async def test_per_subscription_lag_only_with_the_setting(
    per_subscription: Running, receiver: Receiver
) -> None:
    server = per_subscription
    await publish_trigger(server)
    first = await subscribe(server, receiver.url)
    second = await subscribe(server, receiver.url)
    status, _ = await request(
        server, "PATCH", f"/intelligence/api/subscriptions/{second['id']}/pause"
    )
    assert status == 200
    await send(server, 2)
    samples = await until(server, "eventhub_subscription_lag_events", 0, subscription=first["id"])
    assert value(samples, "eventhub_subscription_lag_events", subscription=second["id"]) == 2
    assert value(samples, "eventhub_subscriptions_lag_events", state="Paused") == 2
    assert value(samples, "eventhub_subscriptions", state="Paused") == 1
    series = {labels for name, labels in samples if name == "eventhub_subscription_lag_events"}
    assert series == {(("subscription", first["id"]),), (("subscription", second["id"]),)}


async def test_process_instances_by_state(server: Running, calls: CallReceiver) -> None:
    await define(server, "orders", order_process(calls.url))
    await emit(server, "order.created", "o-1", {"orderId": "o-1"})
    samples = await until(server, "eventhub_process_instances", 1, state="Waiting")
    assert value(samples, "eventhub_process_instances", state="Completed") == 0
    (held,) = await calls.until_entered(1)
    instance_id = held.headers["ce-cxpinstanceid"]
    await emit(server, "order.approved", "a-1", {"approvedBy": "ann"}, instance=instance_id)
    await until_state(server, instance_id, "Completed")
    samples = await scrape(server)
    assert value(samples, "eventhub_process_instances", state="Completed") == 1
    assert value(samples, "eventhub_process_instances", state="Waiting") == 0


async def test_scraping_takes_an_admin_key_or_the_metrics_token(
    server: Running, per_subscription: Running
) -> None:
    async def status_of(running: Running, authorization: str | None) -> int:
        headers = {} if authorization is None else {"Authorization": authorization}
        async with running.http.get(running.url + "/metrics", headers=headers) as response:
            await response.read()
            return response.status

    consumer = await server.new_key("consumer")
    assert await status_of(server, None) == 401
    assert await status_of(server, f"Bearer {consumer}") == 403
    assert await status_of(server, f"Bearer {METRICS_TOKEN}") == 401  # no token configured
    assert await status_of(server, f"Bearer {ADMIN_KEY}") == 200
    # With a token: the token, or still an admin key; anything else is refused.
    assert await status_of(per_subscription, None) == 401
    assert await status_of(per_subscription, f"Bearer {METRICS_TOKEN}") == 200
    assert await status_of(per_subscription, f"Bearer {METRICS_TOKEN}x") == 401
    assert await status_of(per_subscription, f"Bearer {ADMIN_KEY}") == 200
    await scrape(per_subscription, METRICS_TOKEN)


def test_a_short_metrics_token_is_refused(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidRequest, match="metrics_token"):
        settings.load(environ={"EVENTHUB_METRICS_TOKEN": "short"}, config_file=None)
    loaded = settings.load(
        environ={"EVENTHUB_METRICS_TOKEN": METRICS_TOKEN, "EVENTHUB_METRICS_PER_SUBSCRIPTION": "1"}
    )
    assert loaded.metrics_token == METRICS_TOKEN and loaded.metrics_per_subscription
    assert METRICS_TOKEN not in repr(loaded)
