"""Reading the log: ``GET /events?after=&limit=`` and ``GET /events/{source}/{id}``.

Below the retained range (retention deleted it) a page is 410 ``below_retained_range`` with
the first retained offset; an event retention deleted is 404, as one never sent (its identity
went with it: log/retention.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from eventhub import errors
from eventhub.api._http import hub_of, int_param, json_response, raw_segments, require

MAX_PAGE = 1000
# The longest a long poll may hold its connection: past it, the client asks again.
MAX_WAIT_SECONDS = 30


async def list_events(request: Request) -> Response:
    """A page of the log after ``after``; with ``wait=S`` (1-30), an empty page is answered
    only after ``S`` seconds without a new event (a long poll: ``eventhub tail --follow``)."""
    require(request, "admin", "consumer")
    after = int_param(request, "after", 0, 0, 2**63 - 1)
    limit = int_param(request, "limit", 100, 1, MAX_PAGE)
    wait = int_param(request, "wait", 0, 0, MAX_WAIT_SECONDS)
    hub = hub_of(request)
    store = hub.store
    events = await store.read_after(after, limit)
    if not events or events[0].offset != after + 1:
        # A gap after ``after``: retention deleted it if it lies below the first offset the
        # log holds (one index probe, and only off the common path of a full page).
        first = await store.first_offset()
        if after < first - 1:
            raise errors.BelowRetention(after, first)
    if not events and wait:
        if not await _waited(request, hub.head.after(after, wait)):
            return Response(status_code=499)  # no one to answer: the client went away
        events = await store.read_after(after, limit)
    return json_response(
        {
            "events": [e.to_entry() for e in events],
            "nextAfter": events[-1].offset if events else after,
            # The log's last offset: where a reader that wants only what is new starts.
            "head": hub.head.head,
        }
    )


async def _waited(request: Request, waiting: Coroutine[Any, Any, None]) -> bool:
    """Await ``waiting`` unless the client goes away first (False). A vanished client's
    connection stops counting toward ``max_connections`` at once: its wait must end with it,
    or connect-ask-drop would pile up waiters and reads that no connection limit bounds."""
    wait = asyncio.ensure_future(waiting)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((wait, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (wait, gone):
            task.cancel()
    return wait.done() and not wait.cancelled()


async def _disconnected(request: Request) -> None:
    """Return when the client disconnects (a GET's empty body is read on the way)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def get_event(request: Request) -> Response:
    segments = raw_segments(request, "/events/")
    if len(segments) != 2 or not all(segments):
        raise errors.NotFound("use /events/{source}/{id}, each one percent-encoded path segment")
    source, id_ = segments
    who = require(request, "admin", "consumer", "producer")
    if who.role == "producer" and not who.may_publish(source):
        raise errors.Forbidden(f"this key may not read source {source!r}")
    event = await hub_of(request).store.get_latest(source, id_)
    if event is None:
        raise errors.NotFound(f"no event {id_!r} from source {source!r}")
    return json_response(event.to_entry())
