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
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from eventhub import errors
from eventhub.api._http import hub_of, int_param, raw_segments, read_json, require
from eventhub.api.operation import ADMIN, Content, Operation
from eventhub.codec import jsontext
from eventhub.processes import instances
from eventhub.processes.definitions import Stored
from eventhub.processes.engine import Engine
from eventhub.processes.instances import Instance

READERS = ("admin", "consumer")
MAX_PAGE = 1000
_MAX_OFFSET = 2**63 - 1


def _json(payload: object, status: int = 200) -> Response:
    # jsontext: variables may hold integers beyond 64 bits, written digit for digit.
    return Response(jsontext.dumps(payload), status, media_type="application/json")


def _one(request: Request, prefix: str, what: str) -> str:
    """The one percent-encoded path segment after ``prefix``."""
    segments = raw_segments(request, prefix)
    if len(segments) != 1 or not segments[0]:
        raise errors.NotFound(f"use {prefix}{{{what}}}, one percent-encoded path segment")
    return segments[0]


def _definition_view(stored: Stored) -> dict[str, object]:
    return {
        **stored.definition.to_json(),
        "createdAt": stored.created_at,
        "updatedAt": stored.updated_at,
    }


def _instance_view(engine: Engine, instance: Instance, with_history: bool) -> dict[str, object]:
    step = engine.step_id(instance.definition_id, instance.version, instance.step)
    return instance.to_json(step, with_history)


async def put_process(request: Request) -> Response:
    definition_id = _one(request, "/api/processes/", "definitionId")
    who = require(request, "admin")
    body = await read_json(request)
    stored, created = await hub_of(request).processes.put(definition_id, body, who)
    if created:
        # The signing secret is shown here, once; reads never show it.
        return _json({**_definition_view(stored), "secret": stored.secret}, 201)
    return _json(_definition_view(stored))


async def list_processes(request: Request) -> Response:
    require(request, *READERS)
    engine = hub_of(request).processes
    found = [_definition_view(s) for _, s in sorted(engine.definitions.items())]
    return _json({"processes": found, "total": len(found)})


async def get_process(request: Request) -> Response:
    definition_id = _one(request, "/api/processes/", "definitionId")
    require(request, *READERS)
    return _json(_definition_view(hub_of(request).processes.get(definition_id)))


async def delete_process(request: Request) -> Response:
    definition_id = _one(request, "/api/processes/", "definitionId")
    require(request, "admin")
    flag = request.query_params.get("cancelInstances", "false")
    if flag not in ("true", "false"):
        raise errors.InvalidRequest("cancelInstances must be true or false")
    await hub_of(request).processes.delete(definition_id, flag == "true")
    return Response(status_code=204)


async def list_instances(request: Request) -> Response:
    require(request, *READERS)
    hub = hub_of(request)
    raw_state = request.query_params.get("state")
    state = None if raw_state is None else instances.state_of(raw_state)
    after = int_param(request, "after", 0, 0, _MAX_OFFSET)
    limit = int_param(request, "limit", 100, 1, MAX_PAGE)
    definition = request.query_params.get("definition")
    found = await hub.store.list_instances(definition, state, after, limit + 1)
    page = found[:limit]
    return _json(
        {
            "instances": [_instance_view(hub.processes, i, False) for i in page],
            "nextAfter": page[-1].seq if len(found) > limit else None,
        }
    )


async def get_instance(request: Request) -> Response:
    instance_id = _one(request, "/api/instances/", "instanceId")
    require(request, *READERS)
    hub = hub_of(request)
    instance = await hub.store.get_instance(instance_id)
    if instance is None:
        raise errors.NotFound(f"no instance {instance_id!r}")
    return _json(_instance_view(hub.processes, instance, True))


async def cancel_instance(request: Request) -> Response:
    segments = raw_segments(request, "/api/instances/")
    if len(segments) != 2 or not segments[0] or segments[1] != "cancel":
        raise errors.NotFound("use POST /api/instances/{instanceId}/cancel")
    who = require(request, "admin")
    hub = hub_of(request)
    await hub.processes.cancel(segments[0], f"cancelled by key {who.key_id}")
    instance = await hub.store.get_instance(segments[0])
    assert instance is not None
    return _json(_instance_view(hub.processes, instance, True))


async def list_unrouted(request: Request) -> Response:
    require(request, *READERS)
    after = int_param(request, "after", 0, 0, _MAX_OFFSET)
    limit = int_param(request, "limit", 100, 1, MAX_PAGE)
    found = await hub_of(request).store.list_unrouted(after, limit + 1)
    page = found[:limit]
    return _json({"events": page, "nextAfter": page[-1]["offset"] if len(found) > limit else None})


_ANY = Content("application/json")
_DEF = "/api/processes/{definitionId}"
_DEF_ROUTE = "/api/processes/{rest:path}"
_INSTANCE = "/api/instances/{instanceId}"
_INSTANCE_ROUTE = "/api/instances/{rest:path}"
OPERATIONS = (
    Operation(
        "GET", "/api/processes", list_processes, "List process definitions", READERS, {200: _ANY}
    ),
    Operation(
        "GET", _DEF, get_process, "A process definition", READERS, {200: _ANY}, route=_DEF_ROUTE
    ),
    Operation(
        "PUT",
        _DEF,
        put_process,
        "Create or change a process definition",
        ADMIN,
        {200: _ANY, 201: _ANY},
        _ANY,
        route=_DEF_ROUTE,
    ),
    Operation(
        "DELETE",
        _DEF,
        delete_process,
        "Delete a process definition",
        ADMIN,
        {204: None},
        route=_DEF_ROUTE,
    ),
    Operation(
        "GET", "/api/instances", list_instances, "List process instances", READERS, {200: _ANY}
    ),
    Operation(
        "GET",
        _INSTANCE,
        get_instance,
        "A process instance, with its history",
        READERS,
        {200: _ANY},
        route=_INSTANCE_ROUTE,
    ),
    Operation(
        "POST",
        f"{_INSTANCE}/cancel",
        cancel_instance,
        "Cancel a process instance",
        ADMIN,
        {200: _ANY},
        route=_INSTANCE_ROUTE,
    ),
    Operation(
        "GET",
        "/api/unrouted",
        list_unrouted,
        "Events that named no live instance",
        READERS,
        {200: _ANY},
    ),
)
