"""Request helpers shared by the endpoints: bounded bodies, credentials, raw path segments."""

from __future__ import annotations

import asyncio
from urllib.parse import unquote_to_bytes

from starlette.requests import Request
from starlette.types import Scope

from eventhub import auth, errors
from eventhub.api import _asgi
from eventhub.hub import Hub
from eventhub.ops import logs


def hub_of(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def header(request: Request, name: bytes) -> str | None:
    """One request header (``name`` in lower case). Starlette's ``request.headers`` scans and
    decodes every header per lookup; ingest looks up five, so the map is built once."""
    scope = request.scope
    found = scope.get("eventhub.headers")
    if found is None:
        found = scope["eventhub.headers"] = dict(scope["headers"])
    value = found.get(name)
    return None if value is None else value.decode("latin-1")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing before reading it when it is too large or unsized, and
    giving up on a client that takes longer than ``body_timeout`` to send it (as ingest
    does: a fixed 30 s here let a keyed client hold a connection past the operator's bound)."""
    _asgi.check_length(header(request, b"content-length"), limit)
    within = hub_of(request).settings.body_timeout
    try:
        async with asyncio.timeout(within):
            return await request.body()
    except TimeoutError:
        raise errors.RequestTimeout(
            f"the body did not arrive within {within:g} s; send it faster or in smaller parts"
        ) from None


def principal(request: Request) -> auth.Principal | None:
    """The caller's key, or None when no Authorization header was sent; a bad key is 401.
    Its id is noted for the request's access line (ops/logs.py)."""
    who = auth.identify(hub_of(request).keyring, header(request, b"authorization"))
    if who is not None:
        request.scope[logs.KEY_ID] = who.key_id
    return who


def require(request: Request, *roles: str) -> auth.Principal:
    who = principal(request)
    if who is None:
        raise errors.Unauthorized("send an API key: Authorization: Bearer <key>")
    if who.role not in roles:
        raise errors.Forbidden(f"this needs a key with role {' or '.join(roles)}")
    return who


def raw_segments(request: Request, prefix: str) -> list[str]:
    return segments_of(request.scope, prefix)


def segments_of(scope: Scope, prefix: str) -> list[str]:
    """Path segments after ``prefix``, each percent-decoded once from the raw path, so that
    ``%2F`` inside a segment stays part of it."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    raw = raw.split(b"?", 1)[0]
    rest = raw[len(prefix) :] if raw.startswith(prefix.encode()) else b""
    try:
        return [unquote_to_bytes(part).decode("utf-8") for part in rest.split(b"/")]
    except UnicodeDecodeError:
        raise errors.NotFound("the path is not valid UTF-8") from None
