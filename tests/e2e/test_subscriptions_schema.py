"""The subscription API's typed schemas, against a real server: each refused field is a 400
naming it, each answer decodes into the Struct the document declares for it, and the
document at /openapi.json states the bounds, enums and state moves."""

from __future__ import annotations

import asyncio
import json
from typing import Any, TypeVar

import msgspec
import orjson
import pytest

from eventhub import masking
from eventhub.api import subscriptions as api
from eventhub.models import Status
from tests.conftest import Running
from tests.e2e.delivery_helpers import KM, SUBS, publish_trigger, send, subscribe
from tests.e2e.receiver import Receiver

T = TypeVar("T")
CREATE = f"{KM}/orders/triggers/created/subscriptions"
HOOK = "http://127.0.0.1:9/hook"


async def call(server: Running, method: str, path: str, **kwargs: Any) -> tuple[int, bytes]:
    async with server.http.request(
        method, server.url + path, headers=server.admin, **kwargs
    ) as response:
        return response.status, await response.read()


def strictly(raw: bytes, type_: type[T]) -> T:
    """``raw`` as a ``type_``, which must hold all of it: encoding the Struct back gives the
    very JSON the server sent (no field the schema does not declare, none lost)."""
    value = msgspec.json.decode(raw, type=type_)
    assert orjson.loads(msgspec.json.encode(value)) == orjson.loads(raw)
    return value


async def refusal(server: Running, method: str, path: str, body: Any) -> dict[str, Any]:
    # json.dumps, not orjson: a body may hold an integer past 64 bits.
    code, raw = await call(server, method, path, data=json.dumps(body))
    assert code == 400, raw
    error: dict[str, Any] = orjson.loads(raw)["error"]
    assert error["code"] == "invalid_request", error
    return error


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"callbackInfo": {"uri": HOOK}}, "name"),
        ({"name": " \t", "callbackInfo": {"uri": HOOK}}, "name"),
        ({"name": 5, "callbackInfo": {"uri": HOOK}}, "name"),
        ({"name": "x"}, "callbackInfo"),
        ({"name": "x", "callbackInfo": None}, "callbackInfo"),
        ({"name": "x", "callbackInfo": {"headers": {}}}, "callbackInfo"),
        ({"name": "x", "callbackInfo": {"uri": HOOK, "headers": {"a": 1}}}, "callbackInfo.headers"),
        ({"name": "x", "callbackInfo": {"uri": HOOK, "headers": ["a"]}}, "callbackInfo.headers"),
        (
            {"name": "x", "callbackInfo": {"uri": HOOK, "headers": {"Webhook-Id": "1"}}},
            "callbackInfo.headers",
        ),
        (
            {"name": "x", "callbackInfo": {"uri": HOOK, "headers": {"content-type": "a/b"}}},
            "callbackInfo.headers",
        ),
        ({"name": "x", "callbackInfo": {"uri": HOOK}, "configurations": ["NOPE"]}, "configurations"),
        ({"name": "x", "callbackInfo": {"uri": HOOK}, "configurations": "SKIP_ERRORS"}, "configurations"),
        ({"name": "x", "callbackInfo": {"uri": HOOK}, "format": "xml"}, "format"),
        ({"name": "x", "callbackInfo": {"uri": HOOK}, "format": None}, "format"),
        ({"name": "x", "callbackInfo": {"uri": HOOK}, "batchSize": 0}, "batchSize"),
        ({"name": "x", "callbackInfo": {"uri": HOOK}, "batchSize": 1001}, "batchSize"),
        ({"name": "x", "callbackInfo": {"uri": HOOK}, "batchSize": True}, "batchSize"),
        ({"name": "x", "callbackInfo": {"uri": HOOK}, "batchSize": 2.0}, "batchSize"),
        ({"name": "x", "callbackInfo": {"uri": HOOK}, "batchSize": 10**30}, "batchSize"),
        ({"name": "x", "callbackInfo": {"uri": HOOK}, "maxRetries": -1}, "maxRetries"),
        ({"name": "x", "callbackInfo": {"uri": HOOK}, "maxRetries": 101}, "maxRetries"),
        ({"name": "x", "callbackInfo": {"uri": HOOK}, "maxRetries": "3"}, "maxRetries"),
    ],
)  # fmt: skip
async def test_a_refused_create_is_400_naming_the_field(
    server: Running, body: dict[str, Any], field: str
) -> None:
    await publish_trigger(server)
    error = await refusal(server, "POST", CREATE, body)
    assert field in error["message"], error
    attributes = [d.get("attribute") or "" for d in error["details"]]
    # Where the error is about one field inside the body, the detail names it too.
    assert any(a.startswith(field) for a in attributes) or f"`{field}`" in error["message"]
    code, raw = await call(server, "GET", SUBS)
    assert code == 200 and strictly(raw, api.SubscriptionPage).total == 0


