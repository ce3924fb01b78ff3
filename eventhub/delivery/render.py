"""What a delivery looks like on the wire, per subscription format (pure functions).

- ``envelope`` (default): a JSON array of ``{subscriptionId, triggerId, eventId, offset,
  creationDate, event}``, ``event`` the CloudEvent in JSON format; up to ``batchSize`` events.
- ``binary``: CloudEvents HTTP binary mode, one event a request.
- ``structured``: ``application/cloudevents+json``, one event a request.
- ``batch``: ``application/cloudevents-batch+json``, up to ``batchSize`` events.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

import orjson

from eventhub.events import DataKind, StoredEvent
from eventhub.models import Subscription

SINGLE = frozenset({"binary", "structured"})

# http-protocol-binding.md 3.1.3.2: percent-encode space, '"', '%' and all but printable ASCII.
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')

# A fan-out renders one event for every subscription of its trigger (10,000 times), and the
# supervisors share the very ``StoredEvent`` objects (``consume.pages``): what does not depend
# on the subscription is encoded once per event and kept here, by offset. A hit must be the
# same object (``is``), so another store's event at that offset (several hubs in one process,
# in tests) is never taken for it. Bounded: cleared whole when full, a page's worth at most.
_CACHED = 1024
_event_json: dict[int, tuple[StoredEvent, bytes]] = {}
_envelope_tail: dict[int, tuple[StoredEvent, bytes]] = {}


def _cached(cache: dict[int, tuple[StoredEvent, bytes]], event: StoredEvent) -> bytes | None:
    hit = cache.get(event.offset)
    return hit[1] if hit is not None and hit[0] is event else None


def _keep(cache: dict[int, tuple[StoredEvent, bytes]], event: StoredEvent, value: bytes) -> bytes:
    if len(cache) >= _CACHED:
        cache.clear()
    cache[event.offset] = (event, value)
    return value


def event_json(event: StoredEvent) -> bytes:
    """The event in the CloudEvents JSON format, encoded once per event."""
    cached = _cached(_event_json, event)
    if cached is not None:
        return cached
    return _keep(_event_json, event, orjson.dumps(event.to_cloudevent()))


def _envelope_item_tail(event: StoredEvent) -> bytes:
    """An envelope item from ``"eventId"`` to its closing brace: the same for every
    subscription."""
    cached = _cached(_envelope_tail, event)
    if cached is not None:
        return cached
    item = {
        "eventId": event.id,
        "offset": event.offset,
        "creationDate": event.attributes.get("time") or event.received_at,
        "event": orjson.Fragment(event_json(event)),
    }
    return _keep(_envelope_tail, event, orjson.dumps(item)[1:])


def page_size(sub: Subscription) -> int:
    return 1 if sub.format in SINGLE else sub.batch_size


def message_id(sub: Subscription, events: Sequence[StoredEvent]) -> str:
    """Stable for the same events, so a retry carries the same ``webhook-id``."""
    first, last = events[0].offset, events[-1].offset
    return f"msg_{sub.id}_{first}" if first == last else f"msg_{sub.id}_{first}_{last}"


def header_value(value: object) -> str:
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return quote(text, safe=_HEADER_SAFE)


def render(sub: Subscription, events: Sequence[StoredEvent]) -> tuple[dict[str, str], bytes]:
    """(headers, body) of one delivery of ``events``."""
    if sub.format == "binary":
        (event,) = events
        headers = {
            f"ce-{name}": header_value(value)
            for name, value in event.attributes.items()
            if name != "datacontenttype"
        }
        content_type = event.attributes.get("datacontenttype")
        if isinstance(content_type, str):
            headers["content-type"] = content_type
        elif event.kind is DataKind.JSON:
            # JSON-format ``data`` without datacontenttype is JSON, and an event moved to
            # another binding SHOULD say so explicitly (json-format.md 3.1).
            headers["content-type"] = "application/json"
        elif event.data is not None:
            headers["content-type"] = "application/octet-stream"
        return headers, event.data or b""
    if sub.format == "structured":
        (event,) = events
        return {"content-type": "application/cloudevents+json"}, event_json(event)
    if sub.format == "batch":
        body = b"[" + b",".join([event_json(e) for e in events]) + b"]"
        return {"content-type": "application/cloudevents-batch+json"}, body
    # {"subscriptionId":…,"triggerId":…, then the event's own part: what orjson.dumps of the
    # whole item gives, byte for byte, with the event's part encoded once for all.
    head = orjson.dumps({"subscriptionId": sub.id, "triggerId": sub.trigger})[:-1] + b","
    body = b"[" + b",".join([head + _envelope_item_tail(e) for e in events]) + b"]"
    return {"content-type": "application/json"}, body
