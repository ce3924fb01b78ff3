"""Turn HTTP requests into validated ``NewEvent``s: binary, structured and batch modes
(http-protocol-binding.md §3, json-format.md), plus the producers' formats eventhub accepts
(Camunda Optimize batches, UiPath Orchestrator webhooks).

Every function validates fully and raises ``InvalidEvents`` listing every problem found, so
nothing of a bad request is stored.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson

from eventhub import errors
from eventhub.codec import attributes, jsontext, media
from eventhub.errors import Problem
from eventhub.events import DataKind, NewEvent, digest_of

_CE_PREFIX = "ce-"


def _event(
    attrs: dict[str, Any],
    data: bytes | None,
    kind: DataKind,
    default_time: str | None = None,
    identity: bytes | None = None,
) -> NewEvent:
    """``identity``: the canonical form of JSON data, when the caller has it parsed already."""
    if identity is None:
        identity = (
            jsontext.canonical_of(data) if kind is DataKind.JSON and data is not None else data
        )
    digest = digest_of(attrs, identity, kind)
    if default_time is not None and "time" not in attrs:
        # Filled after the digest, so a re-sent event without a time is still a duplicate.
        attrs = {**attrs, "time": default_time}
    return NewEvent(attrs, data, kind, digest)


# -- binary mode -----------------------------------------------------------------------------


def decode_header_value(raw: str) -> str:
    """Unquote an RFC 7230 quoted-string, then percent-decode once; invalid UTF-8 raises."""
    value = raw.strip(" \t")
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        out: list[str] = []
        escaped = False
        for ch in value[1:-1]:
            if escaped:
                out.append(ch)
                escaped = False
            elif ch == "\\":
                escaped = True
            else:
                out.append(ch)
        value = "".join(out)
    return unquote_to_bytes(value).decode("utf-8")


def is_binary_mode(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    return any(name.lower().startswith(b"ce-") for name, _ in headers)


def parse_binary(
    headers: Iterable[tuple[bytes, bytes]], content_type: str | None, body: bytes
) -> NewEvent:
    problems: list[Problem] = []
    attrs: dict[str, Any] = {}
    for raw_name, raw_value in headers:
        if raw_name[:3].lower() != b"ce-":
            continue
        attr = raw_name[3:].decode("latin-1").lower()
        if attr == "datacontenttype":
            problems.append(
                Problem("send the data content type as Content-Type, not ce-datacontenttype", attr)
            )
            continue
        if attr in attrs:
            problems.append(Problem("header given more than once", attr))
            continue
        try:
            text = raw_value.decode("ascii")
            # Most values need neither unquoting nor percent-decoding.
            plain = "%" not in text and '"' not in text and text == text.strip(" \t")
            attrs[attr] = text if plain else decode_header_value(text)
        except UnicodeDecodeError:
            problems.append(
                Problem("header value is not percent-encoded ASCII or not valid UTF-8", attr)
            )
    if content_type:
        attrs["datacontenttype"] = content_type
    checked, found = attributes.check(attrs)
    problems.extend(found)

    data: bytes | None = body if body else None
    kind = DataKind.NONE
    identity: bytes | None = None
    if data is not None:
        if content_type and media.is_json(content_type):
            try:
                identity = jsontext.canonical_of(data)
                kind = DataKind.JSON
            except orjson.JSONDecodeError:
                problems.append(
                    Problem(f"body is not valid JSON but Content-Type is {content_type}", "data")
                )
        elif content_type and media.is_text(content_type):
            try:
                data.decode("utf-8")
                kind = DataKind.TEXT
            except UnicodeDecodeError:
                kind = DataKind.BINARY
        else:
            kind = DataKind.BINARY
    if problems:
        raise errors.InvalidEvents("the event is not a valid CloudEvent", problems)
    return _event(checked, data, kind, identity=identity)


# -- structured and batch modes --------------------------------------------------------------


def event_from_json(
    obj: Any,
    index: int | None = None,
    default_time: str | None = None,
    extra_rules: Callable[[dict[str, Any], int | None], list[Problem]] | None = None,
) -> tuple[NewEvent | None, list[Problem]]:
    """One event in the CloudEvents JSON format; returns the event or the problems."""
    if not isinstance(obj, dict):
        return None, [Problem("an event must be a JSON object", None, index)]
    # Which value of a repeated attribute would count is parser lore: refuse the event instead.
    problems = [
        Problem("attribute given more than once", name, index) for name in jsontext.duplicates(obj)
    ]
    has_data, has_b64 = "data" in obj, "data_base64" in obj
    if has_data and has_b64:
        problems.append(Problem("data and data_base64 are mutually exclusive", "data", index))
    if has_data or has_b64:
        fields = dict(obj)  # a copy in C, then the two members that are not attributes out
        fields.pop("data", None)
        fields.pop("data_base64", None)
    else:
        fields = obj  # check copies what it returns: obj is not changed
    attrs, found = attributes.check(fields, index)
    problems.extend(found)
    if extra_rules is not None:
        problems.extend(extra_rules(attrs, index))

    data: bytes | None = None
    kind = DataKind.NONE
    identity: bytes | None = None
    content_type = attrs.get("datacontenttype")
    ct = content_type if isinstance(content_type, str) else None
    if has_b64 and obj["data_base64"] is not None:
        value = obj["data_base64"]
        try:
            if not isinstance(value, str):
                raise ValueError
            data, kind = base64.b64decode(value, validate=True), DataKind.BINARY
        except (ValueError, binascii.Error):
            problems.append(Problem("data_base64 must be a base64 string", "data_base64", index))
    elif has_data:
        value = obj["data"]
        if isinstance(value, str) and not media.is_json(ct):
            data, kind = value.encode("utf-8"), DataKind.TEXT
        else:
            data, kind = jsontext.dumps(value), DataKind.JSON
            identity = jsontext.canonical(value)
    if problems:
        return None, problems
    return _event(attrs, data, kind, default_time, identity), []


def _quick_event(obj: Any, default_time: str | None) -> NewEvent | None:
    """``event_from_json``'s event for the common shape of a batch member (an object without
    repeated names or ``data_base64``, valid, its data JSON or absent), in fewer calls; None
    for anything else, which ``event_from_json`` then decides, problems and all. It must
    give the same event as ``event_from_json`` (a property test holds them together)."""
    if type(obj) is not dict or "data_base64" in obj:  # jsontext.Members: repeated names
        return None
    if "data" in obj:
        fields = dict(obj)
        value = fields.pop("data")
    else:
        fields, value = obj, _ABSENT
    attrs = attributes.accept(fields)
    if attrs is None:
        return None
    data: bytes | None = None
    identity: bytes | None = None
    kind = DataKind.NONE
    if value is not _ABSENT:
        content_type = attrs.get("datacontenttype")
        if isinstance(value, str) and not media.is_json(
            content_type if isinstance(content_type, str) else None
        ):
            return None  # text data: the full path
        try:
            data = orjson.dumps(value)
            identity = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:  # an integer beyond 64 bits: the full path
            return None
        kind = DataKind.JSON
    return _event(attrs, data, kind, default_time, identity)


_ABSENT: Any = object()


def parse_structured(body: bytes) -> NewEvent:
    event, problems = event_from_json(jsontext.loads(body))
    if event is None:
        raise errors.InvalidEvents("the event is not a valid CloudEvent", problems)
    return event


def parse_batch(
    body: bytes,
    max_events: int,
    default_time: str | None = None,
    extra_rules: Callable[[dict[str, Any], int | None], list[Problem]] | None = None,
) -> list[NewEvent]:
    items = jsontext.loads(body)
    if not isinstance(items, list):
        raise errors.InvalidEvents("a batch must be a JSON array of events")
    if len(items) > max_events:
        raise errors.PayloadTooLarge(
            f"a batch holds at most {max_events} events; this one holds {len(items)}"
        )
    events: list[NewEvent] = []
    problems: list[Problem] = []
    for index, item in enumerate(items):
        quick = None if extra_rules is not None else _quick_event(item, default_time)
        if quick is not None:
            events.append(quick)
            continue
        event, found = event_from_json(item, index, default_time, extra_rules)
        if event is not None:
            events.append(event)
        problems.extend(found)
    if problems:
        n = len({p.index for p in problems})
        raise errors.InvalidEvents(
            f"{n} of {len(items)} events are invalid; none was stored", problems
        )
    return events


# -- producers' formats ----------------------------------------------------------------------


def camunda_rules(attrs: dict[str, Any], index: int | None) -> list[Problem]:
    """Camunda Optimize's extra constraints on an ingested event."""
    problems: list[Problem] = []
    trace = attrs.get("traceid")
    if not isinstance(trace, str) or not trace:
        problems.append(
            Problem("traceid is required and must be a non-empty string", "traceid", index)
        )
    if attrs.get("type") == "camunda":
        problems.append(Problem("the type 'camunda' is reserved", "type", index))
    group = attrs.get("group")
    if group is not None and not isinstance(group, str):
        problems.append(Problem("group must be a string", "group", index))
    ct = attrs.get("datacontenttype")
    if isinstance(ct, str) and not media.is_json(ct):
        problems.append(Problem("only application/json data is accepted", "datacontenttype", index))
    return problems


