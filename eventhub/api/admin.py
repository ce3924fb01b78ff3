"""Admin API: API keys and sources (the HMAC secrets producers sign with)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from eventhub import auth, errors
from eventhub.api._http import hub_of, raw_segments, require
from eventhub.api.operation import ADMIN, Operation, read_as, respond
from eventhub.hub import KEEP, Keep, SourceChanges
from eventhub.log.records import KeyRecord, SourceRecord

_BODY_LIMIT = 64 * 1024
SourceName = Annotated[str, msgspec.Meta(min_length=1)]


class NewKey(msgspec.Struct, forbid_unknown_fields=True):
    """A key to make. ``sources`` limits a producer key to those sources (null: any)."""

    role: auth.Role
    name: str = ""
    sources: list[SourceName] | None = None


class Key(msgspec.Struct, rename="camel"):
    id: str
    name: str
    role: auth.Role
    sources: list[str] | None
    created_at: str
    revoked_at: str | None


class CreatedKey(Key, rename="camel"):
    """The key itself is shown here, once: only its hash is kept."""

    key: str


class KeyList(msgspec.Struct):
    keys: list[Key]


class SourceUpdate(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """A source's settings; absent ones keep their value. ``secret`` sets the HMAC secret,
    ``rotateSecret`` generates one (shown in the answer, once); an update with neither keeps
    it. ``maxBodyBytes``: the most a request signed for this source may send (null: the hub's
    ``max_unauthenticated_body_bytes``)."""

    secret: Annotated[str, msgspec.Meta(min_length=16)] | None = None
    rotate_secret: bool = False
    require_signature: bool | None = None
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1)] | msgspec.UnsetType | None = msgspec.UNSET


class Source(msgspec.Struct, rename="camel"):
    name: str
    require_signature: bool
    max_body_bytes: int | None
    created_at: str
    # Only when the hub generated it (a new source without one, or rotateSecret): shown once.
    secret: str | msgspec.UnsetType = msgspec.UNSET


class SourceList(msgspec.Struct):
    sources: list[Source]


def _key(key: KeyRecord) -> Key:
    sources = None if key.sources is None else list(key.sources)
    role = auth.Role(key.role)
    return Key(key.key_id, key.name, role, sources, key.created_at, key.revoked_at)


def _source(source: SourceRecord) -> Source:
    return Source(source.name, source.require_signature, source.max_body_bytes, source.created_at)


def _one_segment(request: Request, prefix: str) -> str:
    segments = raw_segments(request, prefix)
    if len(segments) != 1 or not segments[0]:
        raise errors.NotFound(f"use {prefix}{{name}} with a percent-encoded name")
    return segments[0]


async def create_key(request: Request) -> Response:
    require(request, "admin")
    body = await read_as(request, NewKey, _BODY_LIMIT)
    if body.sources is not None and body.role is not auth.Role.PRODUCER:
        raise errors.InvalidRequest("only producer keys are limited to sources")
    hub = hub_of(request)
    sources = None if body.sources is None else tuple(body.sources)
    key = await hub.create_key(body.name, body.role, sources)
    key_id = key.split("_", 2)[1]
    made = _key(next(k for k in await hub.store.list_keys() if k.key_id == key_id))
    return respond(CreatedKey(**msgspec.structs.asdict(made), key=key), 201)


async def list_keys(request: Request) -> Response:
    require(request, "admin")
    keys = await hub_of(request).store.list_keys()
    return respond(KeyList([_key(k) for k in keys]))


async def revoke_key(request: Request) -> Response:
    require(request, "admin")
    await hub_of(request).revoke_key(_one_segment(request, "/admin/keys/"))
    return Response(status_code=204)


async def put_source(request: Request) -> Response:
    """Create a source, or update one. Its secret changes only when asked: a new ``secret``,
    or ``rotateSecret: true`` for a generated one; otherwise an update keeps it, so that
    changing ``requireSignature`` never breaks the producers that sign with it."""
    require(request, "admin")
    name = _one_segment(request, "/admin/sources/")
    if auth.reserved_for_hub(name, ""):
        raise errors.InvalidRequest(
            f"source {auth.HUB_SOURCE!r} is reserved: only the hub writes its notifications"
        )
    body = await read_as(request, SourceUpdate, _BODY_LIMIT)
    if body.rotate_secret and body.secret is not None:
        raise errors.InvalidRequest("send either secret or rotateSecret, not both")
    hub = hub_of(request)
    limit: int | Literal[Keep.KEEP] | None = KEEP
    if body.max_body_bytes is not msgspec.UNSET:
        limit = body.max_body_bytes
        ceiling = hub.settings.max_body_bytes
        if limit is not None and limit > ceiling:
            raise errors.InvalidRequest(
                f"maxBodyBytes must be an integer from 1 to {ceiling} (max_body_bytes), or null"
                " for the default"
            )
    secret = auth.new_secret() if body.rotate_secret else body.secret
    record, generated = await hub.put_source(
        name, SourceChanges(secret, body.require_signature, limit)
    )
    out = _source(record)
    if generated or body.rotate_secret:
        out.secret = record.secret  # generated here: shown to the admin this once
    return respond(out)


async def list_sources(request: Request) -> Response:
    require(request, "admin")
    return respond(SourceList([_source(s) for s in hub_of(request).sources.values()]))


async def delete_source(request: Request) -> Response:
    require(request, "admin")
    await hub_of(request).delete_source(_one_segment(request, "/admin/sources/"))
    return Response(status_code=204)


_KEYS, _SOURCES = "/admin/keys", "/admin/sources"
OPERATIONS = (
    Operation("POST", _KEYS, create_key, "Make an API key", ADMIN, {201: CreatedKey}, NewKey),
    Operation("GET", _KEYS, list_keys, "List API keys, revoked ones too", ADMIN, {200: KeyList}),
    Operation(
        "DELETE",
        f"{_KEYS}/{{keyId}}",
        revoke_key,
        "Revoke an API key; its subscriptions pause",
        ADMIN,
        {204: None},
        route=f"{_KEYS}/{{rest:path}}",
    ),
    Operation("GET", _SOURCES, list_sources, "List sources", ADMIN, {200: SourceList}),
    Operation(
        "PUT",
        f"{_SOURCES}/{{name}}",
        put_source,
        "Register a source, or change one",
        ADMIN,
        {200: Source},
        SourceUpdate,
        route=f"{_SOURCES}/{{rest:path}}",
    ),
    Operation(
        "DELETE",
        f"{_SOURCES}/{{name}}",
        delete_source,
        "Delete a source",
        ADMIN,
        {204: None},
        route=f"{_SOURCES}/{{rest:path}}",
    ),
)
