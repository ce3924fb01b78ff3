"""The ASGI application: routes, the error handlers, and the hub's lifespan."""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

from starlette.applications import Starlette
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, request_response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eventhub.api import (
    _direct,
    admin,
    backup,
    catalog,
    console,
    errors,
    events,
    health,
    ingest,
    ingest_operations,
    me,
    openapi,
    overview,
    processes,
    subscriptions,
    traces,
)
from eventhub.api import metrics as metrics_api
from eventhub.api.operation import Endpoint, Operation
from eventhub.clock import Clock
from eventhub.hub import Hub
from eventhub.ops import logs
from eventhub.settings import Settings


class _App(Starlette):
    """Starlette, with ``POST /events`` answered before the middleware and the router: the
    single-event ingest path is where a request's fixed cost shows (bench/README.md). The
    route stays registered, so other methods on ``/events`` are answered as before (``OPTIONS``
    is the webhook handshake), and an unexpected error still goes through the same
    ServerErrorMiddleware. Every HTTP request gets its access line here (ops/logs.py), when
    the ``eventhub.access`` logger is on."""

    def __init__(self, post_events: ingest.Endpoint, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._post_events = ServerErrorMiddleware(
            post_events, handler=errors.HANDLERS[Exception], debug=self.debug
        )
        # Served by the HTTP protocol itself under eventhub's server (api/_direct.py); it
        # mirrors the non-debug ServerErrorMiddleware, so debug mode keeps the ASGI way.
        self.direct_ingest = None if self.debug else _direct.Direct(post_events, self)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
        elif logs.ACCESS.isEnabledFor(logging.INFO):
            await self._logged(scope, receive, send)
        else:
            await self._dispatch(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/events" and scope["method"] == "POST" and not scope.get("root_path"):
            scope["app"] = self
            await self._post_events(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def _logged(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``_dispatch`` with its access line (ops/logs.py): the status as sent, the time until
        the app returned. Handlers note the caller's key id in the scope."""
        started = time.perf_counter()
        status: int | None = None

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._dispatch(scope, receive, sending)
        finally:
            logs.access(scope, status, time.perf_counter() - started)


def operations(intake: ingest.Ingest, post_events: ingest.Endpoint) -> tuple[Operation, ...]:
    """Every operation of the API, as served and as documented."""
    return (
        *ingest_operations.operations(intake, post_events),
        *events.OPERATIONS,
        *admin.OPERATIONS,
        *backup.OPERATIONS,
        *catalog.OPERATIONS,
        *subscriptions.OPERATIONS,
        *traces.OPERATIONS,
        *processes.OPERATIONS,
        *health.OPERATIONS,
        *metrics_api.OPERATIONS,
        *me.OPERATIONS,
        *overview.OPERATIONS,
        *console.OPERATIONS,  # the console (issue 11)
    )


def _documented(served: tuple[Operation, ...]) -> tuple[Operation, ...]:
    """``served`` and the operations that describe them: the document and its page, which
    the document lists too (api/openapi.py)."""
    return (*served, *openapi.Docs(served).operations)


class _ByMethod:
    """The endpoints of one path, by method: one Route per path, so that a 405 names every
    method the path takes in its ``Allow`` (a Route per method would name only its own)."""

    def __init__(self, endpoints: dict[str, ASGIApp]) -> None:
        self._endpoints = endpoints
        if "GET" in endpoints:
            self._endpoints.setdefault("HEAD", endpoints["GET"])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The Route let only its methods through: each has an endpoint.
        await self._endpoints[scope["method"]](scope, receive, send)


Handler = Callable[[Request], Awaitable[Response]]


def _asgi(endpoint: Endpoint) -> ASGIApp:
    """A request handler wrapped as Starlette's Route would wrap it; an ASGI app as it is."""
    if inspect.isfunction(endpoint) or inspect.ismethod(endpoint):
        return request_response(cast(Handler, endpoint))
    return cast(ASGIApp, endpoint)


def _routes(ops: tuple[Operation, ...]) -> list[Route]:
    """One route per served path, in the order the operations come. Operations that share a
    raw-path route (``GET /api/instances/{id}`` and ``POST .../{id}/cancel``) differ in
    method, so each method of a route has one endpoint."""
    by_path: dict[str, dict[str, ASGIApp]] = {}
    for op in ops:
        by_path.setdefault(op.route_path, {}).setdefault(op.method, _asgi(op.endpoint))
    return [
        Route(path, _ByMethod(endpoints), methods=list(endpoints))
        for path, endpoints in by_path.items()
    ]


def build(settings: Settings, clock: Clock | None = None) -> Starlette:
    hub = Hub(settings, clock)
    intake = ingest.Ingest(hub)
    post_events = ingest.Endpoint(intake, ingest.post_events)
    served = operations(intake, post_events)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not hub.started:  # ``eventhub serve`` starts it first (server.py)
            await hub.start()
        try:
            yield
        finally:
            await hub.stop()

    # The documented operations are exactly the served ones; a document that tried to hold
    # a path twice would mean two operations claim one method on it.
    everything = _documented(served)
    seen = [(op.path, op.method) for op in everything]
    assert len(seen) == len(set(seen)), "two operations share a path and method"
    routes = _routes(everything)
    app = _App(post_events, routes=routes, exception_handlers=errors.HANDLERS, lifespan=lifespan)
    # No 307 from a path with a trailing slash to the one without: Starlette's redirect
    # repeats the query string, so the Location would carry an ``access_token`` (a key) to
    # wherever the Host header points. Every path is documented exactly (openapi.json).
    app.router.redirect_slashes = False
    app.state.hub = hub
    return app
