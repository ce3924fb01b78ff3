"""Delivery bodies: the event's part is encoded once per event and shared by every subscription
(a fan-out), and the bytes are exactly what encoding the whole body at once gives."""

from __future__ import annotations

import gc
from typing import Any

import orjson
import pytest

from eventhub.delivery import render
from eventhub.events import DataKind, StoredEvent
from eventhub.models import Status, Subscription


def subscription(fmt: str, sub_id: str = "sub_1", trigger: str = "created") -> Subscription:
    return Subscription(
        id=sub_id,
        owner="k",
        km="orders",
        trigger=trigger,
        tid=1,
        name="n",
        uri="http://127.0.0.1:9/hook",
        headers={},
        skip_errors=False,
        format=fmt,
        batch_size=10,
        max_retries=3,
        secret="whsec_eA==",
        status=Status.ACTIVE,
        cursor=0,
        created_at="t",
        updated_at="t",
    )


def event(offset: int, kind: DataKind, data: bytes | None, **extra: Any) -> StoredEvent:
    attributes = {"specversion": "1.0", "id": f'e\u00e9"{offset}', "source": "/s", "type": "t"}
    return StoredEvent(offset, 1, {**attributes, **extra}, data, kind, "2026-11-27T10:00:00Z")


EVENTS = [
    event(7, DataKind.JSON, b'{"a":[1,2,{"b":"\\u00e9"}]}', time="2026-11-27T09:00:00Z"),
    event(8, DataKind.TEXT, "h\u00e9llo".encode()),
    event(9, DataKind.BINARY, b"\x00\xff"),
    event(10, DataKind.JSON, None),
]


def whole(sub: Subscription, events: list[StoredEvent]) -> bytes:
    """The body as one generic encoding of the whole (what render did before)."""
    if sub.format == "structured":
        return orjson.dumps(events[0].to_cloudevent())
    if sub.format == "batch":
        return orjson.dumps([e.to_cloudevent() for e in events])
    return orjson.dumps(
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


@pytest.mark.parametrize("fmt", ["envelope", "batch", "structured"])
def test_bodies_are_the_whole_encoded_at_once_byte_for_byte(fmt: str) -> None:
    pages = [[e] for e in EVENTS] if fmt == "structured" else [EVENTS, EVENTS[1:3], EVENTS[:1]]
    for sub in (subscription(fmt), subscription(fmt, 'sub_\u00e9"2', "tr\\g")):
        for page in pages:
            for _ in range(2):  # the second time from what was kept
                _, body = render.render(sub, page)
                assert body == whole(sub, page)
                orjson.loads(body)


def test_another_event_at_a_kept_offset_is_encoded_afresh() -> None:
    # Two stores in one process (tests run several hubs) may hold different events at one
    # offset: what was kept for one object is never handed out for another.
    sub = subscription("envelope")
    first = event(42, DataKind.JSON, b'{"n":1}')
    other = event(42, DataKind.JSON, b'{"n":2}')
    assert render.render(sub, [first])[1] == whole(sub, [first])
    assert render.render(sub, [other])[1] == whole(sub, [other])
    assert render.render(sub, [first])[1] == whole(sub, [first])


def test_an_equal_event_read_apart_is_a_hit() -> None:
    # Subscriptions at different cursors read their pages apart: the same event of the log
    # arrives as several equal objects, each of which must find what the first one encoded.
    sub = subscription("envelope")
    first = event(43, DataKind.JSON, b'{"n":1}')
    again = event(43, DataKind.JSON, b'{"n":1}')
    assert again is not first and again == first
    assert render.render(sub, [first])[1] == whole(sub, [first])
    kept = render._event_json.get(first)
    assert kept is not None and render._event_json.get(again) is kept
    assert render.render(sub, [again])[1] == whole(sub, [again])


def test_what_is_kept_stays_bounded() -> None:
    sub = subscription("batch")
    for offset in range(3 * render._CACHED):
        render.render(sub, [event(offset, DataKind.JSON, b"1")])
    assert len(render._event_json) <= render._CACHED


def test_what_is_kept_stays_bounded_in_bytes() -> None:
    """The caches keep events past their delivery (until they fill up): bounded by count alone,
    1,024 events of a few MiB each (``max_body_bytes`` is 10 MiB) would stay in memory, three
    copies each, after every delivery is done. What they keep must stay bounded in bytes."""
    sub = subscription("envelope")
    data = b'"' + b"x" * (1024 * 1024) + b'"'  # one shared 1 MiB value: the copies are render's
    for offset in range(200):
        render.render(sub, [event(offset, DataKind.JSON, data)])
    gc.collect()
    kept = [o for o in gc.get_objects() if type(o) is StoredEvent and o.data is data]
    # Each kept event holds 1 MiB here, and at least as much again in its encodings.
    assert len(kept) <= 64, f"{len(kept)} events of 1 MiB kept after their delivery"
