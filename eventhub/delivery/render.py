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
# same object or an equal one (subscriptions at different cursors read their pages apart, so
# at 5,000 events/s over 10 subscriptions each event arrives as 10 objects: with ``is`` alone
# every one missed, and the misses cleared the cache every 1,024), so another store's event
# at that offset (several hubs in one process, in tests) is never taken for it. Bounded: cleared whole when full, a page's worth of events
# at most, and ``_CACHED_BYTES`` of them and their encodings: what is kept outlives its
# delivery, and 1,024 events of a few MiB each (``max_body_bytes``) would be gigabytes.
_CACHED = 1024
_CACHED_BYTES = 32 * 1024 * 1024


class _Cache:
    """One encoding of events by offset, bounded in count and bytes."""

    __slots__ = ("entries", "size")

    def __init__(self) -> None:
        self.entries: dict[int, tuple[StoredEvent, bytes]] = {}
        self.size = 0  # the kept encodings and their events' data, in bytes

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, event: StoredEvent) -> bytes | None:
        hit = self.entries.get(event.offset)
        if hit is None:
            return None
        kept = hit[0]
        return hit[1] if kept is event or kept == event else None

    def keep(self, event: StoredEvent, value: bytes) -> bytes:
        size = len(value) + (len(event.data) if event.data is not None else 0)
        if len(self.entries) >= _CACHED or self.size + size > _CACHED_BYTES:
            self.entries.clear()
            self.size = 0
        if size <= _CACHED_BYTES:
            self.entries[event.offset] = (event, value)
            self.size += size
        return value


_event_json = _Cache()
_envelope_tail = _Cache()


def event_json(event: StoredEvent) -> bytes:
    """The event in the CloudEvents JSON format, encoded once per event."""
    cached = _event_json.get(event)
    if cached is not None:
        return cached
    return _event_json.keep(event, orjson.dumps(event.to_cloudevent()))


def _envelope_item_tail(event: StoredEvent) -> bytes:
    """An envelope item from ``"eventId"`` to its closing brace: the same for every
    subscription."""
    cached = _envelope_tail.get(event)
    if cached is not None:
        return cached
    item = {
        "eventId": event.id,
        "offset": event.offset,
        "creationDate": event.attributes.get("time") or event.received_at,
        "event": orjson.Fragment(event_json(event)),
    }
    return _envelope_tail.keep(event, orjson.dumps(item)[1:])


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
