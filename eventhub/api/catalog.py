"""Knowledge models and triggers (SPEC §3): admins edit drafts and publish; consumers
discover the last published version. Also the event classes seen so far.

Request bodies are the catalogue's own Structs (``catalog/shapes.py``, shared with the
catalogue file); the answers are declared here."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from eventhub import errors
from eventhub.api._http import hub_of, require
from eventhub.api.operation import ADMIN, READERS, Operation, read_as, respond
from eventhub.catalog.shapes import Filter, ModelSpec, TriggerSpec
from eventhub.models import ModelVersion
from eventhub.models import Trigger as TriggerRecord

CONSUMERS = ("admin", "consumer")
# A trigger's filters nest up to 64 levels: far below this, which only bounds the read.


class Trigger(msgspec.Struct):
    """A trigger: the events its filters select (see ``TriggerSpec`` for their syntax)."""

    id: str
    name: str
    description: str
    filters: list[Filter]


class KnowledgeModelDraft(msgspec.Struct):
    """A knowledge model's draft, as admins edit it: consumers see it only once published."""

    id: str
    name: str
    description: str
    triggers: list[Trigger]


class KnowledgeModelSummary(msgspec.Struct, rename="camel"):
    """A published knowledge model without its triggers: ``version`` counts its
    publications, ``publishedAt`` is the last one's time."""

    id: str
    name: str
    description: str
    version: Annotated[int, msgspec.Meta(ge=1)]
    published_at: str


class KnowledgeModel(KnowledgeModelSummary, rename="camel"):
    """A published knowledge model with its triggers, as its last publication left them."""

    triggers: list[Trigger]


class KnowledgeModelPage(msgspec.Struct):
    content: list[KnowledgeModelSummary]
    total: int


class TriggerPage(msgspec.Struct):
    content: list[Trigger]
    total: int


class EventType(msgspec.Struct, rename="camel"):
    """An event class seen in the log: ``(type, source, group)`` with how many events of it
    arrived and when the first and last did."""

    type: str
    source: str
    group: str | None
    count: Annotated[int, msgspec.Meta(ge=1)]
    first_seen: str
    last_seen: str


class EventTypePage(msgspec.Struct):
    content: list[EventType]
    total: int


def _trigger(trigger: TriggerRecord) -> Trigger:
    return Trigger(trigger.id, trigger.name, trigger.description, list(trigger.filters))


def _summary(version: ModelVersion) -> KnowledgeModelSummary:
    return KnowledgeModelSummary(
        version.id, version.name, version.description, version.version, version.published_at or ""
    )


def _model(version: ModelVersion) -> KnowledgeModel:
    triggers = [_trigger(t) for t in version.triggers.values()]
    return KnowledgeModel(**msgspec.structs.asdict(_summary(version)), triggers=triggers)


def _draft(draft: dict[str, Any]) -> KnowledgeModelDraft:
    """A stored draft (a dict: it is kept as JSON) as its answer."""
    return msgspec.convert(draft, KnowledgeModelDraft)


def _ids(request: Request) -> tuple[str, str]:
    return request.path_params["km"], request.path_params.get("trigger", "")


async def list_models(request: Request) -> Response:
    require(request, *CONSUMERS)
    models = [_summary(m) for m in hub_of(request).catalog.published.values()]
    return respond(KnowledgeModelPage(models, len(models)))


async def get_model(request: Request) -> Response:
    require(request, *CONSUMERS)
    km, _ = _ids(request)
    return respond(_model(hub_of(request).catalog.model(km)))


async def list_triggers(request: Request) -> Response:
    require(request, *CONSUMERS)
    km, _ = _ids(request)
    triggers = [_trigger(t) for t in hub_of(request).catalog.model(km).triggers.values()]
    return respond(TriggerPage(triggers, len(triggers)))


async def get_trigger(request: Request) -> Response:
    require(request, *CONSUMERS)
    trigger, _ = hub_of(request).catalog.trigger(*_ids(request))
    return respond(_trigger(trigger))


async def put_model(request: Request) -> Response:
    require(request, "admin")
    km, _ = _ids(request)
    spec = await read_as(request, ModelSpec)
    return respond(_draft(await hub_of(request).catalog.put_model(km, spec)))


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
    spec = await read_as(request, TriggerSpec)
    saved = await hub_of(request).catalog.put_trigger(km, trigger, spec)
    return respond(msgspec.convert(saved, Trigger))


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
    return respond(_model(await hub_of(request).catalog.publish(km)))


async def event_types(request: Request) -> Response:
    require(request, *CONSUMERS)
    classes = msgspec.convert(await hub_of(request).store.event_types(), list[EventType])
    return respond(EventTypePage(classes, len(classes)))


_PUBLISHED = (
    "Consumers see only published versions: the last one published, never the draft admins"
    " are editing. Only published triggers match events."
)
_DRAFT = (
    "Edits the draft only: consumers and matching keep the last published version until"
    " the model is published again (POST …/publish)."
)
_KM = "/intelligence/api/knowledge-models"
_ONE = f"{_KM}/{{km}}"
_TRIGGER = f"{_ONE}/triggers/{{trigger}}"
OPERATIONS = (
    Operation(
        "GET",
        _KM,
        list_models,
        "List published knowledge models",
        READERS,
        {200: KnowledgeModelPage},
        description=_PUBLISHED,
    ),
    Operation(
        "GET",
        _ONE,
        get_model,
        "A published knowledge model and its triggers",
        READERS,
        {200: KnowledgeModel},
        description=_PUBLISHED + " A model never published is 404.",
    ),
    Operation(
        "PUT",
        _ONE,
        put_model,
        "Create or edit a model's draft",
        ADMIN,
        {200: KnowledgeModelDraft},
        ModelSpec,
        description=_DRAFT,
    ),
    Operation(
        "DELETE",
        _ONE,
        delete_model,
        "Delete a knowledge model",
        ADMIN,
        {204: None},
        description="Deletes the draft and every published version; refused (409) while"
        " subscriptions use the model, and for the built-in `eventhub` model.",
    ),
    Operation(
        "POST",
        f"{_ONE}/publish",
        publish,
        "Publish a model's draft",
        ADMIN,
        {200: KnowledgeModel},
        description="The draft becomes the next version (`version` + 1): what consumers"
        " see and what events are matched against from now on.",
    ),
    Operation(
        "GET",
        f"{_ONE}/triggers",
        list_triggers,
        "List a published model's triggers",
        READERS,
        {200: TriggerPage},
        description=_PUBLISHED,
    ),
    Operation(
        "GET",
        _TRIGGER,
        get_trigger,
        "A published trigger",
        READERS,
        {200: Trigger},
        description=_PUBLISHED,
    ),
    Operation(
        "PUT",
        _TRIGGER,
        put_trigger,
        "Create or edit a trigger in the draft",
        ADMIN,
        {200: Trigger},
        TriggerSpec,
        description=_DRAFT + " The model's draft must exist; filters are checked now.",
    ),
    Operation(
        "DELETE",
        _TRIGGER,
        delete_trigger,
        "Delete a trigger from the draft",
        ADMIN,
        {204: None},
        description=_DRAFT + " Refused (409) while subscriptions use the trigger.",
    ),
    Operation(
        "GET",
        "/api/event-types",
        event_types,
        "Event classes seen so far",
        READERS,
        {200: EventTypePage},
    ),
)
