"""Ingest endpoints (SPEC §1): CloudEvents in every HTTP mode, Camunda Optimize batches and
UiPath Orchestrator webhooks. Each validates the whole request, checks the caller's right to
every source it names, then appends all of it or none of it.

They are raw ASGI applications (``api/_asgi.py`` says why); ``Endpoint`` holds what they
share: the admission counter, the one place their errors go (``api/errors.respond``), and
the answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import parse_qsl

import orjson
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope, Send

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

    def arrived(self, incoming: _asgi.Incoming, caller: auth.Caller, body: bytes) -> bytes:
        """``body`` for a body the server already holds whole: the same checks as ``body``
        (its declared size, 411 for an unsized one, its signature), no read."""
        _asgi.check_length(incoming.header(b"content-length"), self.body_limit(caller))
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

    def append_soon(
        self, append_soon: AppendSoon, events: list[NewEvent], body: bytes, caller: auth.Caller
    ) -> asyncio.Future[list[Appended]]:
        """``append`` without a coroutine, for a store that queues (``append_soon``): the
        future resolves once the group commit that holds ``events`` is durable."""
        hub = self.hub
        auth.authorize_publish(caller, ((e.source, e.type) for e in events), hub.sources, body)
        return append_soon(events)


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
                caller, keyed = self._admit(incoming)
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

    def _admit(self, incoming: _asgi.Incoming) -> tuple[auth.Caller, bool]:
        """Who asks (from the head alone), and an ingest slot taken for them: keyed, or from
        the keyless pool (the bool). ``hub.leave_ingest(keyed)`` gives it back."""
        _asgi.check_content_type(incoming)
        caller = self._ingest.caller(incoming, self._naming, self._signature_headers)
        keyed = caller.principal is not None
        self._ingest.hub.enter_ingest(keyed)
        return caller, keyed

    # -- served from the protocol's callbacks (api/_direct.py) ---------------------------------

    @property
    def immediate(self) -> bool:
        """Whether ``begin`` can serve a request: ``POST /events`` on a store that queues
        its appends without a coroutine (the SQLite store's ``append_soon``)."""
        return self._handler is post_events and _append_soon(self._ingest.hub) is not None

    def begin(self, scope: Scope, body: bytes) -> Pending:
        """``handle`` up to the commit, without a coroutine, for a request whose whole body
        arrived with its head: who asks, admission, the body's checks, the parse, the right
        to publish, then its events queued for the next group commit. The slot taken is
        held until ``end``. An error is returned in ``Pending.error`` (the slot released),
        for ``refuse`` to answer as ``handle`` does."""
        incoming = _asgi.Incoming(scope, _no_receive)
        pending = Pending(incoming)
        ingest = self._ingest
        hub = ingest.hub
        try:
            caller, keyed = self._admit(incoming)
            try:
                content_type, essence = _events_mode(incoming)
                body = ingest.arrived(incoming, caller, body)
                events = _events_of(ingest, incoming, content_type, essence, body)
                append_soon = _append_soon(hub)
                assert append_soon is not None, "begin without immediate"
                pending.future = ingest.append_soon(append_soon, events, body, caller)
            except BaseException:
                hub.leave_ingest(keyed)
                raise
        except Exception as exc:
            pending.error = exc
            return pending
        pending.keyed = keyed
        pending.events = events
        return pending

    def end(self, pending: Pending) -> bytes:
        """Once ``pending.future`` is done: the slot released, then the receipt, or the
        commit's error raised."""
        self._ingest.hub.leave_ingest(pending.keyed)
        assert pending.future is not None
        return _receipt(pending.events, pending.future.result())

    async def refuse(self, pending: Pending, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer ``pending.error`` as ``handle`` answers an error (and count it)."""
        assert pending.error is not None
        outcome = _outcome(pending.error)
        try:
            await api_errors.respond(scope, receive, send, pending.error)
        finally:
            self.record(pending, outcome)

    def record(self, pending: Pending, outcome: str) -> None:
        """The request's metrics, as ``handle`` counts them."""
        incoming = pending.incoming
        self._ingest.hub.metrics.ingested(
            self._path,
            incoming.mode,
            outcome,
            incoming.events,
            time.perf_counter() - pending.started,
        )


class Pending:
    """One request begun by ``Endpoint.begin``: its commit's future, or its error."""

    __slots__ = ("error", "events", "future", "incoming", "keyed", "started")

    def __init__(self, incoming: _asgi.Incoming) -> None:
        self.started = time.perf_counter()
        self.incoming = incoming
        self.future: asyncio.Future[list[Appended]] | None = None
        self.error: Exception | None = None
        self.events: list[NewEvent] = []
        self.keyed = True


# The SQLite store's ``append_soon``: queue events for the next group commit, return its future.
AppendSoon = Callable[[list[NewEvent]], "asyncio.Future[list[Appended]]"]


def _append_soon(hub: Hub) -> AppendSoon | None:
    soon: AppendSoon | None = getattr(hub.store, "append_soon", None)
    return soon


async def _no_receive() -> Message:
    raise AssertionError("a request begun whole reads no body")


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
    content_type, essence = _events_mode(incoming)
    body = await ingest.body(incoming, caller)
    events = _events_of(ingest, incoming, content_type, essence, body)
    return _receipt(events, await ingest.append(events, body, caller))


def _events_mode(incoming: _asgi.Incoming) -> tuple[str | None, str]:
    """``POST /events``'s Content-Type and its essence; its mode set on ``incoming``."""
    content_type = incoming.header(b"content-type")
    essence = media.essence(content_type)
    incoming.mode = _mode(essence, incoming.scope["headers"])
    return content_type, essence


def _events_of(
    ingest: Ingest,
    incoming: _asgi.Incoming,
    content_type: str | None,
    essence: str,
    body: bytes,
) -> list[NewEvent]:
    """The events of a ``POST /events`` body, by the mode ``_events_mode`` found."""
    mode = incoming.mode
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
    return events


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
