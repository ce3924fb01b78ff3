"""The ASGI application: routes, the error handlers, and the hub's lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from eventhub.api import admin, errors, events, ingest
from eventhub.api._http import hub_of, json_response
from eventhub.clock import Clock
from eventhub.hub import Hub
from eventhub.settings import Settings


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    await hub_of(request).store.head()
    return json_response({"status": "ready"})


def build(settings: Settings, clock: Clock | None = None) -> Starlette:
    hub = Hub(settings, clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()

    routes = [
        Route("/events", ingest.post_events, methods=["POST"]),
        Route("/events", events.list_events, methods=["GET"]),
        Route("/events/{rest:path}", events.get_event, methods=["GET"]),
        Route("/api/ingestion/event/batch", ingest.post_camunda_batch, methods=["POST"]),
        Route("/api/ingestion/uipath/{rest:path}", ingest.post_uipath, methods=["POST"]),
        Route("/admin/keys", admin.create_key, methods=["POST"]),
        Route("/admin/keys", admin.list_keys, methods=["GET"]),
        Route("/admin/keys/{rest:path}", admin.revoke_key, methods=["DELETE"]),
        Route("/admin/sources", admin.list_sources, methods=["GET"]),
        Route("/admin/sources/{rest:path}", admin.put_source, methods=["PUT"]),
        Route("/admin/sources/{rest:path}", admin.delete_source, methods=["DELETE"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers=errors.HANDLERS, lifespan=lifespan)
    app.state.hub = hub
    return app
