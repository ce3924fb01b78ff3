"""Traces (SPEC §6.1): ``GET /api/traces?after=&limit=`` and ``GET /api/traces/{traceid}``.

Who may read them is who may read the log (``GET /events``): admin and consumer keys.
Paging follows ``eventhub/traces.py``: most recently active first; ``after`` is the activity
``nextAfter`` gave (0 or absent: from the most recent), and ``nextAfter`` is null once the
page reached the last trace. Variables are free JSON: msgspec writes integers beyond 64 bits
exactly."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from eventhub import errors, traces
from eventhub.api._http import hub_of, raw_segments, require
from eventhub.api.operation import READERS, IntQuery, Operation, respond

MAX_PAGE = 1000


class TraceSummary(msgspec.Struct, rename="camel"):
    """A trace in the list: how many events it has, and the earliest and latest of their
    times (each event's ``time``, else when the hub received it)."""

    trace_id: str
    events: int
    first_time: str
    last_time: str


class TracePage(msgspec.Struct, rename="camel"):
    """Traces, most recently active first; ``nextAfter`` (null on the last page) continues
    the list."""

    traces: list[TraceSummary]
    next_after: int | None


class TraceEvent(msgspec.Struct):
    """The current revision of one event of a trace."""

    offset: int
    source: str
    id: str
    type: str
    time: str
    group: str | None
    revision: int


class Trace(msgspec.Struct, rename="camel"):
    """The events that carry one ``traceid``, in time order (then by offset), and the
    variables their JSON object data give: flat members, later events overriding earlier."""

    trace_id: str
    events: list[TraceEvent]
    variables: dict[str, Any]


_AFTER = IntQuery.of(
    "after", "Continue below this activity (the nextAfter of the page before)", 0, 0, 2**63 - 1
)
_LIMIT = IntQuery.of("limit", "The most traces to return", 100, 1, MAX_PAGE)


def _summary(t: traces.TraceSummary) -> TraceSummary:
    return TraceSummary(t.trace_id, t.events, t.first_time, t.last_time)


def _event(m: traces.TraceMember) -> TraceEvent:
    return TraceEvent(m.offset, m.source, m.id, m.type, m.time, m.group, m.revision)


async def list_traces(request: Request) -> Response:
    require(request, *READERS)
    after, limit = _AFTER.read(request), _LIMIT.read(request)
    # One more than asked: whether a next page exists, so the last page says so (null).
    found = await hub_of(request).store.list_traces(after, limit + 1)
    page = found[:limit]
    more = len(found) > limit
    return respond(TracePage([_summary(t) for t in page], page[-1].activity if more else None))


async def get_trace(request: Request) -> Response:
    segments = raw_segments(request, "/api/traces/")
    if len(segments) != 1 or not segments[0]:
        raise errors.NotFound("use /api/traces/{traceid}, one percent-encoded path segment")
    (trace_id,) = segments
    require(request, *READERS)
    members = await hub_of(request).store.get_trace(trace_id)
    if not members:
        raise errors.NotFound(f"no trace {trace_id!r}")
    return respond(Trace(trace_id, [_event(m) for m in members], traces.variables(members)))


OPERATIONS = (
    Operation(
        "GET",
        "/api/traces",
        list_traces,
        "Traces, most recently active first",
        READERS,
        {200: TracePage},
        query=(_AFTER, _LIMIT),
    ),
    Operation(
        "GET",
        "/api/traces/{traceId}",
        get_trace,
        "A trace: its events in time order, and its variables",
        READERS,
        {200: Trace},
        route="/api/traces/{rest:path}",
    ),
)
