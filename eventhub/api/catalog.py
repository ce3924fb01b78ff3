"""Knowledge models and triggers (SPEC §3): admins edit drafts and publish; consumers
discover the last published version. Also the event classes seen so far."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from eventhub import errors
from eventhub.api._http import hub_of, json_response, read_json, require
from eventhub.api.operation import ADMIN, READERS, Content, Operation

CONSUMERS = ("admin", "consumer")


def _ids(request: Request) -> tuple[str, str]:
    return request.path_params["km"], request.path_params.get("trigger", "")


async def list_models(request: Request) -> Response:
    require(request, *CONSUMERS)
    models = [m.to_json(with_triggers=False) for m in hub_of(request).catalog.published.values()]
    return json_response({"content": models, "total": len(models)})


async def get_model(request: Request) -> Response:
    require(request, *CONSUMERS)
    km, _ = _ids(request)
    return json_response(hub_of(request).catalog.model(km).to_json())


async def list_triggers(request: Request) -> Response:
    require(request, *CONSUMERS)
    km, _ = _ids(request)
    triggers = [t.to_json() for t in hub_of(request).catalog.model(km).triggers.values()]
    return json_response({"content": triggers, "total": len(triggers)})


async def get_trigger(request: Request) -> Response:
    require(request, *CONSUMERS)
    trigger, _ = hub_of(request).catalog.trigger(*_ids(request))
    return json_response(trigger)


async def put_model(request: Request) -> Response:
    require(request, "admin")
    km, _ = _ids(request)
    draft = await hub_of(request).catalog.put_model(km, await read_json(request))
    return json_response(draft)


async def delete_model(request: Request) -> Response:
    require(request, "admin")
    km, _ = _ids(request)
    hub = hub_of(request)
    if km == "eventhub":
        raise errors.Conflict("the built-in eventhub model cannot be deleted")
    if count := hub.subscriptions.count_on(km):
        raise errors.Conflict(
            f"{count} subscriptions use knowledge model {km!r}; delete them first"
        )
    await hub.catalog.delete_model(km)
    return Response(status_code=204)


async def put_trigger(request: Request) -> Response:
    require(request, "admin")
    km, trigger = _ids(request)
    saved = await hub_of(request).catalog.put_trigger(km, trigger, await read_json(request))
    return json_response(saved)


async def delete_trigger(request: Request) -> Response:
    require(request, "admin")
    km, trigger = _ids(request)
    hub = hub_of(request)
    if count := hub.subscriptions.count_on(km, trigger):
        raise errors.Conflict(f"{count} subscriptions use trigger {trigger!r}; delete them first")
    await hub.catalog.delete_trigger(km, trigger)
    return Response(status_code=204)


async def publish(request: Request) -> Response:
    require(request, "admin")
    km, _ = _ids(request)
    if km == "eventhub":
        raise errors.Conflict("the built-in eventhub model is published by the hub itself")
    return json_response((await hub_of(request).catalog.publish(km)).to_json())


async def event_types(request: Request) -> Response:
    require(request, *CONSUMERS)
    classes = await hub_of(request).store.event_types()
    return json_response({"content": classes, "total": len(classes)})


_KM = "/intelligence/api/knowledge-models"
_ONE = f"{_KM}/{{km}}"
_TRIGGER = f"{_ONE}/triggers/{{trigger}}"
_ANY = Content("application/json")
OPERATIONS = (
    Operation("GET", _KM, list_models, "List published knowledge models", READERS, {200: _ANY}),
    Operation("GET", _ONE, get_model, "A knowledge model", READERS, {200: _ANY}),
    Operation("PUT", _ONE, put_model, "Create or edit a model's draft", ADMIN, {200: _ANY}, _ANY),
    Operation("DELETE", _ONE, delete_model, "Delete a knowledge model", ADMIN, {204: None}),
    Operation("POST", f"{_ONE}/publish", publish, "Publish a model's draft", ADMIN, {200: _ANY}),
    Operation(
        "GET", f"{_ONE}/triggers", list_triggers, "List a model's triggers", READERS, {200: _ANY}
    ),
    Operation("GET", _TRIGGER, get_trigger, "A trigger", READERS, {200: _ANY}),
    Operation(
        "PUT",
        _TRIGGER,
        put_trigger,
        "Create or edit a trigger in the draft",
        ADMIN,
        {200: _ANY},
        _ANY,
    ),
    Operation(
        "DELETE", _TRIGGER, delete_trigger, "Delete a trigger from the draft", ADMIN, {204: None}
    ),
    Operation(
        "GET", "/api/event-types", event_types, "Event classes seen so far", READERS, {200: _ANY}
    ),
)
