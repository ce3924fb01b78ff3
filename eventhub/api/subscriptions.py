"""The Event Subscription API (SPEC §4), at the Celonis paths."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from eventhub import errors
from eventhub.api._http import hub_of, int_param, json_response, read_json, require
from eventhub.api.operation import READERS, Content, Operation
from eventhub.clock import rfc3339
from eventhub.delivery.states import Move, Status
from eventhub.models import Subscription

ROLES = ("admin", "consumer")
MASK = "********"


async def _view(request: Request, sub: Subscription) -> dict[str, Any]:
    lag = await hub_of(request).subscriptions.lag(sub)
    return {
        "id": sub.id,
        "name": sub.name,
        "owner": sub.owner,
        "knowledgeModelId": sub.km,
        "triggerId": sub.trigger,
        "status": str(sub.status),
        # Callback headers are write-only: their names are shown, never their values.
        "callbackInfo": {"uri": sub.uri, "headers": dict.fromkeys(sub.headers, MASK)},
        "configurations": ["SKIP_ERRORS"] if sub.skip_errors else [],
        "format": sub.format,
        "batchSize": sub.batch_size,
        "maxRetries": sub.max_retries,
        "offset": sub.cursor,
        "latestSucceedEvent": sub.latest_succeed_event,
        "latestSucceedOffset": sub.latest_succeed_offset,
        "lag": lag,
        "lastError": sub.last_error,
        "counts": {"delivered": sub.delivered, "skipped": sub.skipped, "lost": sub.lost},
        "attempts": sub.attempts,
        "createdAt": sub.created_at,
        "updatedAt": sub.updated_at,
    }


async def create(request: Request) -> Response:
    who = require(request, *ROLES)
    hub = hub_of(request)
    km, trigger = request.path_params["km"], request.path_params["trigger"]
    _, tid = hub.catalog.trigger(km, trigger)
    body = await read_json(request)
    sub = await hub.subscriptions.create(who, km, trigger, tid, body)
    # The signing secret is shown to its owner here, and on rotation; never in reads.
    return json_response({**await _view(request, sub), "secret": sub.secret}, 201)


async def list_all(request: Request) -> Response:
    who = require(request, *ROLES)
    status = request.query_params.get("status")
    if status is not None and status not in set(Status):
        raise errors.InvalidRequest(f"status must be one of {', '.join(Status)}")
    subs = hub_of(request).subscriptions.list(who, status, request.query_params.get("trigger"))
    content = [await _view(request, s) for s in subs]
    return json_response({"content": content, "total": len(content)})


async def get(request: Request) -> Response:
    who = require(request, *ROLES)
    sub = hub_of(request).subscriptions.get(request.path_params["id"], who)
    return json_response(await _view(request, sub))


async def _act(
    request: Request, move: Move, body: Any = None, from_offset: int | None = None
) -> Response:
    who = require(request, *ROLES)
    sub = await hub_of(request).subscriptions.act(
        request.path_params["id"], who, move, body, from_offset
    )
    if sub is None:
        return Response(status_code=204)
    return json_response(await _view(request, sub))


async def update(request: Request) -> Response:
    require(request, *ROLES)
    return await _act(request, Move.UPDATE, await read_json(request))


async def pause(request: Request) -> Response:
    return await _act(request, Move.PAUSE)


async def resume(request: Request) -> Response:
    return await _act(request, Move.RESUME)


async def resume_from_latest(request: Request) -> Response:
    return await _act(request, Move.RESUME_FROM_LATEST)


async def replay(request: Request) -> Response:
    from_offset = int_param(request, "fromOffset", -1, 0, 2**63 - 1)
    if from_offset < 0:
        raise errors.InvalidRequest("replay needs ?fromOffset=N")
    return await _act(request, Move.REPLAY, from_offset=from_offset)


async def delete(request: Request) -> Response:
    return await _act(request, Move.DELETE)


async def attempts(request: Request) -> Response:
    who = require(request, *ROLES)
    hub = hub_of(request)
    sub = hub.subscriptions.get(request.path_params["id"], who)
    limit = int_param(request, "limit", 50, 1, 100)
    found = await hub.store.list_attempts(sub.id, limit)
    return json_response({"content": [a.to_json() for a in found], "total": len(found)})


async def rotate_secret(request: Request) -> Response:
    who = require(request, *ROLES)
    sub = await hub_of(request).subscriptions.rotate_secret(request.path_params["id"], who)
    expires = sub.previous_secret_expires
    # Times in the API are RFC 3339, like createdAt; the epoch seconds stay internal.
    return json_response(
        {
            "secret": sub.secret,
            "previousSecretExpiresAt": None if expires is None else rfc3339(expires),
        }
    )


_SUBS = "/intelligence/api/subscriptions"
_ONE = f"{_SUBS}/{{id}}"
_ANY = Content("application/json")
OPERATIONS = (
    Operation(
        "POST",
        "/intelligence/api/knowledge-models/{km}/triggers/{trigger}/subscriptions",
        create,
        "Subscribe a webhook to a trigger",
        READERS,
        {201: _ANY},
        _ANY,
    ),
    Operation("GET", _SUBS, list_all, "List subscriptions", READERS, {200: _ANY}),
    Operation("GET", _ONE, get, "A subscription", READERS, {200: _ANY}),
    Operation("PUT", _ONE, update, "Change a subscription", READERS, {200: _ANY}, _ANY),
    Operation("DELETE", _ONE, delete, "Delete a subscription", READERS, {204: None}),
    Operation("PATCH", f"{_ONE}/pause", pause, "Pause delivery", READERS, {200: _ANY}),
    Operation("PATCH", f"{_ONE}/resume", resume, "Resume delivery", READERS, {200: _ANY}),
    Operation(
        "PATCH",
        f"{_ONE}/resume-from-latest",
        resume_from_latest,
        "Resume at the head",
        READERS,
        {200: _ANY},
    ),
    Operation(
        "PATCH", f"{_ONE}/replay", replay, "Deliver again from an offset", READERS, {200: _ANY}
    ),
    Operation(
        "GET", f"{_ONE}/attempts", attempts, "Recent delivery attempts", READERS, {200: _ANY}
    ),
    Operation(
        "POST",
        f"{_ONE}/rotate-secret",
        rotate_secret,
        "Rotate the signing secret",
        READERS,
        {200: _ANY},
    ),
)
