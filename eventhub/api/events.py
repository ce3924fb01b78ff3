"""Reading the log: ``GET /events?after=&limit=`` and ``GET /events/{source}/{id}``.

Below the retained range (retention deleted it) a page is 410 ``below_retained_range`` with
the first retained offset; an event retention deleted is 404, as one never sent (its identity
went with it: log/retention.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Annotated, Any

import msgspec
import orjson
from starlette.requests import Request
from starlette.responses import Response

from eventhub import errors
from eventhub.api._http import hub_of, raw_segments, require
from eventhub.api.errors import FIRST_OFFSET_HEADER, Error
from eventhub.api.operation import INTEGER, READERS, Answer, Header, IntQuery, Operation

MAX_PAGE = 1000
# The longest a long poll may hold its connection: past it, the client asks again.
MAX_WAIT_SECONDS = 30

# A String attribute as ingest takes it (codec/attributes.py): not empty, and no control
# characters (CloudEvents spec §3.1.1).
ATTRIBUTE_TEXT: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "pattern": r"^[^\x00-\x1F\x7F-\x9F]*$",
}


# An optional attribute may also be null: the JSON format's way to leave it out (ingest drops
# it; a read-back event never holds one).
def or_null(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


OPTIONAL_TEXT = or_null(ATTRIBUTE_TEXT)
# An extension attribute: named in lower-case letters and digits, a String (no control
# characters), a Boolean or a 32-bit Integer (codec/attributes.py), or null (left out).
EXTENSION_NAMES = {"pattern": "^([a-z0-9]+|data_base64)$"}
EXTENSION = {
    "anyOf": [
        {"type": "string", "pattern": ATTRIBUTE_TEXT["pattern"]},
        {"type": "boolean"},
        {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
        {"type": "null"},
    ]
}

# A CloudEvent in the JSON format (structured mode), as sent and as read back.
CloudEventJson = Annotated[
    dict[str, Any],
    msgspec.Meta(
        title="CloudEvent",
        description=(
            "A CloudEvent in the JSON event format: its context attributes (extensions too),"
            " and `data` (JSON) or `data_base64` (bytes)."
        ),
        extra_json_schema={
            "required": ["specversion", "id", "source", "type"],
            "properties": {
                "specversion": {"type": "string", "const": "1.0"},
                "id": ATTRIBUTE_TEXT,
                "source": ATTRIBUTE_TEXT,
                "type": ATTRIBUTE_TEXT,
                "subject": OPTIONAL_TEXT,
                "time": or_null({"type": "string", "format": "date-time"}),
                "datacontenttype": OPTIONAL_TEXT,
                # Not "format": "uri": ingest takes any String here, and the log answers
                # with what it took (the contract test sent "0" and read it back).
                "dataschema": or_null({**ATTRIBUTE_TEXT, "description": "A URI, by convention."}),
                "data": {"description": "The event's data, any JSON value."},
                "data_base64": or_null({"type": "string", "contentEncoding": "base64"}),
            },
            "propertyNames": EXTENSION_NAMES,
            "additionalProperties": EXTENSION,
            # Ingest refuses both, null or not.
            "not": {"required": ["data", "data_base64"]},
        },
    ),
]


class Entry(msgspec.Struct, rename="camel"):
    """One event of the log: where it is (``offset``), which version of it this is
    (``revision``: a re-send with other content makes a new one) and when it arrived."""

    offset: int
    revision: int
    received_at: str
    event: CloudEventJson


class Page(msgspec.Struct, rename="camel"):
    """Events after ``after``, oldest first. ``nextAfter`` is the ``after`` of the next page;
    ``head`` is the log's last offset, where a reader that wants only new events starts."""

    events: list[Entry]
    next_after: int
    head: int


AFTER = IntQuery.of("after", "Events after this offset (0: from the start).", 0, 0, 2**63 - 1)
LIMIT = IntQuery.of("limit", "The most events in the page.", 100, 1, MAX_PAGE)
WAIT = IntQuery.of(
    "wait",
    "A long poll: when no event follows `after`, answer only after one arrives or this many"
    " seconds pass (0: answer at once).",
    0,
    0,
    MAX_WAIT_SECONDS,
)


def _json(value: dict[str, Any]) -> Response:
    """Encoded with orjson, not msgspec: an event's JSON data is spliced in as stored
    (``StoredEvent.to_cloudevent``), and the delivery path shares that code. The answers
    are ``Page`` and ``Entry`` all the same (tests/contract/test_openapi.py)."""
    return Response(orjson.dumps(value), media_type="application/json")


async def list_events(request: Request) -> Response:
    """A page of the log after ``after``; with ``wait=S`` (1-30), an empty page is answered
    only after ``S`` seconds without a new event (a long poll: ``eventhub tail --follow``)."""
    require(request, *READERS)
    after, limit, wait = AFTER.read(request), LIMIT.read(request), WAIT.read(request)
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
    next_after = events[-1].offset if events else after
    return _json(
        {"events": [e.to_entry() for e in events], "nextAfter": next_after, "head": hub.head.head}
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
    return _json(event.to_entry())


OPERATIONS = (
    Operation(
        "GET",
        "/events",
        list_events,
        "Read the log",
        READERS,
        {
            200: Page,
            410: Answer(
                Error,
                "`below_retained_range`: retention deleted what follows `after`.",
                (Header(FIRST_OFFSET_HEADER, "The first offset the log holds.", INTEGER, True),),
            ),
        },
        query=(AFTER, LIMIT, WAIT),
        description=(
            "A page of events after `after`, oldest first. Below the retained range (retention"
            " deleted it) the answer is 410 `below_retained_range`, with the first offset"
            " still held in `Eventhub-First-Offset`."
        ),
        tag="events",
    ),
    Operation(
        "GET",
        "/events/{source}/{id}",
        get_event,
        "One event, by source and id (its latest revision)",
        (*READERS, "producer"),
        {200: Entry},
        route="/events/{rest:path}",
        description="A producer key may read the sources it may send.",
        tag="events",
    ),
)