async def test_a_body_that_is_not_an_object_is_refused(server: Running) -> None:
    await publish_trigger(server)
    bodies: tuple[object, ...] = ([], "x", 5, None)
    for body in bodies:
        error = await refusal(server, "POST", CREATE, body)
        assert "object" in error["message"], error
    code, raw = await call(server, "POST", CREATE, data=b"{")
    assert code == 400 and orjson.loads(raw)["error"]["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": None}, "name"),
        ({"name": ""}, "name"),
        ({"callbackInfo": {"headers": {"X": "1"}}}, "callbackInfo"),
        ({"callbackInfo": {"uri": HOOK, "headers": {"webhook-signature": "v1,x"}}}, "callbackInfo.headers"),
        ({"configurations": ["SKIP"]}, "configurations"),
        ({"format": "xml"}, "format"),
        ({"batchSize": None}, "batchSize"),
        ({"batchSize": 0}, "batchSize"),
        ({"maxRetries": None}, "maxRetries"),
        ({"maxRetries": 1000}, "maxRetries"),
    ],
)  # fmt: skip
async def test_a_refused_update_is_400_naming_the_field_and_changes_nothing(
    server: Running, body: dict[str, Any], field: str
) -> None:
    await publish_trigger(server)
    sub = await subscribe(server, HOOK)
    code, before = await call(server, "GET", f"{SUBS}/{sub['id']}")
    assert code == 200
    error = await refusal(server, "PUT", f"{SUBS}/{sub['id']}", body)
    assert field in error["message"], error
    code, after = await call(server, "GET", f"{SUBS}/{sub['id']}")
    assert code == 200 and after == before


async def test_an_update_changes_only_what_it_sends(server: Running) -> None:
    """Absent fields, and a null callbackInfo or configurations, keep their value; a
    subscription read back and sent whole (read-only fields and all) is accepted, as Celonis
    clients do."""
    await publish_trigger(server)
    sub = await subscribe(
        server, HOOK, format="binary", maxRetries=7, configurations=["SKIP_ERRORS"]
    )
    path = f"{SUBS}/{sub['id']}"
    code, raw = await call(server, "PUT", path, json={"name": "renamed"})
    assert code == 200
    view = strictly(raw, api.SubscriptionView)
    assert view.name == "renamed" and view.format == "binary" and view.max_retries == 7
    assert view.callback_info.uri == HOOK and view.configurations == ["SKIP_ERRORS"]
    assert view.batch_size == 1

    code, raw = await call(
        server, "PUT", path, json={"callbackInfo": None, "configurations": None, "batchSize": 3}
    )
    assert code == 200
    view = strictly(raw, api.SubscriptionView)
    assert view.callback_info.uri == HOOK and view.configurations == ["SKIP_ERRORS"]
    assert view.batch_size == 3 and view.name == "renamed"

    whole = orjson.loads(raw)
    whole.update(name="round trip", configurations=[], format="batch")
    code, raw = await call(server, "PUT", path, json=whole)
    assert code == 200, raw
    view = strictly(raw, api.SubscriptionView)
    assert (view.name, view.configurations, view.format) == ("round trip", [], "batch")
    assert view.max_retries == 7 and view.batch_size == 3


