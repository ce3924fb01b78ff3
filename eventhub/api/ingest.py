"""Ingest endpoints (SPEC §1): CloudEvents in every HTTP mode, Camunda Optimize batches and
UiPath Orchestrator webhooks. Each validates the whole request, checks the caller's right to
every source it names, then appends all of it or none of it.

They are raw ASGI applications (``api/_asgi.py`` says why); ``Endpoint`` holds what they
share: the admission counter, the one place their errors go (``api/errors.respond``), and
the answer.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import parse_qsl

import orjson
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from eventhub import auth, errors
from eventhub.api import _asgi
from eventhub.api import errors as api_errors
from eventhub.api._deadlines import Deadlines
from eventhub.api._http import segments_of
from eventhub.codec import media, parse
from eventhub.events import Appended, NewEvent
from eventhub.hub import Hub
from eventhub.ops import logs

_SIGNATURE_HEADERS = (b"x-eventhub-hmac", b"x-emporix-hmac")
UIPATH_SIGNATURE_HEADERS = (b"x-uipath-signature", *_SIGNATURE_HEADERS)
# Without an API key, a request names the source whose secret signed it, in a header, so that
# the hub knows before reading the body whether to read it at all (SPEC §8). Binary mode may
# name it with ce-source alone; UiPath names it in its path.
SOURCE_HEADER = b"x-eventhub-source"
_UIPATH_PREFIX = "/api/ingestion/uipath/"

# The body of a 200 answer, or None for 204.
Handler = Callable[["Ingest", _asgi.Incoming, auth.Caller], Awaitable[bytes | None]]
# The source a request names, from its headers or path, or None.
Naming = Callable[[_asgi.Incoming], str | None]
# Writes a success answer: 200 with this JSON body, or 204 for None (api/_direct.py).
Answer = Callable[[bytes | None], Awaitable[None]]


class Ingest:
    """What the ingest endpoints share: the hub, and one body deadline timer for all of them."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.deadlines = Deadlines(hub.settings.body_timeout)

    def caller(
        self, incoming: _asgi.Incoming, naming: Naming, signature_headers: Sequence[bytes]
    ) -> auth.Caller:
        """Who asks, from the headers alone; 401 at once for a wrong key, or for no key and no
        signed registered source."""
        hub = self.hub
        signature = _signature(incoming, signature_headers)
        authorization = incoming.header(b"authorization")
        token = access_token(incoming.scope)
        if token is not None:
            if authorization is not None:
                raise errors.InvalidRequest(
                    "send the API key once: in the Authorization header or as access_token,"
                    " not both"
                )
            authorization = f"Bearer {token}"
        named = naming(incoming) if authorization is None else None
        caller = auth.admit(hub.keyring, hub.sources, authorization, named, signature)
        # Who asked, for the access line (ops/logs.py): a key id or a source name.
        if caller.principal is not None:
            incoming.scope[logs.KEY_ID] = caller.principal.key_id
        elif caller.source is not None:
            incoming.scope[logs.SOURCE] = caller.source.name
        return caller

    async def body(self, incoming: _asgi.Incoming, caller: auth.Caller) -> bytes:
        """The body, bounded in size and time; without a key, its signature is checked here,
        before anything parses it."""
        body = await incoming.body(self.body_limit(caller), self.deadlines)
        auth.verify_body(caller, body)
        return body

    def body_limit(self, caller: auth.Caller) -> int:
        """``max_body_bytes`` with a key; without one, the named source's own limit or
        ``max_unauthenticated_body_bytes``: what keyless load may hold in memory is bounded
        by that times ``max_unauthenticated_ingests`` before anyone is authenticated."""
        settings = self.hub.settings
        if caller.principal is not None or caller.source is None:
            return settings.max_body_bytes
        own = caller.source.max_body_bytes
        limit = settings.max_unauthenticated_body_bytes if own is None else own
        return min(limit, settings.max_body_bytes)

    async def append(
        self, events: list[NewEvent], body: bytes, caller: auth.Caller
    ) -> list[Appended]:
        hub = self.hub
        auth.authorize_publish(caller, ((e.source, e.type) for e in events), hub.sources, body)
        return await hub.store.append(events)


