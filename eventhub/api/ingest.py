"""Ingest endpoints (SPEC §1): CloudEvents in every HTTP mode, Camunda Optimize batches and
UiPath Orchestrator webhooks. Each validates the whole request, checks the caller's right to
every source it names, then appends all of it or none of it."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response

from eventhub import auth, errors
from eventhub.api._http import (
    header,
    hub_of,
    json_response,
    principal,
    raw_segments,
    read_body,
)
from eventhub.codec import media, parse
from eventhub.events import Appended, NewEvent

_SIGNATURE_HEADERS = (b"x-eventhub-hmac", b"x-emporix-hmac")


def _signature(request: Request, names: Sequence[bytes] = _SIGNATURE_HEADERS) -> str | None:
    for name in names:
        value = header(request, name)
        if value is not None:
            return value
    return None


async def _ingest(
    request: Request,
    events: list[NewEvent],
    body: bytes,
    who: auth.Principal | None,
    signature: str | None,
) -> list[Appended]:
    hub = hub_of(request)
    auth.authorize_publish(who, (e.source for e in events), hub.sources, body, signature)
    return await hub.store.append(events)


def _receipt(events: list[NewEvent], appended: list[Appended]) -> Response:
    return json_response(
        {
            "accepted": len(events),
            "events": [
                {
                    "source": e.source,
                    "id": e.id,
                    "offset": a.offset,
                    "revision": a.revision,
                    "duplicate": a.duplicate,
                }
                for e, a in zip(events, appended, strict=True)
            ],
        }
    )


def _credentials(request: Request, signature: str | None) -> auth.Principal | None:
    who = principal(request)
    if who is None and signature is None:
        raise errors.Unauthorized("send an API key (Authorization: Bearer) or a signature")
    return who


async def post_events(request: Request) -> Response:
    """``POST /events``: binary, structured or batch mode, told apart by Content-Type."""
    hub = hub_of(request)
    hub.enter_ingest()
    try:
        signature = _signature(request)
        who = _credentials(request, signature)
        body = await read_body(request, hub.settings.max_body_bytes, hub.settings.body_timeout)
        content_type = header(request, b"content-type")
        essence = media.essence(content_type)
        if essence == media.STRUCTURED:
            events = [parse.parse_structured(body)]
        elif essence == media.BATCH:
            events = parse.parse_batch(body, hub.settings.max_batch_events)
        elif essence.startswith("application/cloudevents"):
            raise errors.UnsupportedMediaType(
                f"event format {essence!r} is not supported; use JSON ({media.STRUCTURED})"
            )
        elif parse.is_binary_mode(request.headers.raw):
            events = [parse.parse_binary(request.headers.raw, content_type, body)]
        else:
            raise errors.UnsupportedMediaType(
                "not a CloudEvent: send ce-* headers (binary mode) or Content-Type "
                f"{media.STRUCTURED} or {media.BATCH}"
            )
        appended = await _ingest(request, events, body, who, signature)
    finally:
        hub.leave_ingest()
    return _receipt(events, appended)


async def post_camunda_batch(request: Request) -> Response:
    """``POST /api/ingestion/event/batch``: the Camunda Optimize event ingestion contract."""
    hub = hub_of(request)
    hub.enter_ingest()
    try:
        signature = _signature(request)
        who = _credentials(request, signature)
        essence = media.essence(header(request, b"content-type"))
        if essence not in (media.BATCH, "application/json"):
            raise errors.UnsupportedMediaType(
                f"Content-Type must be {media.BATCH} or application/json"
            )
        body = await read_body(request, hub.settings.max_body_bytes, hub.settings.body_timeout)
        events = parse.parse_batch(
            body, hub.settings.max_batch_events, hub.now_rfc3339(), parse.camunda_rules
        )
        await _ingest(request, events, body, who, signature)
    finally:
        hub.leave_ingest()
    return Response(status_code=204)


async def post_uipath(request: Request) -> Response:
    """``POST /api/ingestion/uipath/{source}``: UiPath Orchestrator webhooks, as UiPath sends them."""
    hub = hub_of(request)
    hub.enter_ingest()
    try:
        segments = raw_segments(request, "/api/ingestion/uipath/")
        if len(segments) != 1 or not segments[0]:
            raise errors.NotFound(
                "use /api/ingestion/uipath/{source} with a percent-encoded source"
            )
        signature = _signature(request, (b"x-uipath-signature", *_SIGNATURE_HEADERS))
        who = _credentials(request, signature)
        body = await read_body(request, hub.settings.max_body_bytes, hub.settings.body_timeout)
        events = [parse.parse_uipath(body, segments[0], hub.now_rfc3339())]
        appended = await _ingest(request, events, body, who, signature)
    finally:
        hub.leave_ingest()
    return _receipt(events, appended)
