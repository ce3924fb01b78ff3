"""Admin API: API keys and sources (the HMAC secrets producers sign with)."""

from __future__ import annotations

from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import Response

from eventhub import auth, errors
from eventhub.api._http import hub_of, json_response, raw_segments, read_json, require
from eventhub.hub import KEEP, Keep, SourceChanges
from eventhub.log.store import KeyRecord, SourceRecord


def _key_json(key: KeyRecord) -> dict[str, Any]:
    return {
        "id": key.key_id,
        "name": key.name,
        "role": key.role,
        "sources": None if key.sources is None else list(key.sources),
        "createdAt": key.created_at,
        "revokedAt": key.revoked_at,
    }


def _source_json(source: SourceRecord) -> dict[str, Any]:
    return {
        "name": source.name,
        "requireSignature": source.require_signature,
        "maxBodyBytes": source.max_body_bytes,
        "createdAt": source.created_at,
    }


def _one_segment(request: Request, prefix: str) -> str:
    segments = raw_segments(request, prefix)
    if len(segments) != 1 or not segments[0]:
        raise errors.NotFound(f"use {prefix}{{name}} with a percent-encoded name")
    return segments[0]


async def create_key(request: Request) -> Response:
    require(request, "admin")
    body = await read_json(request)
    if not isinstance(body, dict):
        raise errors.InvalidRequest("send a JSON object {name, role, sources?}")
    role, name, sources = body.get("role"), body.get("name", ""), body.get("sources")
    if role not in auth.ROLES:
        raise errors.InvalidRequest(f"role must be one of {', '.join(auth.ROLES)}")
    if not isinstance(name, str):
        raise errors.InvalidRequest("name must be a string")
    if sources is not None and (
        not isinstance(sources, list) or not all(isinstance(s, str) and s for s in sources)
    ):
        raise errors.InvalidRequest("sources must be a list of source names, or null for any")
    if sources is not None and role != "producer":
        raise errors.InvalidRequest("only producer keys are limited to sources")
    hub = hub_of(request)
    key = await hub.create_key(name, role, None if sources is None else tuple(sources))
    key_id = key.split("_", 2)[1]
    record = next(k for k in await hub.store.list_keys() if k.key_id == key_id)
    return json_response({**_key_json(record), "key": key}, 201)


async def list_keys(request: Request) -> Response:
    require(request, "admin")
    keys = await hub_of(request).store.list_keys()
    return json_response({"keys": [_key_json(k) for k in keys]})


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
    body = await read_json(request)
    if not isinstance(body, dict):
        raise errors.InvalidRequest(
            "send a JSON object {secret?, rotateSecret?, requireSignature?, maxBodyBytes?}"
        )
    secret, required = body.get("secret"), body.get("requireSignature")
    rotate = body.get("rotateSecret", False)
    if secret is not None and (not isinstance(secret, str) or len(secret) < 16):
        raise errors.InvalidRequest("secret must be a string of at least 16 characters")
    if required is not None and not isinstance(required, bool):
        raise errors.InvalidRequest("requireSignature must be true or false")
    if not isinstance(rotate, bool):
        raise errors.InvalidRequest("rotateSecret must be true or false")
    if rotate and secret is not None:
        raise errors.InvalidRequest("send either secret or rotateSecret, not both")
    hub = hub_of(request)
    limit: int | Literal[Keep.KEEP] | None = KEEP
    if "maxBodyBytes" in body:
        limit = body["maxBodyBytes"]
        ceiling = hub.settings.max_body_bytes
        if limit is not None and (
            not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= ceiling
        ):
            raise errors.InvalidRequest(
                f"maxBodyBytes must be an integer from 1 to {ceiling} (max_body_bytes), or null"
                " for the default"
            )
    changes = SourceChanges(auth.new_secret() if rotate else secret, required, limit)
    record, generated = await hub.put_source(name, changes)
    out = _source_json(record)
    if generated or rotate:
        out["secret"] = record.secret  # generated here: shown to the admin this once
    return json_response(out)


async def list_sources(request: Request) -> Response:
    require(request, "admin")
    return json_response({"sources": [_source_json(s) for s in hub_of(request).sources.values()]})


async def delete_source(request: Request) -> Response:
    require(request, "admin")
    await hub_of(request).delete_source(_one_segment(request, "/admin/sources/"))
    return Response(status_code=204)
