"""The ASGI application: routes, the error handlers, and the hub's lifespan."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eventhub import errors as errors_module
from eventhub.api import (
    admin,
    backup,
    catalog,
    errors,
    events,
    handshake,
    ingest,
    processes,
    subscriptions,
    traces,
)
from eventhub.api import metrics as metrics_api
from eventhub.api._http import hub_of, json_response, principal
from eventhub.clock import Clock
from eventhub.hub import Hub
from eventhub.ops import logs
from eventhub.settings import Settings

KM = "/intelligence/api/knowledge-models"
SUBS = "/intelligence/api/subscriptions"


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready: the database takes a write and every background task runs (else 503). Anyone
    may ask; an admin key also gets the ids of crashed subscription supervisors."""
    hub = hub_of(request)
    try:
        who = principal(request)
    except errors_module.Unauthorized:
        who = None  # a probe with a stale key still learns whether the hub is ready
    await hub.check_ready(detailed=who is not None and who.role == "admin")
    return json_response({"status": "ready"})


class _App(Starlette):
    """Starlette, with ``POST /events`` answered before the middleware and the router: the
    single-event ingest path is where a request's fixed cost shows (bench/README.md). The
    route stays registered, so other methods on ``/events`` are answered as before (``OPTIONS``
    is the webhook handshake), and an unexpected error still goes through the same
    ServerErrorMiddleware. Every HTTP request gets its access line here (ops/logs.py), when
    the ``eventhub.access`` logger is on."""

    def __init__(self, post_events: ASGIApp, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._post_events = ServerErrorMiddleware(
            post_events, handler=errors.HANDLERS[Exception], debug=self.debug
        )

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


def build(settings: Settings, clock: Clock | None = None) -> Starlette:
    hub = Hub(settings, clock)
    intake = ingest.Ingest(hub)
    post_events = ingest.Endpoint(intake, ingest.post_events)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not hub.started:  # ``eventhub serve`` starts it first (server.py)
            await hub.start()
        try:
            yield
        finally:
            await hub.stop()

    routes = [
        Route("/events", post_events, methods=["POST"]),
        Route("/events", events.list_events, methods=["GET"]),
        # The CloudEvents webhook handshake on each ingest endpoint (api/handshake.py).
        Route("/events", handshake.options, methods=["OPTIONS"]),
        Route("/api/ingestion/event/batch", handshake.options, methods=["OPTIONS"]),
        Route("/api/ingestion/uipath/{rest:path}", handshake.options, methods=["OPTIONS"]),
        Route("/events/{rest:path}", events.get_event, methods=["GET"]),
        Route(
            "/api/ingestion/event/batch",
            ingest.Endpoint(intake, ingest.post_camunda_batch),
            methods=["POST"],
        ),
        Route(
            "/api/ingestion/uipath/{rest:path}",
            ingest.Endpoint(
                intake, ingest.post_uipath, ingest.named_by_path, ingest.UIPATH_SIGNATURE_HEADERS
            ),
            methods=["POST"],
        ),
        Route("/admin/keys", admin.create_key, methods=["POST"]),
        Route("/admin/keys", admin.list_keys, methods=["GET"]),
        Route("/admin/keys/{rest:path}", admin.revoke_key, methods=["DELETE"]),
        Route("/admin/sources", admin.list_sources, methods=["GET"]),
        Route("/admin/sources/{rest:path}", admin.put_source, methods=["PUT"]),
        Route("/admin/sources/{rest:path}", admin.delete_source, methods=["DELETE"]),
        Route("/admin/backup", backup.get_backup, methods=["GET"]),
        Route(f"{KM}", catalog.list_models, methods=["GET"]),
        Route(f"{KM}/{{km}}", catalog.get_model, methods=["GET"]),
        Route(f"{KM}/{{km}}", catalog.put_model, methods=["PUT"]),
        Route(f"{KM}/{{km}}", catalog.delete_model, methods=["DELETE"]),
        Route(f"{KM}/{{km}}/publish", catalog.publish, methods=["POST"]),
        Route(f"{KM}/{{km}}/triggers", catalog.list_triggers, methods=["GET"]),
        Route(f"{KM}/{{km}}/triggers/{{trigger}}", catalog.get_trigger, methods=["GET"]),
        Route(f"{KM}/{{km}}/triggers/{{trigger}}", catalog.put_trigger, methods=["PUT"]),
        Route(f"{KM}/{{km}}/triggers/{{trigger}}", catalog.delete_trigger, methods=["DELETE"]),
        Route(
            f"{KM}/{{km}}/triggers/{{trigger}}/subscriptions",
            subscriptions.create,
            methods=["POST"],
        ),
        Route(SUBS, subscriptions.list_all, methods=["GET"]),
        Route(f"{SUBS}/{{id}}", subscriptions.get, methods=["GET"]),
        Route(f"{SUBS}/{{id}}", subscriptions.update, methods=["PUT"]),
        Route(f"{SUBS}/{{id}}", subscriptions.delete, methods=["DELETE"]),
        Route(f"{SUBS}/{{id}}/pause", subscriptions.pause, methods=["PATCH"]),
        Route(f"{SUBS}/{{id}}/resume", subscriptions.resume, methods=["PATCH"]),
        Route(
            f"{SUBS}/{{id}}/resume-from-latest", subscriptions.resume_from_latest, methods=["PATCH"]
        ),
        Route(f"{SUBS}/{{id}}/replay", subscriptions.replay, methods=["PATCH"]),
        Route(f"{SUBS}/{{id}}/attempts", subscriptions.attempts, methods=["GET"]),
        Route(f"{SUBS}/{{id}}/rotate-secret", subscriptions.rotate_secret, methods=["POST"]),
        Route("/api/event-types", catalog.event_types, methods=["GET"]),
        Route("/api/traces", traces.list_traces, methods=["GET"]),
        Route("/api/traces/{rest:path}", traces.get_trace, methods=["GET"]),
        Route("/api/processes", processes.list_processes, methods=["GET"]),
        Route("/api/processes/{rest:path}", processes.get_process, methods=["GET"]),
        Route("/api/processes/{rest:path}", processes.put_process, methods=["PUT"]),
        Route("/api/processes/{rest:path}", processes.delete_process, methods=["DELETE"]),
        Route("/api/instances", processes.list_instances, methods=["GET"]),
        Route("/api/instances/{rest:path}", processes.get_instance, methods=["GET"]),
        Route("/api/instances/{rest:path}", processes.cancel_instance, methods=["POST"]),
        Route("/api/unrouted", processes.list_unrouted, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_api.get_metrics, methods=["GET"]),
    ]
    app = _App(post_events, routes=routes, exception_handlers=errors.HANDLERS, lifespan=lifespan)
    # No 307 from a path with a trailing slash to the one without: Starlette's redirect
    # repeats the query string, so the Location would carry an ``access_token`` (a key) to
    # wherever the Host header points. Every path is documented exactly (openapi.json).
    app.router.redirect_slashes = False
    app.state.hub = hub
    return app
