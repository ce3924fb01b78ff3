"""Ingest endpoints (SPEC §1): CloudEvents in every HTTP mode, Camunda Optimize batches and
UiPath Orchestrator webhooks. Each validates the whole request, checks the caller's right to
every source it names, then appends all of it or none of it.

They are raw ASGI applications (``api/_asgi.py`` says why); ``Endpoint`` holds what they
share: the admission counter, the one place their errors go (``api/errors.respond``), and
the answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import orjson
from starlette.types import Receive, Scope, Send

from eventhub import auth, errors
from eventhub.api import _asgi
from eventhub.api import errors as api_errors
from eventhub.api._deadlines import Deadlines
from eventhub.api._http import segments_of
from eventhub.codec import media, parse
from eventhub.events import Appended, NewEvent
from eventhub.hub import Hub

_SIGNATURE_HEADERS = (b"x-eventhub-hmac", b"x-emporix-hmac")

# The body of a 200 answer, or None for 204.
Handler = Callable[["Ingest", _asgi.Incoming], Awaitable[bytes | None]]


class Ingest:
    """What the ingest endpoints share: the hub, and one body deadline timer for all of them."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.deadlines = Deadlines(hub.settings.body_timeout)

    async def body(self, incoming: _asgi.Incoming) -> bytes:
        return await incoming.body(self.hub.settings.max_body_bytes, self.deadlines)

    def credentials(self, incoming: _asgi.Incoming, signature: str | None) -> auth.Principal | None:
        who = auth.identify(self.hub.keyring, incoming.header(b"authorization"))
        if who is None and signature is None:
            raise errors.Unauthorized("send an API key (Authorization: Bearer) or a signature")
        return who

    async def append(
        self,
        events: list[NewEvent],
        body: bytes,
        who: auth.Principal | None,
        signature: str | None,
    ) -> list[Appended]:
        hub = self.hub
        auth.authorize_publish(who, (e.source for e in events), hub.sources, body, signature)
        return await hub.store.append(events)


class Endpoint:
    """One raw ASGI ingest endpoint: admission (429 past ``max_concurrent_ingests``), the
    handler, then its answer or its error. A class, not a function, so that Starlette's
    ``Route`` treats it as an ASGI application."""

    def __init__(self, ingest: Ingest, handler: Handler) -> None:
        self._ingest = ingest
        self._handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub = self._ingest.hub
        try:
            hub.enter_ingest()
            try:
                answer = await self._handler(self._ingest, _asgi.Incoming(scope, receive))
            finally:
                hub.leave_ingest()
        except Exception as exc:
            await api_errors.respond(scope, receive, send, exc)
            return
        if answer is None:
            await _asgi.send_empty(send)
        else:
            await _asgi.send_json(send, answer)


def _signature(incoming: _asgi.Incoming, names: Sequence[bytes] = _SIGNATURE_HEADERS) -> str | None:
    for name in names:
        value = incoming.header(name)
        if value is not None:
            return value
    return None


def _receipt(events: list[NewEvent], appended: list[Appended]) -> bytes:
    return orjson.dumps(
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


async def post_events(ingest: Ingest, incoming: _asgi.Incoming) -> bytes:
    """``POST /events``: binary, structured or batch mode, told apart by Content-Type."""
    signature = _signature(incoming)
    who = ingest.credentials(incoming, signature)
    body = await ingest.body(incoming)
    content_type = incoming.header(b"content-type")
    essence = media.essence(content_type)
    if essence == media.STRUCTURED:
        events = [parse.parse_structured(body)]
    elif essence == media.BATCH:
        events = parse.parse_batch(body, ingest.hub.settings.max_batch_events)
    elif essence.startswith("application/cloudevents"):
        raise errors.UnsupportedMediaType(
            f"event format {essence!r} is not supported; use JSON ({media.STRUCTURED})"
        )
    elif parse.is_binary_mode(incoming.scope["headers"]):
        events = [parse.parse_binary(incoming.scope["headers"], content_type, body)]
    else:
        raise errors.UnsupportedMediaType(
            "not a CloudEvent: send ce-* headers (binary mode) or Content-Type "
            f"{media.STRUCTURED} or {media.BATCH}"
        )
    return _receipt(events, await ingest.append(events, body, who, signature))


async def post_camunda_batch(ingest: Ingest, incoming: _asgi.Incoming) -> None:
    """``POST /api/ingestion/event/batch``: the Camunda Optimize event ingestion contract."""
    signature = _signature(incoming)
    who = ingest.credentials(incoming, signature)
    essence = media.essence(incoming.header(b"content-type"))
    if essence not in (media.BATCH, "application/json"):
        raise errors.UnsupportedMediaType(f"Content-Type must be {media.BATCH} or application/json")
    body = await ingest.body(incoming)
    hub = ingest.hub
    events = parse.parse_batch(
        body, hub.settings.max_batch_events, hub.now_rfc3339(), parse.camunda_rules
    )
    await ingest.append(events, body, who, signature)


async def post_uipath(ingest: Ingest, incoming: _asgi.Incoming) -> bytes:
    """``POST /api/ingestion/uipath/{source}``: UiPath Orchestrator webhooks, as UiPath sends them."""
    segments = segments_of(incoming.scope, "/api/ingestion/uipath/")
    if len(segments) != 1 or not segments[0]:
        raise errors.NotFound("use /api/ingestion/uipath/{source} with a percent-encoded source")
    signature = _signature(incoming, (b"x-uipath-signature", *_SIGNATURE_HEADERS))
    who = ingest.credentials(incoming, signature)
    body = await ingest.body(incoming)
    events = [parse.parse_uipath(body, segments[0], ingest.hub.now_rfc3339())]
    return _receipt(events, await ingest.append(events, body, who, signature))
