"""Process definitions and instances (SPEC §6.2).

- ``PUT /api/processes/{id}`` (admin): 201 with the signing secret the first time (shown
  once), 200 after. ``GET /api/processes``, ``GET``/``DELETE /api/processes/{id}``
  (``?cancelInstances=true`` to delete one with live instances).
- ``GET /api/instances?definition=&state=&after=&limit=`` (oldest first; ``after`` is the
  ``nextAfter`` of the page before), ``GET /api/instances/{id}`` with its history,
  ``POST /api/instances/{id}/cancel`` (admin).
- ``GET /api/unrouted?after=&limit=``: events that named no live instance, by offset.

Definitions, instances and unrouted events are read by admin and consumer keys, like the
log their data comes from; only admins change them. Call header values are never shown.
The request body is ``definitions.ProcessBody`` (shared with the catalogue file); the answers are
the Structs below. Variables are free JSON: msgspec writes integers beyond 64 bits exactly.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType
from starlette.requests import Request
from starlette.responses import Response

from eventhub import errors
from eventhub.api._http import hub_of, raw_segments, require
from eventhub.api.operation import (
    ADMIN,
    READERS,
    ChoiceQuery,
    IntQuery,
    Operation,
    TextQuery,
    read_as,
    respond,
)
from eventhub.processes import definitions
from eventhub.processes.definitions import Stored
from eventhub.processes.engine import Engine
from eventhub.processes.instances import Entry, Happened, Instance, State

MAX_PAGE = 1000
_MAX_OFFSET = 2**63 - 1


class Process(msgspec.Struct, rename="camel"):
    """A process definition as reads show it: call header values masked (``********``)."""

    id: str
    name: str
    version: int
    start: definitions.ProcessStart
    steps: list[definitions.ProcessStep]
    buffer_seconds: float
    created_at: str
    updated_at: str


class CreatedProcess(Process, rename="camel"):
    """A process definition just created, with the secret that signs its calls: shown here,
    once (Standard Webhooks, ``whsec_``)."""

    secret: str


class ProcessList(msgspec.Struct):
    """Every process definition, by id."""

    processes: list[Process]
    total: int


class StartedBy(msgspec.Struct):
    """The event that started an instance."""

    source: str
    id: str
    offset: int


class HistoryEntry(msgspec.Struct):
    """One line of an instance's history: ``offset`` names the event it concerns, if any;
    ``detail`` says more (a call's answer, a wait's type, a reason)."""

    at: str
    step: str | None
    what: Happened
    offset: int | UnsetType = UNSET
    detail: str | UnsetType = UNSET


class InstanceSummary(msgspec.Struct, rename="camel"):
    """A process instance. ``step`` is the id of the step it is on (null once past the
    last); ``variables`` are free JSON, integers exact."""

    id: str
    definition_id: str
    version: int
    state: State
    step: str | None
    variables: dict[str, Any]
    started_by: StartedBy
    waiting_for: str | None
    error: str | None
    created_at: str
    updated_at: str


class InstanceDetail(InstanceSummary, rename="camel"):
    """A process instance with its history, oldest first."""

    history: list[HistoryEntry]


class InstancePage(msgspec.Struct, rename="camel"):
    """Instances, oldest first; ``nextAfter`` (null on the last page) continues the list."""

    instances: list[InstanceSummary]
    next_after: int | None


class Unrouted(msgspec.Struct):
    """An event that named an instance (``cxpinstanceid``) which could not take it, and why."""

    offset: int
    source: str
    id: str
    type: str
    cxpinstanceid: str
    reason: str | None


class UnroutedPage(msgspec.Struct, rename="camel"):
    """Unrouted events by offset; ``nextAfter`` (null on the last page) continues the list."""

    events: list[Unrouted]
    next_after: int | None


_AFTER = IntQuery.of(
    "after", "Continue after this (the nextAfter of the page before)", 0, 0, _MAX_OFFSET
)
_LIMIT = IntQuery.of("limit", "The most to return", 100, 1, MAX_PAGE)
_DEFINITION = TextQuery.of("definition", "Only the instances of this process definition")
_STATE = ChoiceQuery.of("state", "Only the instances in this state", [s.value for s in State])
_CANCEL = ChoiceQuery.of(
    "cancelInstances",
    "true: cancel its live instances first (without it, a definition that has any is kept: 409)",
    ["true", "false"],
)


def _one(request: Request, prefix: str, what: str) -> str:
    """The one percent-encoded path segment after ``prefix``."""
    segments = raw_segments(request, prefix)
    if len(segments) != 1 or not segments[0]:
        raise errors.NotFound(f"use {prefix}{{{what}}}, one percent-encoded path segment")
    return segments[0]


def _process(stored: Stored) -> Process:
    d = stored.definition
    return Process(
        d.id,
        d.name,
        d.version,
        d.start_body(),
        d.step_bodies(),
        d.buffer_seconds,
        stored.created_at,
        stored.updated_at,
    )


def _entry(entry: Entry) -> HistoryEntry:
    return HistoryEntry(
        entry.at,
        entry.step,
        Happened(entry.what),
        UNSET if entry.offset is None else entry.offset,
        UNSET if entry.detail is None else entry.detail,
    )


def _summary(engine: Engine, i: Instance) -> InstanceSummary:
    return InstanceSummary(
        i.id,
        i.definition_id,
        i.version,
        i.state,
        engine.step_id(i.definition_id, i.version, i.step),
        i.variables,
        msgspec.convert(i.started_by, StartedBy),
        i.waiting_for,
        i.error,
        i.created_at,
        i.updated_at,
    )


def _detail(engine: Engine, i: Instance) -> InstanceDetail:
    summary = msgspec.structs.asdict(_summary(engine, i))
    return InstanceDetail(**summary, history=[_entry(e) for e in i.history])


async def put_process(request: Request) -> Response:
    definition_id = _one(request, "/api/processes/", "definitionId")
    who = require(request, "admin")
    body = await read_as(request, definitions.ProcessBody)
    stored, created = await hub_of(request).processes.put(definition_id, body, who)
    shown = _process(stored)
    if created:
        # The signing secret is shown here, once; reads never show it.
        made = CreatedProcess(**msgspec.structs.asdict(shown), secret=stored.secret)
        return respond(made, 201)
    return respond(shown)


async def list_processes(request: Request) -> Response:
    require(request, *READERS)
    engine = hub_of(request).processes
    found = [_process(s) for _, s in sorted(engine.definitions.items())]
    return respond(ProcessList(found, len(found)))


async def get_process(request: Request) -> Response:
    definition_id = _one(request, "/api/processes/", "definitionId")
    require(request, *READERS)
    return respond(_process(hub_of(request).processes.get(definition_id)))


async def delete_process(request: Request) -> Response:
    definition_id = _one(request, "/api/processes/", "definitionId")
    require(request, "admin")
    cancel = _CANCEL.read(request) == "true"
    await hub_of(request).processes.delete(definition_id, cancel)
    return Response(status_code=204)


async def list_instances(request: Request) -> Response:
    require(request, *READERS)
    hub = hub_of(request)
    state = _STATE.read(request)
    after, limit = _AFTER.read(request), _LIMIT.read(request)
    definition = _DEFINITION.read(request)
    found = await hub.store.list_instances(
        definition, None if state is None else State(state), after, limit + 1
    )
    page = found[:limit]
    return respond(
        InstancePage(
            [_summary(hub.processes, i) for i in page],
            page[-1].seq if len(found) > limit else None,
        )
    )


async def get_instance(request: Request) -> Response:
    instance_id = _one(request, "/api/instances/", "instanceId")
    require(request, *READERS)
    hub = hub_of(request)
    instance = await hub.store.get_instance(instance_id)
    if instance is None:
        raise errors.NotFound(f"no instance {instance_id!r}")
    return respond(_detail(hub.processes, instance))


async def cancel_instance(request: Request) -> Response:
    segments = raw_segments(request, "/api/instances/")
    if len(segments) != 2 or not segments[0] or segments[1] != "cancel":
        raise errors.NotFound("use POST /api/instances/{instanceId}/cancel")
    who = require(request, "admin")
    hub = hub_of(request)
    await hub.processes.cancel(segments[0], f"cancelled by key {who.key_id}")
    instance = await hub.store.get_instance(segments[0])
    assert instance is not None
    return respond(_detail(hub.processes, instance))


async def list_unrouted(request: Request) -> Response:
    require(request, *READERS)
    after, limit = _AFTER.read(request), _LIMIT.read(request)
    found = await hub_of(request).store.list_unrouted(after, limit + 1)
    page = msgspec.convert(found[:limit], list[Unrouted])
    more = len(found) > limit
    return respond(UnroutedPage(page, page[-1].offset if more else None))


_DEF = "/api/processes/{definitionId}"
_DEF_ROUTE = "/api/processes/{rest:path}"
_INSTANCE = "/api/instances/{instanceId}"
_INSTANCE_ROUTE = "/api/instances/{rest:path}"
OPERATIONS = (
    Operation(
        "GET",
        "/api/processes",
        list_processes,
        "List process definitions",
        READERS,
        {200: ProcessList},
    ),
    Operation(
        "GET", _DEF, get_process, "A process definition", READERS, {200: Process}, route=_DEF_ROUTE
    ),
    Operation(
        "PUT",
        _DEF,
        put_process,
        "Create or change a process definition",
        ADMIN,
        {200: Process, 201: CreatedProcess},
        definitions.ProcessBody,
        route=_DEF_ROUTE,
    ),
    Operation(
        "DELETE",
        _DEF,
        delete_process,
        "Delete a process definition",
        ADMIN,
        {204: None},
        query=(_CANCEL,),
        route=_DEF_ROUTE,
    ),
    Operation(
        "GET",
        "/api/instances",
        list_instances,
        "List process instances, oldest first",
        READERS,
        {200: InstancePage},
        query=(_DEFINITION, _STATE, _AFTER, _LIMIT),
    ),
    Operation(
        "GET",
        _INSTANCE,
        get_instance,
        "A process instance, with its history",
        READERS,
        {200: InstanceDetail},
        route=_INSTANCE_ROUTE,
    ),
    Operation(
        "POST",
        f"{_INSTANCE}/cancel",
        cancel_instance,
        "Cancel a process instance",
        ADMIN,
        {200: InstanceDetail},
        route=_INSTANCE_ROUTE,
    ),
    Operation(
        "GET",
        "/api/unrouted",
        list_unrouted,
        "Events that named no live instance",
        READERS,
        {200: UnroutedPage},
        query=(_AFTER, _LIMIT),
    ),
)
