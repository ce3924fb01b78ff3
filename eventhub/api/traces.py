"""Traces (SPEC §6.1): ``GET /api/traces?after=&limit=`` and ``GET /api/traces/{traceid}``.

Who may read them is who may read the log (``GET /events``): admin and consumer keys.
Paging follows ``eventhub/traces.py``: most recently active first; ``after`` is the activity
``nextAfter`` gave (0 or absent: from the most recent), and ``nextAfter`` is null once the
page reached the last trace."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from eventhub import errors, traces
from eventhub.api._http import hub_of, int_param, raw_segments, require
from eventhub.api.operation import Content, Operation
from eventhub.codec import jsontext

MAX_PAGE = 1000
READERS = ("admin", "consumer")  # as GET /events


def _json(payload: object) -> Response:
    # jsontext: variables may hold integers beyond 64 bits, written digit for digit.
    return Response(jsontext.dumps(payload), 200, media_type="application/json")


async def list_traces(request: Request) -> Response:
    require(request, *READERS)
    after = int_param(request, "after", 0, 0, 2**63 - 1)
    limit = int_param(request, "limit", 100, 1, MAX_PAGE)
    # One more than asked: whether a next page exists, so the last page says so (null).
    found = await hub_of(request).store.list_traces(after, limit + 1)
    page = found[:limit]
    more = len(found) > limit
    return _json(
        {
            "traces": [t.to_json() for t in page],
            "nextAfter": page[-1].activity if more else None,
        }
    )


async def get_trace(request: Request) -> Response:
    segments = raw_segments(request, "/api/traces/")
    if len(segments) != 1 or not segments[0]:
        raise errors.NotFound("use /api/traces/{traceid}, one percent-encoded path segment")
    (trace_id,) = segments
    require(request, *READERS)
    members = await hub_of(request).store.get_trace(trace_id)
    if not members:
        raise errors.NotFound(f"no trace {trace_id!r}")
    return _json(
        {
            "traceId": trace_id,
            "events": [m.to_json() for m in members],
            "variables": traces.variables(members),
        }
    )


_ANY = Content("application/json")
OPERATIONS = (
    Operation(
        "GET",
        "/api/traces",
        list_traces,
        "Traces, most recently active first",
        READERS,
        {200: _ANY},
    ),
    Operation(
        "GET",
        "/api/traces/{traceId}",
        get_trace,
        "A trace",
        READERS,
        {200: _ANY},
        route="/api/traces/{rest:path}",
    ),
)
