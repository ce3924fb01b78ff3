"""The ingest endpoints (api/ingest.py) as operations: their routes, and what the OpenAPI
document says they take and answer. Apart from ingest.py, which is the hot path: those
endpoints parse and answer with orjson directly, and ``Receipt`` here describes what they
write (tests/contract/test_openapi.py holds the two together)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from eventhub.api import handshake, ingest
from eventhub.api.events import (
    ATTRIBUTE_TEXT,
    EXTENSION,
    EXTENSION_NAMES,
    CloudEventJson,
    or_null,
)
from eventhub.api.operation import PUBLIC, Answer, Content, Header, Operation, Query


class Stored(msgspec.Struct):
    """What the log did with one event. ``duplicate``: the same source and id with the same
    content was already stored (nothing new was written); ``correlation`` is there only for
    an event that names a process instance (``cxpinstanceid``)."""

    source: str
    id: str
    offset: int
    revision: int
    duplicate: bool
    correlation: Literal["woke", "buffered", "unrouted"] | msgspec.UnsetType = msgspec.UNSET


class Receipt(msgspec.Struct):
    """Every event of the request was stored (an error stores none of them)."""

    accepted: int
    events: list[Stored]


def _schema(type_: Any) -> dict[str, Any]:
    schema: dict[str, Any] = msgspec.json.schema(type_)
    return schema


_EVENT = _schema(CloudEventJson)
_BATCH = {"type": "array", "items": _EVENT}
_BINARY = {
    "type": "string",
    "format": "binary",
    "description": "Binary mode: the body is the event's data; its attributes are ce-* headers.",
}
_CAMUNDA = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["specversion", "id", "source", "type", "traceid"],
        "properties": {
            **_EVENT["properties"],
            "type": {**ATTRIBUTE_TEXT, "not": {"const": "camunda"}},
            "datacontenttype": or_null(
                {
                    "type": "string",
                    # A JSON media type (codec/media.py is_json), with no control characters.
                    "pattern": r"^[^;\x00-\x1F\x7F-\x9F]*[/+][Jj][Ss][Oo][Nn] *(;[^\x00-\x1F\x7F-\x9F]*)?$",
                }
            ),
            "traceid": ATTRIBUTE_TEXT,
            "group": or_null({"type": "string", "pattern": ATTRIBUTE_TEXT["pattern"]}),
        },
        "propertyNames": EXTENSION_NAMES,
        "additionalProperties": EXTENSION,
        "not": {"required": ["data", "data_base64"]},
        "description": (
            "A Camunda Optimize event: a CloudEvent with traceid (and group), JSON data only;"
            " the type `camunda` is reserved."
        ),
    },
}
_UIPATH = {
    "type": "object",
    "required": ["Type", "EventId"],
    "properties": {
        # They become the event's type and id: Strings with no control characters.
        "Type": ATTRIBUTE_TEXT,
        "EventId": ATTRIBUTE_TEXT,
        # Also taken without an offset (as UTC), as Orchestrator sends some.
        "Timestamp": or_null({"type": "string", "format": "date-time"}),
    },
    "description": "A UiPath Orchestrator webhook payload, as Orchestrator sends it.",
}


def _header(name: str, description: str) -> Query:
    return Query(name, description, {"type": "string"}, where="header")


_CE_HEADERS = (
    _header("ce-specversion", "Binary mode: the CloudEvents version, 1.0."),
    _header("ce-id", "Binary mode: the event's id."),
    _header("ce-source", "Binary mode: the event's source."),
    _header("ce-type", "Binary mode: the event's type."),
)
_SOURCE = _header(
    "X-Eventhub-Source",
    "Without an API key: the registered source whose secret signed the body.",
)
_ORIGIN = _header(
    "WebHook-Request-Origin", "The sender asking for consent (the CloudEvents webhook handshake)."
)
_CONSENT = Answer(
    None,
    "The methods the endpoint takes, and the consent when the origin asked is allowed.",
    (
        Header("Allow", "`OPTIONS, POST`.", required=True),
        Header("WebHook-Allowed-Origin", "The origin asked for, or `*`: consent."),
        Header("WebHook-Allowed-Rate", "`*`: the hub sets no rate (overload is a 429)."),
    ),
)
_SENDERS = ("admin", "producer")
_AUTH = ("accessToken", "signature")


def operations(intake: ingest.Ingest, post_events: ingest.Endpoint) -> tuple[Operation, ...]:
    """The ingest operations, served by endpoints that share ``intake``; ``POST /events`` is
    ``post_events``, which the app also answers ahead of its router (app.py)."""
    camunda = ingest.Endpoint(intake, ingest.post_camunda_batch)
    uipath = ingest.Endpoint(
        intake, ingest.post_uipath, ingest.named_by_path, ingest.UIPATH_SIGNATURE_HEADERS
    )
    uipath_path = "/api/ingestion/uipath/{source}"
    uipath_route = "/api/ingestion/uipath/{rest:path}"
    return (
        Operation(
            "POST",
            "/events",
            post_events,
            "Send CloudEvents",
            _SENDERS,
            {200: Receipt},
            (
                Content("application/cloudevents+json", _EVENT),
                Content("application/cloudevents-batch+json", _BATCH),
                Content("application/octet-stream", _BINARY),
            ),
            (*_CE_HEADERS, _SOURCE),
            description=(
                "One event in structured mode (`application/cloudevents+json`), a batch"
                " (`application/cloudevents-batch+json`, a JSON array of events) or one event"
                " in binary mode (any other Content-Type, with ce-* headers). All of the"
                " request is stored, or none of it."
            ),
            also=_AUTH,
            name="post_events",
            tag="ingest",
        ),
        Operation(
            "POST",
            "/api/ingestion/event/batch",
            camunda,
            "Send a Camunda Optimize event batch",
            _SENDERS,
            {204: None},
            Content("application/json", _CAMUNDA),
            (_SOURCE,),
            also=_AUTH,
            name="post_camunda_batch",
            tag="ingest",
        ),
        Operation(
            "POST",
            uipath_path,
            uipath,
            "Receive a UiPath Orchestrator webhook",
            _SENDERS,
            {200: Receipt},
            Content("application/json", _UIPATH),
            route=uipath_route,
            description=(
                "Signed with the source's secret (`X-UiPath-Signature`) or sent with a key."
            ),
            also=_AUTH,
            name="post_uipath",
            tag="ingest",
        ),
        *(
            Operation(
                "OPTIONS",
                path,
                handshake.options,
                "The CloudEvents webhook validation handshake",
                PUBLIC,
                {200: _CONSENT},
                query=(_ORIGIN,),
                route=route,
                name=f"options_{name}",
                tag="ingest",
            )
            for path, route, name in (
                ("/events", "/events", "events"),
                ("/api/ingestion/event/batch", "/api/ingestion/event/batch", "camunda"),
                (uipath_path, uipath_route, "uipath"),
            )
        ),
    )
