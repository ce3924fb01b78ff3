"""Events and records for the store contract tests (and the SQLite tests that reuse them)."""

from __future__ import annotations

from typing import Any

import orjson

from eventhub.codec import parse
from eventhub.events import DataKind, NewEvent, digest_of
from eventhub.models import Status, Subscription


def event(id_: str, data: bytes = b'{"n": 1}', source: str = "/s", type_: str = "t") -> NewEvent:
    return parse.parse_binary(
        [
            (b"ce-specversion", b"1.0"),
            (b"ce-id", id_.encode()),
            (b"ce-source", source.encode()),
            (b"ce-type", type_.encode()),
        ],
        "application/json",
        data,
    )


STAMPS = [
    None,  # no time: the time the hub received it
    "2020-01-01T10:00:00Z",
    "2020-01-01T11:00:00+01:00",  # the same instant as the one before
    "2020-01-01T10:00:00.5Z",
    "2019-12-31T23:00:00Z",
]
DATA = [None, {"x": 1}, {"x": {"nested": 1}}, {"y": True, "x": "two"}, [1, 2], {"z": None}]


def traced(source: str, id_: str, trace: str | None, stamp: str | None, data: int) -> NewEvent:
    """An event with (or without) a ``traceid`` and a ``time``, and one of ``DATA``."""
    attributes: dict[str, Any] = {"specversion": "1.0", "id": id_, "source": source, "type": "t"}
    if trace is not None:
        attributes["traceid"] = trace
    if stamp is not None:
        attributes["time"] = stamp
    value = DATA[data]
    body = None if value is None else orjson.dumps(value)
    kind = DataKind.NONE if body is None else DataKind.JSON
    return NewEvent(attributes, body, kind, digest_of(attributes, body, kind))


def subscription(sub_id: str, tid: int = 1, status: Status = Status.ACTIVE) -> Subscription:
    return Subscription(
        id=sub_id,
        owner="k",
        km="km",
        trigger="t",
        tid=tid,
        name=sub_id,
        uri="http://127.0.0.1:9/hook",
        headers={"X-Token": "hidden"},
        skip_errors=False,
        format="envelope",
        batch_size=1,
        max_retries=0,
        secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        status=status,
        cursor=0,
        created_at="2026-01-01T00:00:00Z",
        updated_at="2026-01-01T00:00:00Z",
    )