def parse_uipath(body: bytes, source: str, received_at: str) -> NewEvent:
    """A UiPath Orchestrator webhook payload, as UiPath sends it, as one CloudEvent."""
    payload = jsontext.loads(body)
    if not isinstance(payload, Mapping):
        raise errors.InvalidEvents("a UiPath webhook payload must be a JSON object")
    problems = [Problem("field given more than once", f) for f in jsontext.duplicates(payload)]
    for field in ("Type", "EventId"):
        value = payload.get(field)
        if not isinstance(value, str) or not value:
            problems.append(Problem("required field is missing or not a string", field))
    stamp = payload.get("Timestamp")
    # Orchestrator sends some timestamps without an offset (job.stopped, task.deleted,
    # task.forwarded in its own catalogue): they are UTC.
    if (
        isinstance(stamp, str)
        and not attributes.valid_time(stamp)
        and attributes.valid_time(stamp + "Z")
    ):
        stamp += "Z"
    if stamp is not None and (not isinstance(stamp, str) or not attributes.valid_time(stamp)):
        problems.append(Problem("must be an RFC 3339 timestamp", "Timestamp"))
    if problems:
        raise errors.InvalidEvents("the payload is not a valid UiPath webhook event", problems)
    attrs: dict[str, Any] = {
        "specversion": "1.0",
        "id": payload["EventId"],
        "source": source,
        "type": payload["Type"],
        "datacontenttype": "application/json",
    }
    if stamp is not None:
        attrs["time"] = stamp
    checked, found = attributes.check(attrs)
    if found:
        raise errors.InvalidEvents("the payload is not a valid UiPath webhook event", found)
    identity = jsontext.canonical(payload)
    return _event(checked, body, DataKind.JSON, default_time=received_at, identity=identity)
