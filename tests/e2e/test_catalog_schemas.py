"""The catalogue's typed schemas over a real server: each refused field is a 400 naming it,
every success answer is exactly its declared Struct, and /openapi.json states the rules."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
import orjson
import pytest

from eventhub.api import catalog as api
from eventhub.catalog import filters
from tests.conftest import Running
from tests.e2e.delivery_helpers import KM, request, send

T = TypeVar("T")


async def _exactly(server: Running, method: str, path: str, type_: type[T], **kw: Any) -> T:
    """The answer decoded strictly as ``type_``, and nothing in it the type leaves out."""
    headers = dict(server.admin)
    async with server.http.request(method, server.url + path, headers=headers, **kw) as r:
        assert r.status == 200, await r.text()
        content = await r.read()
    decoded = msgspec.json.decode(content, type=type_, strict=True)
    assert msgspec.to_builtins(decoded) == orjson.loads(content)
    return decoded


async def test_every_answer_is_its_declared_struct(server: Running) -> None:
    draft = await _exactly(
        server, "PUT", f"{KM}/orders", api.KnowledgeModelDraft, json={"name": "Orders"}
    )
    assert draft.id == "orders" and draft.triggers == [] and draft.description == ""
    created = {"name": "Created", "filters": [{"exact": {"type": "order.created"}}]}
    trigger = await _exactly(
        server, "PUT", f"{KM}/orders/triggers/created", api.Trigger, json=created
    )
    assert trigger.filters == created["filters"]
    draft = await _exactly(
        server, "PUT", f"{KM}/orders", api.KnowledgeModelDraft, json={"name": "Orders 2"}
    )
    assert [t.id for t in draft.triggers] == ["created"], "a model's edit keeps its triggers"

    published = await _exactly(server, "POST", f"{KM}/orders/publish", api.KnowledgeModel)
    assert published.version == 1 and published.published_at
    model = await _exactly(server, "GET", f"{KM}/orders", api.KnowledgeModel)
    assert model == published
    page = await _exactly(server, "GET", KM, api.KnowledgeModelPage)
    assert page.total == len(page.content) and "orders" in {m.id for m in page.content}
    triggers = await _exactly(server, "GET", f"{KM}/orders/triggers", api.TriggerPage)
    assert triggers.content == [trigger] and triggers.total == 1
    one = await _exactly(server, "GET", f"{KM}/orders/triggers/created", api.Trigger)
    assert one == trigger

    await send(server, 2, type_="order.created")
    classes = await _exactly(server, "GET", "/api/event-types", api.EventTypePage)
    assert [(c.type, c.count) for c in classes.content] == [("order.created", 2)]
    assert classes.content[0].first_seen <= classes.content[0].last_seen


async def test_answers_sent_back_are_accepted(server: Running) -> None:
    """Clients send back what they read, read-only fields included: those are ignored."""
    await request(server, "PUT", f"{KM}/m", json={"name": "M"})
    body = {"name": "T", "filters": [{"prefix": {"type": "a."}}]}
    code, trigger = await request(server, "PUT", f"{KM}/m/triggers/t", json=body)
    assert code == 200
    code, published = await request(server, "POST", f"{KM}/m/publish")
    assert code == 200
    code, again = await request(server, "PUT", f"{KM}/m/triggers/t", json=trigger)
    assert code == 200 and again == trigger
    code, draft = await request(server, "PUT", f"{KM}/m", json={**published, "name": "M2"})
    assert code == 200 and draft["name"] == "M2" and draft["triggers"] == [trigger]


REFUSED_MODELS: dict[str, tuple[Any, str | None]] = {
    "no name": ({"description": "d"}, "the body: object missing required field `name`"),
    "blank name": ({"name": "  "}, "name"),
    "name not a string": ({"name": 5}, "name"),
    "null name": ({"name": None}, "name"),
    "description not a string": ({"name": "M", "description": 5}, "description"),
    "not an object": (["name"], "the body: expected `object`, got `array`"),
}


@pytest.mark.parametrize(("body", "field"), REFUSED_MODELS.values(), ids=REFUSED_MODELS.keys())
async def test_a_refused_model_field_is_a_400_naming_it(
    server: Running, body: Any, field: str
) -> None:
    code, answer = await request(server, "PUT", f"{KM}/m", json=body)
    assert code == 400 and answer["error"]["code"] == "invalid_request"
    assert answer["error"]["message"].startswith(field), answer
    code, _ = await request(server, "GET", f"{KM}/m")
    assert code == 404


REFUSED_TRIGGERS: dict[str, tuple[Any, str, str]] = {
    "no name": ({"filters": []}, "", "missing required field `name`"),
    "blank name": ({"name": "\t"}, "name", "not blank"),
    "description null": ({"name": "T", "description": None}, "description", "null"),
    "filters not a list": ({"name": "T", "filters": {"exact": {}}}, "filters", "array"),
    "filter not an object": ({"name": "T", "filters": ["type = 'a'"]}, "filters[0]", "object"),
    "filter without a dialect": ({"name": "T", "filters": [{}]}, "filters[0]", "length"),
    "filter with two dialects": (
        {"name": "T", "filters": [{"exact": {"type": "a"}, "prefix": {"type": "b"}}]},
        "filters[0]",
        "length",
    ),
    "unknown dialect": ({"name": "T", "filters": [{"glob": {"type": "*"}}]}, "", "'glob'"),
    "bad CESQL": ({"name": "T", "filters": [{"sql": "type ="}]}, "", "CESQL"),
}


@pytest.mark.parametrize(
    ("body", "field", "says"), REFUSED_TRIGGERS.values(), ids=REFUSED_TRIGGERS.keys()
)
async def test_a_refused_trigger_field_is_a_400_naming_it(
    server: Running, body: Any, field: str, says: str
) -> None:
    await request(server, "PUT", f"{KM}/m", json={"name": "M"})
    code, answer = await request(server, "PUT", f"{KM}/m/triggers/t", json=body)
    assert code == 400 and answer["error"]["code"] == "invalid_request"
    message = answer["error"]["message"]
    assert message.startswith(field) and says in message, message
    if field.startswith("filters"):
        assert answer["error"]["details"][0]["attribute"] == field
    code, draft = await request(server, "PUT", f"{KM}/m", json={"name": "M"})
    assert code == 200 and draft["triggers"] == [], "nothing of a refused trigger is kept"


def _schema(document: dict[str, Any], ref_or_schema: dict[str, Any]) -> dict[str, Any]:
    ref = ref_or_schema.get("$ref")
    if ref is None:
        return ref_or_schema
    found: dict[str, Any] = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return found


async def test_the_document_states_the_catalogue_rules(server: Running) -> None:
    document = await server.get_json("/openapi.json")
    paths = document["paths"]
    one = paths[f"{KM}/{{km}}"]

    def body(operation: dict[str, Any]) -> dict[str, Any]:
        return _schema(document, operation["requestBody"]["content"]["application/json"]["schema"])

    def answer(operation: dict[str, Any]) -> dict[str, Any]:
        return _schema(
            document, operation["responses"]["200"]["content"]["application/json"]["schema"]
        )

    model = body(one["put"])
    assert model["required"] == ["name"]
    assert model["properties"]["name"]["pattern"] == r"\S"
    assert "additionalProperties" not in model, "clients send back read-only fields"
    trigger = body(paths[f"{KM}/{{km}}/triggers/{{trigger}}"]["put"])
    items = trigger["properties"]["filters"]["items"]
    assert items["minProperties"] == items["maxProperties"] == 1
    assert items["propertyNames"]["enum"] == list(filters.DIALECTS)
    for dialect in filters.DIALECTS:
        assert f"`{dialect}`" in trigger["description"] + items["description"]

    published = answer(one["get"])
    assert published["properties"]["version"]["minimum"] == 1
    assert set(published["required"]) == {
        "id", "name", "description", "version", "publishedAt", "triggers"
    }  # fmt: skip
    assert answer(paths[f"{KM}/{{km}}/publish"]["post"]) == published
    draft = answer(one["put"])
    assert "triggers" in draft["properties"] and "version" not in draft["properties"]
    listed = answer(paths[KM]["get"])["properties"]["content"]["items"]
    assert "triggers" not in _schema(document, listed)["properties"]
    event_type = answer(paths["/api/event-types"]["get"])["properties"]["content"]["items"]
    assert _schema(document, event_type)["properties"]["count"]["minimum"] == 1

    assert "draft" in one["put"]["description"] and "published" in one["put"]["description"]
    assert "published" in paths[KM]["get"]["description"]