class Endpoint:
    """One raw ASGI ingest endpoint: who asks (from the headers), admission (429 past
    ``max_concurrent_ingests``, or ``max_unauthenticated_ingests`` without a key), the handler,
    then its answer or its error. A class, not a function, so that Starlette's ``Route``
    treats it as an ASGI application."""

    def __init__(
        self,
        ingest: Ingest,
        handler: Handler,
        naming: Naming | None = None,
        signature_headers: Sequence[bytes] = _SIGNATURE_HEADERS,
    ) -> None:
        self._ingest = ingest
        self._handler = handler
        self._naming = naming or named_by_header
        self._signature_headers = signature_headers
        # The path label of /metrics: the route, never the request's path (UiPath's names a
        # source, and a label value per source would be a series per source).
        self._path = _PATHS.get(handler, "other")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.handle(scope, receive, send)

    async def handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        answer: Answer | None = None,
        ready: Callable[[], bytes | None] | None = None,
    ) -> None:
        """Serve one request. The HTTP layer's own path (api/_direct.py) passes ``answer``,
        which writes a success answer without ASGI messages, and ``ready``, the body when it
        has arrived whole; errors are always sent through ``send``."""
        started = time.perf_counter()
        ingest = self._ingest
        hub = ingest.hub
        incoming = _asgi.Incoming(scope, receive, ready)
        # Until an answer is sent: a request cancelled (shutdown) or whose answer could not
        # be written ends without one.
        outcome = "aborted"
        try:
            try:
                _asgi.check_content_type(incoming)
                caller = ingest.caller(incoming, self._naming, self._signature_headers)
                keyed = caller.principal is not None
                hub.enter_ingest(keyed)
                try:
                    reply = await self._handler(ingest, incoming, caller)
                finally:
                    hub.leave_ingest(keyed)
            except Exception as exc:
                outcome = _outcome(exc)
                await api_errors.respond(scope, receive, send, exc)
                return
            if answer is not None:
                await answer(reply)
            elif reply is None:
                await _asgi.send_empty(send)
            else:
                await _asgi.send_json(send, reply)
            outcome = "ok"
        finally:
            hub.metrics.ingested(
                self._path, incoming.mode, outcome, incoming.events, time.perf_counter() - started
            )


def _outcome(exc: Exception) -> str:
    """The outcome label of a refused ingest request: its error code (a bounded set)."""
    if isinstance(exc, errors.EventHubError):
        return exc.code
    if isinstance(exc, ClientDisconnect):
        return "client_gone"
    return "internal"


def named_by_header(incoming: _asgi.Incoming) -> str | None:
    """``X-Eventhub-Source``, else binary mode's ``ce-source``, percent-decoded as
    ``parse_binary`` decodes it."""
    raw = incoming.header(SOURCE_HEADER) or incoming.header(b"ce-source")
    if raw is None:
        return None
    try:
        return parse.decode_header_value(raw)
    except UnicodeDecodeError:
        return None


def named_by_path(incoming: _asgi.Incoming) -> str | None:
    """UiPath's ``/api/ingestion/uipath/{source}``."""
    try:
        segments = segments_of(incoming.scope, _UIPATH_PREFIX)
    except errors.NotFound:
        return None
    return segments[0] if len(segments) == 1 and segments[0] else None


def access_token(scope: Scope) -> str | None:
    """The API key sent as the ``access_token`` query parameter, the CloudEvents webhook
    spec's alternative to ``Authorization: Bearer`` (http-webhook.md §3, RFC 6750 §2.3), or
    None. It is bounded as the header is: the request line counts toward ``max_header_bytes``
    (api/_protocol.py). Never logged: the access line leaves the query string out."""
    query: bytes = scope.get("query_string", b"")
    if b"access_token" not in query:  # the common case, without parsing
        return None
    values = [
        value
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True)
        if name == "access_token"
    ]
    if not values:
        return None
    if len(values) > 1:
        raise errors.InvalidRequest("send access_token once")
    if not values[0].strip():
        raise errors.Unauthorized("access_token is empty: send an API key")
    return values[0].strip()


def _signature(incoming: _asgi.Incoming, names: Sequence[bytes]) -> str | None:
    for name in names:
        value = incoming.header(name)
        if value is not None:
            return value
    return None