async def test_a_subscription_sent_back_as_read_keeps_its_header_values(
    server: Running, receiver: Receiver
) -> None:
    """Reads mask callback header values; sent back masked, each keeps its stored value (a
    client that edits by read-modify-write must not store the mask as its credential)."""
    await publish_trigger(server)
    body = {"name": "h", "callbackInfo": {"uri": receiver.url, "headers": {"X-Token": "t0k"}}}
    code, raw = await call(server, "POST", CREATE, json=body)
    assert code == 201
    path = f"{SUBS}/{orjson.loads(raw)['id']}"
    code, raw = await call(server, "GET", path)
    whole = orjson.loads(raw)
    assert whole["callbackInfo"]["headers"] == {"X-Token": masking.MASK}

    code, raw = await call(server, "PUT", path, json={**whole, "name": "renamed"})
    assert code == 200, raw
    await send(server, 1)
    (delivery,) = await receiver.wait_for(1)
    assert delivery.headers["X-Token"] == "t0k"

    whole["callbackInfo"]["headers"]["X-New"] = masking.MASK
    error = await refusal(server, "PUT", path, whole)
    assert error["message"].startswith("callbackInfo.headers.X-New: ********"), error
    assert error["details"][0]["attribute"] == "callbackInfo.headers.X-New"


async def test_every_answer_decodes_into_its_declared_struct(
    server: Running, receiver: Receiver
) -> None:
    await publish_trigger(server)
    body = {
        "name": "typed",
        "callbackInfo": {"uri": receiver.url, "headers": {"Authorization": "Bearer x"}},
        "batchSize": 1,
    }
    code, raw = await call(server, "POST", CREATE, json=body)
    assert code == 201
    created = strictly(raw, api.CreatedSubscription)
    assert created.status is Status.ACTIVE and created.secret.startswith("whsec_")
    assert created.callback_info.headers == {"Authorization": masking.MASK}
    assert created.max_retries == server.hub.settings.delivery_max_retries
    one = f"{SUBS}/{created.id}"

    offsets = await send(server, 2)
    await receiver.wait_for(2)
    async with asyncio.timeout(10):  # the cursor is committed just after the receiver's 2xx
        while True:
            code, raw = await call(server, "GET", one)
            assert code == 200
            view = strictly(raw, api.SubscriptionView)
            if view.counts.delivered == 2:
                break
            await asyncio.sleep(0.01)
    assert "secret" not in orjson.loads(raw)
    assert (view.offset, view.latest_succeed_offset, view.lag) == (offsets[1], offsets[1], 0)

    code, raw = await call(server, "GET", SUBS, params={"status": "Active", "trigger": "created"})
    assert code == 200 and [s.id for s in strictly(raw, api.SubscriptionPage).content] == [
        created.id
    ]
    code, raw = await call(server, "GET", SUBS, params={"status": "Paused"})
    assert code == 200 and strictly(raw, api.SubscriptionPage).total == 0

    code, raw = await call(server, "GET", f"{one}/attempts", params={"limit": "1"})
    assert code == 200
    page = strictly(raw, api.AttemptPage)
    assert page.total == 1 and page.content[0].status_code == 200

    for method, suffix, status in (
        ("PATCH", "/pause", Status.PAUSED),
        ("PATCH", "/resume", Status.ACTIVE),
        ("PATCH", "/pause", Status.PAUSED),
        ("PATCH", "/resume-from-latest", Status.ACTIVE),
        ("PATCH", "/replay?fromOffset=1", Status.ACTIVE),
        ("PUT", "", Status.ACTIVE),
    ):
        kwargs: dict[str, Any] = {"json": {"maxRetries": 2}} if method == "PUT" else {}
        code, raw = await call(server, method, one + suffix, **kwargs)
        assert code == 200, (suffix, raw)
        assert strictly(raw, api.SubscriptionView).status is status

    code, raw = await call(server, "POST", f"{one}/rotate-secret")
    assert code == 200
    rotated = strictly(raw, api.RotatedSecret)
    assert rotated.secret != created.secret and rotated.previous_secret_expires_at is not None
    code, raw = await call(server, "DELETE", one)
    assert code == 204 and raw == b""


