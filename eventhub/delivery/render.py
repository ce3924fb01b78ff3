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
        return {"content-type": "application/cloudevents+json"}, orjson.dumps(event.to_cloudevent())
    if sub.format == "batch":
        return {"content-type": "application/cloudevents-batch+json"}, orjson.dumps(
            [e.to_cloudevent() for e in events]
        )
    body = orjson.dumps(
        [
            {
                "subscriptionId": sub.id,
                "triggerId": sub.trigger,
                "eventId": e.id,
                "offset": e.offset,
                "creationDate": e.attributes.get("time") or e.received_at,
                "event": e.to_cloudevent(),
            }
            for e in events
        ]
    )
    return {"content-type": "application/json"}, body
