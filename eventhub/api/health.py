"""``GET /healthz`` (the process answers) and ``GET /readyz`` (it can do its work), for load
balancers and orchestrators: no key needed."""

from __future__ import annotations

from typing import Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from eventhub import errors
from eventhub.api._http import hub_of, principal
from eventhub.api.operation import PUBLIC, Operation, respond


class Healthy(msgspec.Struct):
    status: Literal["ok"] = "ok"


class Ready(msgspec.Struct):
    status: Literal["ready"] = "ready"


async def healthz(request: Request) -> Response:
    return respond(Healthy())


async def readyz(request: Request) -> Response:
    """Ready: the database takes a write and every background task runs (else 503). Anyone
    may ask; an admin key also gets the ids of crashed subscription supervisors."""
    hub = hub_of(request)
    try:
        who = principal(request)
    except errors.Unauthorized:
        who = None  # a probe with a stale key still learns whether the hub is ready
    await hub.check_ready(detailed=who is not None and who.role == "admin")
    return respond(Ready())


OPERATIONS = (
    Operation("GET", "/healthz", healthz, "The process answers", PUBLIC, {200: Healthy}),
    Operation(
        "GET",
        "/readyz",
        readyz,
        "The hub can take and deliver events",
        PUBLIC,
        {200: Ready},
        description=(
            "503 `not_ready` when the database refuses a write or a background task stopped;"
            " with an admin key, the message names the crashed subscription supervisors."
        ),
    ),
)