@pytest.mark.parametrize(
    ("query", "name"),
    [("status=Gone", "status"), ("status=active", "status"), ("limit=0", "limit")],
)
async def test_a_refused_query_parameter_is_400_naming_it(
    server: Running, query: str, name: str
) -> None:
    await publish_trigger(server)
    sub = await subscribe(server, HOOK)
    path = SUBS if name == "status" else f"{SUBS}/{sub['id']}/attempts"
    code, raw = await call(server, "GET", f"{path}?{query}")
    assert code == 400 and name in orjson.loads(raw)["error"]["message"]
    code, raw = await call(server, "PATCH", f"{SUBS}/{sub['id']}/replay")
    assert code == 400 and "fromOffset" in orjson.loads(raw)["error"]["message"]


def _operation(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    found: dict[str, Any] = document["paths"][path][method]
    return found


def _schema(document: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = document["components"]["schemas"][ref["$ref"].rsplit("/", 1)[1]]
    return found


async def test_the_document_states_the_subscription_schemas(server: Running) -> None:
    code, raw = await call(server, "GET", "/openapi.json")
    assert code == 200
    document = orjson.loads(raw)
    schemas = document["components"]["schemas"]
    one = f"{SUBS}/{{id}}"
    create_path = f"{KM}/{{km}}/triggers/{{trigger}}/subscriptions"

    create = _operation(document, "post", create_path)
    new = _schema(document, create["requestBody"]["content"]["application/json"]["schema"])
    assert set(new["required"]) == {"name", "callbackInfo"}
    fields = new["properties"]
    batch = {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}
    assert fields["batchSize"] == batch
    assert (fields["maxRetries"]["minimum"], fields["maxRetries"]["maximum"]) == (0, 100)
    assert fields["name"]["minLength"] == 1
    assert set(_schema(document, fields["format"])["enum"]) == {
        "envelope",
        "binary",
        "structured",
        "batch",
    }
    assert schemas["Configuration"]["enum"] == ["SKIP_ERRORS"]
    answer = create["responses"]["201"]["content"]["application/json"]["schema"]
    assert "secret" in _schema(document, answer)["required"]

    update = _operation(document, "put", one)
    changes = _schema(document, update["requestBody"]["content"]["application/json"]["schema"])
    assert "required" not in changes or not changes["required"]
    assert changes["properties"]["batchSize"]["maximum"] == 1000

    view = _schema(document, _operation(document, "get", one)["responses"]["200"]["content"][
        "application/json"
    ]["schema"])  # fmt: skip
    assert set(_schema(document, view["properties"]["status"])["enum"]) == {s.value for s in Status}
    assert "suspend_after" in _schema(document, view["properties"]["status"])["description"]
    for field in ("callbackInfo", "counts", "lastError", "lag", "offset", "latestSucceedOffset"):
        assert field in view["required"], field
    assert "secret" not in view["properties"]

    listing = _operation(document, "get", SUBS)
    parameters = {p["name"]: p for p in listing["parameters"]}
    assert set(parameters["status"]["schema"]["enum"]) == {s.value for s in Status}
    assert parameters["trigger"]["schema"] == {"type": "string"}

    replay = _operation(document, "patch", f"{one}/replay")
    (from_offset,) = replay["parameters"][1:]
    assert from_offset["name"] == "fromOffset" and from_offset["required"] is True
    assert from_offset["schema"]["minimum"] == 0
    assert "Suspended" in replay["description"]
    limit = _operation(document, "get", f"{one}/attempts")["parameters"][1]
    assert limit["schema"] == {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}

    # Each move says which states it is allowed from, and that the others are 409.
    assert "Active → Paused" in _operation(document, "patch", f"{one}/pause")["description"]
    for move in ("pause", "resume", "resume-from-latest"):
        description = _operation(document, "patch", f"{one}/{move}")["description"]
        assert "409" in description, move
    assert "Suspended" in update["description"]

    # No operation of the area answers "anything": every success has a declared schema.
    for path, item in document["paths"].items():
        if not path.startswith(("/intelligence/api/subscriptions", create_path)):
            continue
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if status in ("default", "204"):
                    continue
                schema = response["content"]["application/json"]["schema"]
                assert "$ref" in schema, (method, path, status)
