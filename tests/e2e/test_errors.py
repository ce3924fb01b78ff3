"""Bad requests are refused with one JSON error shape and leave nothing behind; limits hold;
identity makes producer retries safe and re-sends with new content into new revisions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from multidict import CIMultiDict

from tests.conftest import ADMIN_KEY, Running
from tests.e2e.helpers import (
    BATCH,
    STRUCTURED,
    attributes_named,
    custom_server,
    error_of,
)


def ce(**attributes: Any) -> dict[str, Any]:
    event = {"specversion": "1.0", "id": "e-1", "source": "/errors", "type": "com.example.t"}
    event.update(attributes)
    return {k: v for k, v in event.items() if v is not None}


async def post_json(server: Running, body: Any, content_type: str) -> Any:
    return await server.post(
        "/events",
        data=json.dumps(body).encode(),
        headers={**server.admin, "content-type": content_type},
    )


def binary_headers(**overrides: str | None) -> dict[str, str]:
    headers: dict[str, str | None] = {
        "Authorization": f"Bearer {ADMIN_KEY}",
        "ce-specversion": "1.0",
        "ce-id": "b-1",
        "ce-source": "/errors",
        "ce-type": "com.example.t",
        "content-type": "application/json",
    }
    headers.update(overrides)
    return {k: v for k, v in headers.items() if v is not None}


# -- validation: nothing of a bad request is stored ---------------------------------------------


@pytest.mark.parametrize("missing", ["ce-id", "ce-source", "ce-type", "ce-specversion"])
async def test_binary_missing_required_attribute(server: Running, missing: str) -> None:
    response = await server.post("/events", data=b"{}", headers=binary_headers(**{missing: None}))
    error = await error_of(response, 400, "invalid_event")
    assert missing.removeprefix("ce-") in attributes_named(error)
    assert await server.log() == []


async def test_binary_header_given_twice(server: Running) -> None:
    headers = CIMultiDict(binary_headers())
    headers.add("ce-id", "b-2")
    error = await error_of(await server.post("/events", data=b"{}", headers=headers), 400)
    assert attributes_named(error) == {"id"}
    assert await server.log() == []


async def test_binary_raw_non_ascii_header_value(server: Running) -> None:
    """Header values must be percent-encoded ASCII; raw UTF-8 is refused, naming the attribute."""
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = "".join(f"{k}: {v}\r\n" for k, v in binary_headers().items())
    writer.write(
        b"POST /events HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n"
        + head.encode()
        + "ce-subject: caf\u00e9\r\n\r\n{}".encode()
    )
    await writer.drain()
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    status_line, _, rest = raw.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 400 Bad Request", raw
    error = json.loads(rest.partition(b"\r\n\r\n")[2])["error"]
    assert attributes_named(error) == {"subject"}
    assert await server.log() == []


@pytest.mark.parametrize("missing", ["id", "source", "type", "specversion"])
async def test_structured_missing_required_attribute(server: Running, missing: str) -> None:
    response = await post_json(server, ce(**{missing: None}), STRUCTURED)
    error = await error_of(response, 400, "invalid_event")
    assert missing in attributes_named(error)
    assert await server.log() == []


@pytest.mark.parametrize("name", ["myExt", "MYEXT", "my_ext", "my-ext"])
async def test_structured_extension_names_must_be_lower_case_alphanumeric(
    server: Running, name: str
) -> None:
    response = await post_json(server, ce(**{name: "v"}), STRUCTURED)
    error = await error_of(response, 400, "invalid_event")
    assert name in attributes_named(error)
    assert await server.log() == []


async def test_structured_with_both_data_and_data_base64(server: Running) -> None:
    response = await post_json(server, ce(data={"a": 1}, data_base64="AAEC"), STRUCTURED)
    error = await error_of(response, 400, "invalid_event")
    assert attributes_named(error) & {"data", "data_base64"}
    assert await server.log() == []


@pytest.mark.parametrize(
    ("body", "attribute"),
    [
        (ce(time="yesterday"), "time"),
        (ce(time="2026-02-30T10:00:00Z"), "time"),
        (ce(specversion="0.3"), "specversion"),
        (ce(id=""), "id"),
        (ce(id=7), "id"),
        (ce(data_base64="not base64!"), "data_base64"),
        (ce(subject="line\nbreak"), "subject"),
        (ce(ext={"nested": True}), "ext"),
        (ce(big=2**40), "big"),
    ],
    ids=[
        "time-word",
        "time-feb-30",
        "specversion",
        "empty-id",
        "int-id",
        "bad-base64",
        "control-char",
        "object-extension",
        "int-over-32-bits",
    ],
)
async def test_structured_invalid_values(server: Running, body: Any, attribute: str) -> None:
    error = await error_of(await post_json(server, body, STRUCTURED), 400, "invalid_event")
    assert attribute in attributes_named(error)
    assert await server.log() == []


async def test_not_json_at_all(server: Running) -> None:
    for content_type in (STRUCTURED, BATCH):
        response = await server.post(
            "/events", data=b"{nope", headers={**server.admin, "content-type": content_type}
        )
        await error_of(response, 400, "invalid_json")
    response = await server.post("/events", data=b"{nope", headers=binary_headers())
    error = await error_of(response, 400)
    assert "data" in attributes_named(error)
    assert await server.log() == []


async def test_batch_with_one_bad_event_stores_nothing(server: Running) -> None:
    batch: list[Any] = [ce(id=f"ok-{i}", data={"i": i}) for i in range(5)]
    batch[3] = ce(id="bad", type=None, data={"i": 3})
    response = await post_json(server, batch, BATCH)
    error = await error_of(response, 400, "invalid_event")
    assert {d.get("index") for d in error["details"]} == {3}
    assert "type" in attributes_named(error)
    assert await server.log() == []

    # Every bad event is reported, each with its own index.
    batch[1] = "not an object"
    batch[4] = ce(id="bad-too", Upper="x")
    error = await error_of(await post_json(server, batch, BATCH), 400, "invalid_event")
    assert {d.get("index") for d in error["details"]} == {1, 3, 4}
    assert await server.log() == []

    # Fixed, the same batch goes in whole.
    batch = [ce(id=f"ok-{i}", data={"i": i}) for i in range(5)]
    assert (await post_json(server, batch, BATCH)).status == 200
    assert len(await server.log()) == 5


async def test_batch_must_be_an_array(server: Running) -> None:
    await error_of(await post_json(server, ce(), BATCH), 400)
    assert await server.log() == []


# -- HTTP-level limits --------------------------------------------------------------------------


async def test_chunked_body_without_content_length_is_411(server: Running) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"specversion": "1.0", "id": "c-1", '
        yield b'"source": "/chunked", "type": "t"}'

    response = await server.post(
        "/events", data=chunks(), headers={**server.admin, "content-type": STRUCTURED}
    )
    assert response.request_info.headers.get("Transfer-Encoding") == "chunked"
    await error_of(response, 411, "length_required")

    response = await server.post(
        "/api/ingestion/event/batch",
        data=chunks(),
        headers={**server.admin, "content-type": BATCH},
    )
    await error_of(response, 411, "length_required")
    assert await server.log() == []


async def test_body_over_max_body_bytes_is_413(tmp_path: Path) -> None:
    async with custom_server(tmp_path, max_body_bytes=1024) as server:
        big = ce(data={"pad": "x" * 2000})
        response = await post_json(server, big, STRUCTURED)
        await error_of(response, 413, "payload_too_large")
        response = await server.post(
            "/events",
            data=b"x" * 1025,
            headers=binary_headers(**{"content-type": "application/octet-stream"}),
        )
        await error_of(response, 413, "payload_too_large")
        assert await server.log() == []
        # Just under the limit is fine.
        small = ce(data={"pad": "x" * 100})
        assert (await post_json(server, small, STRUCTURED)).status == 200


async def test_batch_over_max_batch_events_is_413(tmp_path: Path) -> None:
    async with custom_server(tmp_path, max_batch_events=3) as server:
        batch = [ce(id=f"m-{i}") for i in range(4)]
        await error_of(await post_json(server, batch, BATCH), 413, "payload_too_large")
        assert await server.log() == []
        assert (await post_json(server, batch[:3], BATCH)).status == 200


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/json",
        "application/cloudevents+xml",
        "application/cloudevents-batch+xml",
        None,
    ],
)
async def test_unknown_content_type_without_ce_headers_is_415(
    server: Running, content_type: str | None
) -> None:
    headers = dict(server.admin)
    if content_type is not None:
        headers["content-type"] = content_type
    response = await server.post(
        "/events",
        data=json.dumps(ce()).encode(),
        headers=headers,
        skip_auto_headers=("Content-Type",),
    )
    await error_of(response, 415, "unsupported_media_type")
    assert await server.log() == []


async def _hold_an_ingest_open(url: str) -> asyncio.StreamWriter:
    """Send headers promising a large body and only part of it: the request stays in flight."""
    host, port = url.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        (
            "POST /events HTTP/1.1\r\n"
            f"Host: {host}\r\n"
            f"Authorization: Bearer {ADMIN_KEY}\r\n"
            f"Content-Type: {STRUCTURED}\r\n"
            "Content-Length: 100000\r\n"
            "\r\n"
            '{"specversion": "1.0", "id": "held", '
        ).encode()
    )
    await writer.drain()
    return writer


async def test_over_max_concurrent_ingests_is_429_with_retry_after(tmp_path: Path) -> None:
    async with custom_server(tmp_path, max_concurrent_ingests=1, retry_after_seconds=3) as server:
        writer = await _hold_an_ingest_open(server.url)
        try:
            # The held request is admitted asynchronously: probe with an invalid event, which
            # stores nothing whichever answer comes back, until the slot is seen taken.
            async with asyncio.timeout(5):
                while True:
                    response = await post_json(server, ce(type=None), STRUCTURED)
                    if response.status == 429:
                        break
                    await error_of(response, 400)
                    await asyncio.sleep(0.01)
            error = await error_of(response, 429, "too_many_requests")
            assert response.headers["Retry-After"] == "3"
            assert error["message"]

            response = await server.post(
                "/api/ingestion/event/batch",
                data=json.dumps([ce(traceid="t")]).encode(),
                headers={**server.admin, "content-type": BATCH},
            )
            await error_of(response, 429, "too_many_requests")
            assert response.headers["Retry-After"] == "3"
            # Reads are not ingests: they still work.
            assert await server.log() == []
        finally:
            writer.close()
            await writer.wait_closed()

        # Once the held request is gone, its slot is free again.
        for _ in range(500):
            response = await post_json(server, ce(), STRUCTURED)
            if response.status != 429:
                break
            await asyncio.sleep(0.01)
        assert response.status == 200, await response.text()
        assert len(await server.log()) == 1


# -- routes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nope", 404),
        ("POST", "/nope", 404),
        ("GET", "/events/only-one-segment", 404),
        ("GET", "/events/a/b/c", 404),
        ("GET", "/api/ingestion/nope", 404),
        ("PUT", "/events", 405),
        ("DELETE", "/events", 405),
    ],
)
async def test_unknown_routes_answer_in_the_error_shape(
    server: Running, method: str, path: str, status: int
) -> None:
    async with server.http.request(method, server.url + path, headers=server.admin) as response:
        await error_of(response, status)


# -- identity -----------------------------------------------------------------------------------


async def test_identical_resend_is_a_duplicate_and_stored_once(server: Running) -> None:
    event = ce(id="dup-1", data={"a": 1}, traceid="t1")
    first = await post_json(server, event, STRUCTURED)
    assert first.status == 200
    (receipt,) = (await first.json())["events"]
    assert receipt["duplicate"] is False and receipt["revision"] == 1

    # Re-sent, even with the JSON written differently, it is the same event.
    respelled = json.dumps(dict(reversed(list(event.items()))), indent=2).encode()
    for body in (json.dumps(event).encode(), respelled):
        again = await server.post(
            "/events", data=body, headers={**server.admin, "content-type": STRUCTURED}
        )
        assert again.status == 200
        (dup,) = (await again.json())["events"]
        assert dup == {**receipt, "duplicate": True}
    assert len(await server.log()) == 1

    # A binary-mode re-send of an event first sent in binary mode is a duplicate too.
    headers = binary_headers(**{"ce-id": "dup-2"})
    for expected in (False, True, True):
        response = await server.post("/events", data=b'{"k": 1}', headers=headers)
        assert (await response.json())["events"][0]["duplicate"] is expected
    assert len(await server.log()) == 2


async def test_changed_content_is_a_new_revision(server: Running) -> None:
    first = ce(id="rev-1", data={"v": 1})
    second = ce(id="rev-1", data={"v": 2})
    assert (await post_json(server, first, STRUCTURED)).status == 200
    response = await post_json(server, second, STRUCTURED)
    (receipt,) = (await response.json())["events"]
    assert receipt["revision"] == 2 and receipt["duplicate"] is False

    latest = await server.get_json("/events/%2Ferrors/rev-1")
    assert latest["revision"] == 2
    assert latest["event"]["data"] == {"v": 2}
    assert latest["offset"] == receipt["offset"]

    log = await server.log()
    assert [(e["revision"], e["event"]["data"]) for e in log] == [(1, {"v": 1}), (2, {"v": 2})]

    # Re-sending the old content is a change again (revision 3), not a duplicate of revision 1.
    response = await post_json(server, first, STRUCTURED)
    (receipt,) = (await response.json())["events"]
    assert receipt["revision"] == 3 and receipt["duplicate"] is False
    # And re-sending the latest is a duplicate of it.
    response = await post_json(server, first, STRUCTURED)
    assert (await response.json())["events"][0] == {**receipt, "duplicate": True}
    assert len(await server.log()) == 3

    # Only the attributes changing counts as a change too.
    response = await post_json(server, {**first, "subject": "s"}, STRUCTURED)
    assert (await response.json())["events"][0]["revision"] == 4


async def test_a_body_slower_than_body_timeout_is_408_and_frees_its_slot(tmp_path: Path) -> None:
    async with custom_server(tmp_path, max_concurrent_ingests=1, body_timeout=0.3) as server:
        host, port = server.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            (
                "POST /events HTTP/1.1\r\n"
                f"Host: {host}\r\nAuthorization: Bearer {ADMIN_KEY}\r\n"
                f"Content-Type: {STRUCTURED}\r\nContent-Length: 1000\r\n\r\n"
                '{"specversion": "1.0", '
            ).encode()
        )
        await writer.drain()
        try:
            async with asyncio.timeout(5):
                status_line = await reader.readline()
            assert status_line.startswith(b"HTTP/1.1 408"), status_line
            response = await post_json(server, ce(), STRUCTURED)
            assert response.status == 200, "the slow request's slot is free again"
        finally:
            writer.close()
            await writer.wait_closed()
        assert len(await server.log()) == 1
