"""What a real CloudEvents producer sends comes back from the log unchanged, in every HTTP mode.

The producers are the ``cloudevents`` SDK's own HTTP bindings; the log is read back over HTTP and,
where it helps, parsed again by the SDK as a consumer would.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
from cloudevents.core.bindings.http import (
    HTTPMessage,
    from_structured_event,
    to_binary_event,
    to_structured_event,
)
from cloudevents.core.v1.event import CloudEvent

from tests.conftest import Running
from tests.e2e.helpers import (
    STRUCTURED,
    attributes_named,
    batch_body,
    bearer,
    error_of,
    send,
    send_batch,
    send_binary,
    send_structured,
)

TIME = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
TIME_TEXT = "2026-03-01T12:30:15.123456Z"

XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<order id="7"><item qty="2">B\u00fccher &amp; Hefte</item></order>'
)
TEXT = "Gr\u00fc\u00dfe, \u4e16\u754c \u2014 \U0001f389\nzweite Zeile\twith tab"
BLOB = bytes(range(256)) + b"\x00\xff\xfe"
# JSON text whose exact bytes (spacing, key order, number spelling, escapes) must survive.
RAW_JSON = b'{"z": 1,\n  "a": [1, 2.50, 1e3, "\\u00fc", null],   "nested": {"k": true}}'

# (name, data, datacontenttype)
DATA_CASES: list[tuple[str, Any, str | None]] = [
    (
        "json-object",
        {"n": 1, "s": "gr\u00fc\u00df", "list": [1, 2.5, None, True]},
        "application/json",
    ),
    ("json-raw-bytes", RAW_JSON, "application/json"),
    ("json-plus-suffix", {"k": "v"}, "application/vnd.example+json"),
    ("xml", XML, "application/xml"),
    ("text-non-ascii", TEXT, "text/plain; charset=utf-8"),
    ("binary", BLOB, "application/octet-stream"),
    ("no-data", None, None),
]
# Structured mode carries JSON data as JSON values, never as bytes.
STRUCTURED_CASES = [c for c in DATA_CASES if c[0] != "json-raw-bytes"]


def make_event(data: Any = None, **attributes: Any) -> CloudEvent:
    base: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "source": "/roundtrip/tests",
        "type": "com.example.roundtrip",
        "time": TIME,
        "subject": "orders/7",
        "dataschema": "https://example.com/schemas/order.json",
    }
    return CloudEvent({**base, **attributes}, data)


def without_data(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in ("data", "data_base64")}


def as_sdk_event(stored: dict[str, Any]) -> CloudEvent:
    """The stored event parsed back by the SDK, as a consumer of the log would."""
    message = HTTPMessage({"content-type": STRUCTURED}, json.dumps(stored).encode())
    event = from_structured_event(message)
    assert isinstance(event, CloudEvent)
    return event


def assert_same_data(stored: dict[str, Any], sent: Any, content_type: str | None) -> None:
    if sent is None:
        assert "data" not in stored and "data_base64" not in stored
    elif isinstance(sent, bytes) and content_type == "application/json":
        assert stored["data"] == json.loads(sent)
    elif isinstance(sent, bytes):
        assert "data" not in stored
        assert base64.b64decode(stored["data_base64"]) == sent
    elif isinstance(sent, str):
        assert stored["data"] == sent
        assert stored["data"].encode("utf-8") == sent.encode("utf-8")
    else:
        assert stored["data"] == sent


async def only_entry(server: Running) -> dict[str, Any]:
    entries = await server.log()
    assert len(entries) == 1, entries
    return entries[0]


@pytest.mark.parametrize(
    ("name", "data", "content_type"), DATA_CASES, ids=[c[0] for c in DATA_CASES]
)
async def test_binary_mode_round_trips(
    server: Running, name: str, data: Any, content_type: str | None
) -> None:
    extensions = {"traceid": "trace-1", "priority": 42, "urgent": True}
    attrs: dict[str, Any] = {**extensions}
    if content_type is not None:
        attrs["datacontenttype"] = content_type
    event = make_event(data, **attrs)
    message = to_binary_event(event)

    response = await send(server, message)
    assert response.status == 200, await response.text()
    receipt = await response.json()
    assert receipt["accepted"] == 1
    assert receipt["events"][0]["duplicate"] is False

    entry = await only_entry(server)
    stored = entry["event"]
    expected = {
        "specversion": "1.0",
        "id": event.get_id(),
        "source": "/roundtrip/tests",
        "type": "com.example.roundtrip",
        "time": TIME_TEXT,
        "subject": "orders/7",
        "dataschema": "https://example.com/schemas/order.json",
        # Headers carry strings only: extensions come back as the strings the producer sent.
        **{k: str(v) for k, v in extensions.items()},
    }
    if content_type is not None:
        expected["datacontenttype"] = content_type
    assert without_data(stored) == expected
    assert_same_data(stored, data, content_type)
    assert entry["offset"] == receipt["events"][0]["offset"]
    assert entry["revision"] == 1

    # A consumer using the SDK reads back the same event.
    again = as_sdk_event(stored)
    assert again.get_time() == TIME
    assert again.get_subject() == "orders/7"
    if isinstance(data, bytes) and content_type == "application/json":
        assert again.get_data() == json.loads(data)
    else:
        assert again.get_data() == data


async def test_binary_json_data_keeps_its_exact_bytes(server: Running) -> None:
    event = make_event(RAW_JSON, datacontenttype="application/json")
    assert (await send_binary(server, event)).status == 200
    async with server.http.get(server.url + "/events?after=0", headers=server.admin) as response:
        raw = await response.read()
    assert RAW_JSON in raw, "JSON data is served as the very bytes the producer sent"


@pytest.mark.parametrize(
    ("name", "data", "content_type"), STRUCTURED_CASES, ids=[c[0] for c in STRUCTURED_CASES]
)
async def test_structured_mode_round_trips(
    server: Running, name: str, data: Any, content_type: str | None
) -> None:
    attrs: dict[str, Any] = {"traceid": "trace-2", "priority": 42, "urgent": True, "ratio": "0.5"}
    if content_type is not None:
        attrs["datacontenttype"] = content_type
    event = make_event(data, **attrs)
    message = to_structured_event(event)
    assert message.headers["content-type"] == STRUCTURED

    response = await send(server, message)
    assert response.status == 200, await response.text()

    stored = (await only_entry(server))["event"]
    # Extensions keep their JSON types; the whole event is what the SDK wrote.
    assert stored == json.loads(message.body)
    assert stored["priority"] == 42 and stored["urgent"] is True
    assert_same_data(stored, data, content_type)
    assert as_sdk_event(stored).get_data() == data


async def test_batch_mode_round_trips(server: Running) -> None:
    events = [
        make_event({"n": 1}, datacontenttype="application/json", seq=1),
        make_event(XML, datacontenttype="application/xml", seq=2),
        make_event(TEXT, datacontenttype="text/plain", seq=3),
        make_event(BLOB, datacontenttype="application/octet-stream", seq=4),
        make_event(None, seq=5),
    ]
    response = await send_batch(server, events)
    assert response.status == 200, await response.text()
    receipt = await response.json()
    assert receipt["accepted"] == 5
    assert [r["id"] for r in receipt["events"]] == [e.get_id() for e in events]

    entries = await server.log()
    sent = json.loads(batch_body(events))
    assert [e["event"] for e in entries] == sent, "in order, each exactly as written"
    assert [e["offset"] for e in entries] == [r["offset"] for r in receipt["events"]]
    assert base64.b64decode(entries[3]["event"]["data_base64"]) == BLOB


async def test_percent_encoded_header_values_come_back_decoded(server: Running) -> None:
    subject = 'Gr\u00fc\u00dfe aus K\u00f6ln \u2014 5 \u20ac \U0001f389 100% "quoted"'
    event = make_event({"x": 1}, datacontenttype="application/json", subject=subject, note="a b")
    message = to_binary_event(event)
    # The SDK percent-encoded what HTTP headers cannot carry.
    assert message.headers["ce-subject"].isascii()
    assert "%E2%82%AC" in message.headers["ce-subject"] and "%20" in message.headers["ce-subject"]

    assert (await send(server, message)).status == 200
    stored = (await only_entry(server))["event"]
    assert stored["subject"] == subject
    assert stored["note"] == "a b"


async def test_double_quoted_header_value_is_unquoted_then_percent_decoded(
    server: Running,
) -> None:
    headers = {
        **server.admin,
        "ce-specversion": "1.0",
        "ce-id": "quoted-1",
        "ce-source": "/quoted",
        "ce-type": "com.example.quoted",
        "ce-subject": '"caf%C3%A9 \\"au\\" lait"',
        "ce-plain": '"hello world"',
        "content-type": "text/plain",
    }
    response = await server.post("/events", data=b"hi", headers=headers)
    assert response.status == 200, await response.text()
    stored = (await only_entry(server))["event"]
    assert stored["subject"] == 'caf\u00e9 "au" lait'
    assert stored["plain"] == "hello world"
    assert stored["data"] == "hi"


@pytest.mark.parametrize("bad", ["%C0%A0", "abc%FF", "%E2%82"])
async def test_invalid_utf8_in_a_header_is_rejected_naming_the_attribute(
    server: Running, bad: str
) -> None:
    headers = {
        **server.admin,
        "ce-specversion": "1.0",
        "ce-id": "bad-utf8",
        "ce-source": "/bad",
        "ce-type": "com.example.bad",
        "ce-subject": bad,
        "content-type": "application/json",
    }
    response = await server.post("/events", data=b"{}", headers=headers)
    error = await error_of(response, 400)
    assert "subject" in attributes_named(error)
    assert await server.log() == []


async def test_get_by_source_and_id_with_slashes_percent_encoded(server: Running) -> None:
    source, id_ = "/mycontext/sub", "order 1/2 \u20ac"
    event = make_event({"v": 1}, source=source, id=id_, datacontenttype="application/json")
    assert (await send_structured(server, event)).status == 200
    other = make_event({"v": 2}, source="/mycontext", id=id_, datacontenttype="application/json")
    assert (await send_structured(server, other)).status == 200

    path = f"/events/{quote(source, safe='')}/{quote(id_, safe='')}"
    assert path.startswith("/events/%2Fmycontext%2Fsub/")
    entry = await server.get_json(path)
    assert entry["event"]["source"] == source
    assert entry["event"]["id"] == id_
    assert entry["event"]["data"] == {"v": 1}
    assert entry["revision"] == 1

    entry = await server.get_json(f"/events/{quote('/mycontext', safe='')}/{quote(id_, safe='')}")
    assert entry["event"]["data"] == {"v": 2}

    async with server.http.get(
        server.url + "/events/%2Fmycontext%2Fsub/nope", headers=server.admin
    ) as response:
        await error_of(response, 404, "not_found")


async def test_paging_with_after_and_limit(server: Running) -> None:
    events = [make_event({"i": i}, datacontenttype="application/json") for i in range(7)]
    response = await send_batch(server, events)
    assert response.status == 200
    offsets = [r["offset"] for r in (await response.json())["events"]]

    seen: list[int] = []
    after, pages = 0, 0
    while True:
        page = await server.get_json(f"/events?after={after}&limit=3")
        pages += 1
        if not page["events"]:
            assert page["nextAfter"] == after
            break
        assert len(page["events"]) <= 3
        seen.extend(e["offset"] for e in page["events"])
        assert page["nextAfter"] == page["events"][-1]["offset"]
        after = page["nextAfter"]
    assert seen == offsets
    assert pages == 4  # 3 + 3 + 1, then an empty page

    page = await server.get_json(f"/events?after={offsets[4]}&limit=100")
    assert [e["event"]["data"]["i"] for e in page["events"]] == [5, 6]

    for bad in ("limit=0", "limit=100000", "after=-1", "after=x"):
        async with server.http.get(f"{server.url}/events?{bad}", headers=bearer()) as r:
            await error_of(r, 400)
