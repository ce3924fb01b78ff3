"""``GET /api/me``: who the caller's key is. The console asks it once at sign-in, to show
only what the key may do; a script may use it to check a key without side effects."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from eventhub import auth
from eventhub.api._http import require
from eventhub.api.operation import Operation, respond


class Me(msgspec.Struct, rename="camel"):
    """The caller's key: its id (the part of the key between ``eh_`` and the secret), its
    role, and the sources a producer key is limited to (null: any)."""

    key_id: str
    role: auth.Role
    sources: list[str] | None


async def get_me(request: Request) -> Response:
    who = require(request, *auth.ROLES)
    sources = None if who.sources is None else list(who.sources)
    return respond(Me(who.key_id, auth.Role(who.role), sources))


OPERATIONS = (
    Operation(
        "GET",
        "/api/me",
        get_me,
        "The caller's key: id, role, sources",
        tuple(str(role) for role in auth.ROLES),
        {200: Me},
        tag="console",
    ),
)