def _receipt(events: list[NewEvent], appended: list[Appended]) -> bytes:
    """What was stored; an event that names a process instance (``cxpinstanceid``) also
    says what it did there: ``correlation`` is woke, buffered or unrouted (SPEC §6.2)."""
    if len(events) == 1 and appended[0].correlation is None:
        return _one_receipt(events[0], appended[0])
    entries = []
    for e, a in zip(events, appended, strict=True):
        entry = {
            "source": e.source,
            "id": e.id,
            "offset": a.offset,
            "revision": a.revision,
            "duplicate": a.duplicate,
        }
        if a.correlation is not None:
            entry["correlation"] = a.correlation
        entries.append(entry)
    return orjson.dumps({"accepted": len(events), "events": entries})


def _one_receipt(event: NewEvent, appended: Appended) -> bytes:
    """``_receipt`` of one event without a correlation, the same bytes, written without
    building the dicts for the JSON encoder (2.6 µs against 1.1 µs; only the two strings
    need escaping)."""
    return (
        b'{"accepted":1,"events":[{"source":%b,"id":%b,"offset":%d,"revision":%d,"duplicate":%b}]}'
        % (
            orjson.dumps(event.source),
            orjson.dumps(event.id),
            appended.offset,
            appended.revision,
            b"true" if appended.duplicate else b"false",
        )
    )


async def post_events(ingest: Ingest, incoming: _asgi.Incoming, caller: auth.Caller) -> bytes:
    """``POST /events``: binary, structured or batch mode, told apart by Content-Type."""
    content_type = incoming.header(b"content-type")
    essence = media.essence(content_type)
    mode = incoming.mode = _mode(essence, incoming.scope["headers"])
    body = await ingest.body(incoming, caller)
    if mode == "structured":
        events = [parse.parse_structured(body)]
    elif mode == "batch":
        events = parse.parse_batch(body, ingest.hub.settings.max_batch_events)
    elif mode == "binary":
        events = [parse.parse_binary(incoming.scope["headers"], content_type, body)]
    elif essence.startswith("application/cloudevents"):
        raise errors.UnsupportedMediaType(
            f"event format {essence!r} is not supported; use JSON ({media.STRUCTURED})"
        )
    else:
        raise errors.UnsupportedMediaType(
            "not a CloudEvent: send ce-* headers (binary mode) or Content-Type "
            f"{media.STRUCTURED} or {media.BATCH}"
        )
    incoming.events = len(events)
    return _receipt(events, await ingest.append(events, body, caller))


def _mode(essence: str, headers: Sequence[tuple[bytes, bytes]]) -> str:
    """The CloudEvents HTTP content mode of ``POST /events``, from its headers alone."""
    if essence == media.STRUCTURED:
        return "structured"
    if essence == media.BATCH:
        return "batch"
    if not essence.startswith("application/cloudevents") and parse.is_binary_mode(headers):
        return "binary"
    return "unknown"


async def post_camunda_batch(ingest: Ingest, incoming: _asgi.Incoming, caller: auth.Caller) -> None:
    """``POST /api/ingestion/event/batch``: the Camunda Optimize event ingestion contract."""
    incoming.mode = "batch"
    essence = media.essence(incoming.header(b"content-type"))
    if essence not in (media.BATCH, "application/json"):
        raise errors.UnsupportedMediaType(f"Content-Type must be {media.BATCH} or application/json")
    body = await ingest.body(incoming, caller)
    hub = ingest.hub
    events = parse.parse_batch(
        body, hub.settings.max_batch_events, hub.now_rfc3339(), parse.camunda_rules
    )
    incoming.events = len(events)
    await ingest.append(events, body, caller)


async def post_uipath(ingest: Ingest, incoming: _asgi.Incoming, caller: auth.Caller) -> bytes:
    """``POST /api/ingestion/uipath/{source}``: UiPath Orchestrator webhooks, as UiPath sends them."""
    incoming.mode = "webhook"
    segments = segments_of(incoming.scope, _UIPATH_PREFIX)
    if len(segments) != 1 or not segments[0]:
        raise errors.NotFound("use /api/ingestion/uipath/{source} with a percent-encoded source")
    body = await ingest.body(incoming, caller)
    events = [parse.parse_uipath(body, segments[0], ingest.hub.now_rfc3339())]
    incoming.events = 1
    return _receipt(events, await ingest.append(events, body, caller))


# The path label of each endpoint's metrics (``Endpoint._path``).
_PATHS: dict[Handler, str] = {
    post_events: "/events",
    post_camunda_batch: "/api/ingestion/event/batch",
    post_uipath: "/api/ingestion/uipath/{source}",
}
