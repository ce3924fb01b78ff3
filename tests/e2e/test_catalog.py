"""Knowledge models and triggers over the API: drafts, publishing, discovery, event classes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import ADMIN_KEY, Running, hub_of, settings_for, start
from tests.e2e.delivery_helpers import KM, publish_trigger, request, send, subscribe
from tests.e2e.receiver import Receiver


async def test_consumers_see_only_published_versions(server: Running) -> None:
    consumer = await server.new_key("consumer")
    code, _ = await request(server, "PUT", f"{KM}/orders", json={"name": "Orders"})
    assert code == 200
    code, _ = await request(server, "GET", f"{KM}/orders", key=consumer)
    assert code == 404, "a draft is not visible"
    body = {"name": "Created", "description": "new orders", "filters": [{"exact": {"type": "c"}}]}
    await request(server, "PUT", f"{KM}/orders/triggers/created", json=body)
    code, published = await request(server, "POST", f"{KM}/orders/publish")
    assert code == 200 and published["version"] == 1

    await request(server, "PUT", f"{KM}/orders/triggers/cancelled", json={"name": "Cancelled"})
    code, model = await request(server, "GET", f"{KM}/orders", key=consumer)
    assert code == 200 and [t["id"] for t in model["triggers"]] == ["created"]
    code, listed = await request(server, "GET", KM, key=consumer)
    assert {m["id"] for m in listed["content"]} == {"orders", "eventhub"}
    code, trigger = await request(server, "GET", f"{KM}/orders/triggers/created", key=consumer)
    assert trigger == {
        "id": "created",
        "name": "Created",
        "description": "new orders",
        "filters": [{"exact": {"type": "c"}}],
    }
    await request(server, "POST", f"{KM}/orders/publish")
    code, triggers = await request(server, "GET", f"{KM}/orders/triggers", key=consumer)
    assert [t["id"] for t in triggers["content"]] == ["created", "cancelled"]
    code, _ = await request(server, "GET", f"{KM}/orders/triggers/nope", key=consumer)
    assert code == 404


async def test_bad_definitions_are_refused(server: Running) -> None:
    await request(server, "PUT", f"{KM}/m", json={"name": "M"})
    code, body = await request(
        server,
        "PUT",
        f"{KM}/m/triggers/t",
        json={"name": "T", "filters": [{"glob": {"type": "*"}}]},
    )
    assert code == 400 and "glob" in body["error"]["message"]
    code, body = await request(server, "PUT", f"{KM}/m", json={"description": "no name"})
    assert code == 400 and body["error"]["code"] == "invalid_request"
    code, _ = await request(server, "PUT", f"{KM}/nope/triggers/t", json={"name": "T"})
    assert code == 404
    consumer = await server.new_key("consumer")
    code, _ = await request(server, "PUT", f"{KM}/m", key=consumer, json={"name": "M"})
    assert code == 403


async def test_a_model_in_use_cannot_be_deleted(server: Running) -> None:
    receiver = await Receiver().start()
    try:
        await publish_trigger(server)
        sub = await subscribe(server, receiver.url)
        code, body = await request(server, "DELETE", f"{KM}/orders")
        assert code == 409 and "delete them first" in body["error"]["message"]
        code, _ = await request(server, "DELETE", f"{KM}/orders/triggers/created")
        assert code == 409
        await request(server, "DELETE", f"/intelligence/api/subscriptions/{sub['id']}")
        code, _ = await request(server, "DELETE", f"{KM}/orders")
        assert code == 204
        code, _ = await request(server, "GET", f"{KM}/orders")
        assert code == 404
        code, _ = await request(server, "DELETE", f"{KM}/eventhub")
        assert code == 409
    finally:
        await receiver.stop()


async def test_event_classes_are_counted(server: Running) -> None:
    await send(server, 3, type_="order.created")
    await send(server, 1, type_="order.cancelled", start=10)
    batch = [
        {
            "specversion": "1.0",
            "id": "g1",
            "source": "shop",
            "type": "t",
            "traceid": "x",
            "group": "billing",
        }
    ]
    r = await server.post("/api/ingestion/event/batch", json=batch, headers=server.admin)
    assert r.status == 204
    code, body = await request(server, "GET", "/api/event-types")
    assert code == 200
    classes = {(c["type"], c["source"], c["group"]): c["count"] for c in body["content"]}
    assert classes == {
        ("order.created", "/shop", None): 3,
        ("order.cancelled", "/shop", None): 1,
        ("t", "shop", "billing"): 1,
    }
    assert all(c["lastSeen"] for c in body["content"])


@pytest.fixture
async def with_catalog_file(tmp_path: Path) -> AsyncIterator[Running]:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        '[models.orders]\nname = "Orders"\n'
        '[[models.orders.triggers]]\nid = "created"\nname = "Created"\n'
        'filters = [{ exact = { type = "order.created" } }]\n'
    )
    settings = settings_for(tmp_path, catalog_file=catalog)
    uv, task = await start(settings)
    async with aiohttp.ClientSession() as http:
        yield Running(
            f"http://127.0.0.1:{settings.port}",
            hub_of(uv),
            http,
            {"Authorization": f"Bearer {ADMIN_KEY}"},
        )
    uv.should_exit = True
    await task


async def test_models_load_from_a_toml_file_at_start(with_catalog_file: Running) -> None:
    code, model = await request(with_catalog_file, "GET", f"{KM}/orders")
    assert code == 200 and model["version"] == 1
    assert model["triggers"][0]["filters"] == [{"exact": {"type": "order.created"}}]


async def test_a_cesql_trigger_fires_for_what_its_expression_selects(server: Running) -> None:
    receiver = await Receiver().start()
    try:
        await publish_trigger(
            server, filters=[{"sql": "type = 'order.created' AND id LIKE 'e-1%'"}]
        )
        await subscribe(server, receiver.url)
        await send(server, 12)
        await receiver.wait_for(3)
        delivered = [item["eventId"] for body in receiver.json_bodies() for item in body]
        assert delivered == ["e-1", "e-10", "e-11"]
        code, body = await request(
            server,
            "PUT",
            f"{KM}/orders/triggers/bad",
            json={"name": "bad", "filters": [{"sql": "id LIKE 5"}]},
        )
        assert code == 400 and "CESQL" in body["error"]["message"]
    finally:
        await receiver.stop()
