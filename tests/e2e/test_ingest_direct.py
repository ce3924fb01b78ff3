"""``POST /events`` is answered by the HTTP protocol itself (api/_direct.py), not through
ASGI: what a client sees is what the ASGI way gives. A request whose target is in absolute
form (``POST http://host/events``) still takes the ASGI way, so the two can be compared."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from pathlib import Path

import pytest

from tests.conftest import ADMIN_KEY, Running
from tests.e2e.helpers import STRUCTURED, custom_server
from tests.e2e.test_metrics import scrape, value
from tests.reliability.ingest_raw import Answer, head, read_answer

_AUTH: dict[str, str | bytes] = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _event(event_id: str) -> bytes:
    return json.dumps(
        {"specversion": "1.0", "id": event_id, "source": "/direct", "type": "com.example.t"}
    ).encode()


def _port(server: Running) -> int:
    return int(server.url.rsplit(":", 1)[1])


def _post(target: str, body: bytes, **headers: str) -> bytes:
    return head("POST", target, {**_AUTH, "Content-Type": STRUCTURED, **headers}, len(body)) + body


@contextlib.asynccontextmanager
async def _connection(server: Running):  # type: ignore[no-untyped-def]
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(server))
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def _without_date(answer: Answer) -> bytes:
    return re.sub(rb"(?im)^date: .*\r\n", b"", answer.head)


async def test_the_direct_answer_is_the_asgi_answer(server: Running) -> None:
    async with _connection(server) as (reader, writer):
        writer.write(_post("/events", _event("d-1")))
        direct = await read_answer(reader)
        writer.write(_post(f"{server.url}/events", _event("d-2")))
        via_asgi = await read_answer(reader)
    assert direct.status == via_asgi.status == 200
    # Byte for byte the same head: status line, server, content-length, content-type.
    assert _without_date(direct) == _without_date(via_asgi)
    assert json.loads(direct.body)["events"][0]["id"] == "d-1"
    assert json.loads(via_asgi.body)["events"][0]["id"] == "d-2"
    # Errors too: an event without a type, 400 in the one error shape, either way.
    bad = json.dumps({"specversion": "1.0", "id": "x", "source": "/direct"}).encode()
    async with _connection(server) as (reader, writer):
        writer.write(_post("/events", bad))
        direct = await read_answer(reader)
        writer.write(_post(f"{server.url}/events", bad))
        via_asgi = await read_answer(reader)
    assert direct.status == via_asgi.status == 400
    assert _without_date(direct) == _without_date(via_asgi)
    assert direct.body == via_asgi.body


async def test_pipelined_requests_are_answered_in_order(server: Running) -> None:
    async with _connection(server) as (reader, writer):
        # Three requests in one write; the middle one goes the ASGI way (another route).
        writer.write(
            _post("/events", _event("p-1"))
            + head("GET", "/healthz", {})
            + _post("/events?x=1", _event("p-2"))
        )
        first, health, second = [await read_answer(reader) for _ in range(3)]
    assert first.status == 200 and json.loads(first.body)["events"][0]["id"] == "p-1"
    assert health.status == 200
    assert second.status == 200 and json.loads(second.body)["events"][0]["id"] == "p-2"
    assert [e["event"]["id"] for e in await server.log()] == ["p-1", "p-2"]


async def test_a_body_sent_after_100_continue(server: Running) -> None:
    body = _event("c-1")
    async with _connection(server) as (reader, writer):
        writer.write(
            head(
                "POST",
                "/events",
                {**_AUTH, "Content-Type": STRUCTURED, "Expect": "100-continue"},
                len(body),
            )
        )
        interim = await reader.readline()
        assert interim.startswith(b"HTTP/1.1 100 ")
        assert await reader.readline() == b"\r\n"
        # Sent in two parts: the endpoint reads a body still arriving.
        writer.write(body[:10])
        await writer.drain()
        await asyncio.sleep(0)
        writer.write(body[10:])
        answer = await read_answer(reader)
    assert answer.status == 200, answer.body
    assert json.loads(answer.body)["events"][0]["id"] == "c-1"


async def test_http_1_0_is_answered_and_closed(server: Running) -> None:
    body = _event("h-1")
    raw = _post("/events", body).replace(b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", 1)
    async with _connection(server) as (reader, writer):
        writer.write(raw)
        answer = await read_answer(reader)
        assert b"connection: close\r\n" in answer.head.lower()
        assert await reader.read() == b""  # closed by the server
    assert answer.status == 200


async def test_a_chunked_body_is_refused_as_before(server: Running) -> None:
    raw = head(
        "POST", "/events", {**_AUTH, "Content-Type": STRUCTURED, "Transfer-Encoding": "chunked"}
    )
    body = _event("k-1")
    async with _connection(server) as (reader, writer):
        writer.write(raw + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
        answer = await read_answer(reader)
    assert answer.status == 411
    assert json.loads(answer.body)["error"]["code"] == "length_required"
    assert await server.log() == []


async def test_head_on_events_still_takes_the_router(server: Running) -> None:
    async with _connection(server) as (reader, writer):
        writer.write(head("HEAD", "/events", _AUTH))
        status = await reader.readline()
    assert status.split()[1] in (b"200", b"204")


async def _both_ways(server: Running, request: bytes, absolute: bytes) -> tuple[Answer, Answer]:
    """The answer to ``request`` (the direct way) and to ``absolute`` (the same request in
    absolute form: the ASGI way), each on a connection of its own."""
    answers = []
    for raw in (request, absolute):
        async with _connection(server) as (reader, writer):
            writer.write(raw)
            answers.append(await read_answer(reader))
    return answers[0], answers[1]


async def test_hostile_requests_get_the_same_refusal_either_way(server: Running) -> None:
    """Probes as an attacker would send them, the direct way and the ASGI way: no key, a
    wrong key, a body declared past ``max_body_bytes`` (refused before it is read), a
    malformed body. Each is refused alike, and nothing is stored."""
    body = _event("h-1")
    url = f"{server.url}/events"
    big = str(server.hub.settings.max_body_bytes + 1)
    probes = {
        "no key": (
            head("POST", "/events", {"Content-Type": STRUCTURED}, len(body)) + body,
            head("POST", url, {"Content-Type": STRUCTURED}, len(body)) + body,
            401,
        ),
        "a wrong key": (
            _post("/events", body, Authorization="Bearer not-a-key-0123456789"),
            _post(url, body, Authorization="Bearer not-a-key-0123456789"),
            401,
        ),
        "a body past the limit": (
            head("POST", "/events", {**_AUTH, "Content-Type": STRUCTURED, "Content-Length": big}),
            head("POST", url, {**_AUTH, "Content-Type": STRUCTURED, "Content-Length": big}),
            413,
        ),
        "malformed JSON": (_post("/events", b"{not json"), _post(url, b"{not json"), 400),
    }
    for name, (direct_raw, asgi_raw, want) in probes.items():
        direct, via_asgi = await _both_ways(server, direct_raw, asgi_raw)
        assert direct.status == via_asgi.status == want, name
        assert json.loads(direct.body) == json.loads(via_asgi.body), name
    assert await server.log() == []


async def test_a_client_gone_before_the_commit_frees_its_slot(tmp_path: Path) -> None:
    """A request answered from the commit's callback (no task waits for it) whose client
    closes right after sending it: the event is committed all the same (it was accepted
    whole), nothing is written to the closed connection, and the admission slot comes back.
    With one slot, a slot kept would turn every later request into a 429."""
    async with custom_server(tmp_path, max_concurrent_ingests=1) as server:
        for n in range(10):
            _, writer = await asyncio.open_connection("127.0.0.1", _port(server))
            # Request and FIN in one go: the hub reads both before the commit (a thread hop).
            writer.write(_post("/events", _event(f"gone-{n}")))
            writer.close()
            await writer.wait_closed()
            # Stored: so it was admitted, into the one slot the one before had to give back.
            async with asyncio.timeout(5):
                while len(await server.log()) < n + 1:
                    await asyncio.sleep(0.01)
        async with asyncio.timeout(5):
            while True:  # the last slot comes back as its commit's callback runs
                async with _connection(server) as (reader, writer):
                    writer.write(_post("/events", _event("after")))
                    answer = await read_answer(reader)
                if answer.status != 429:
                    break
                await asyncio.sleep(0.01)
        assert answer.status == 200, answer.body
        ids = sorted(e["event"]["id"] for e in await server.log())
        assert ids == sorted([*(f"gone-{n}" for n in range(10)), "after"])


async def test_a_body_in_a_later_read_than_its_head(server: Running) -> None:
    """The body is not there when the head completes: the request is served as a task
    that reads it (the callback way needs the whole body), with the same answer."""
    body = _event("late-1")
    async with _connection(server) as (reader, writer):
        writer.write(_post("/events", body)[: -len(body) // 2])
        await writer.drain()
        await asyncio.sleep(0.05)  # a separate read on the server's side; not a sync point
        writer.write(body[-len(body) // 2 :])
        answer = await read_answer(reader)
    assert answer.status == 200, answer.body
    assert json.loads(answer.body)["events"][0]["id"] == "late-1"


async def test_a_pipelined_second_event_waits_for_the_first(server: Running) -> None:
    """Two events in one write: the first is answered from its commit's callback, the
    second (queued behind it) only after it, in order, on one keep-alive connection."""
    async with _connection(server) as (reader, writer):
        writer.write(_post("/events", _event("q-1")) + _post("/events", _event("q-2")))
        first, second = [await read_answer(reader) for _ in range(2)]
        writer.write(_post("/events", _event("q-3")))
        third = await read_answer(reader)
    got = [json.loads(a.body)["events"][0] for a in (first, second, third)]
    assert [(a["id"], a["offset"]) for a in got] == [("q-1", 1), ("q-2", 2), ("q-3", 3)]


async def test_an_error_found_in_the_callback_keeps_the_connection(server: Running) -> None:
    """An event refused by validation (found with no task running) is answered in the error
    shape, and the connection serves the next request."""
    bad = json.dumps({"specversion": "1.0", "id": "x", "source": "/direct"}).encode()
    async with _connection(server) as (reader, writer):
        writer.write(_post("/events", bad))
        refused = await read_answer(reader)
        writer.write(_post("/events", _event("k-2")))
        accepted = await read_answer(reader)
    assert refused.status == 400
    assert json.loads(refused.body)["error"]["code"]
    assert accepted.status == 200, accepted.body
    assert [e["event"]["id"] for e in await server.log()] == ["k-2"]


async def test_the_callback_way_counts_and_logs_as_the_task_way(
    server: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """Requests in one write each (served from the protocol's callbacks): an accepted event,
    one refused by validation, one refused on its headers. Each is counted in /metrics by
    mode and outcome, in the latency histogram, and gets one access line with its status
    and who asked."""
    caplog.set_level(logging.INFO, logger="eventhub.access")
    bad = json.dumps({"specversion": "1.0", "id": "x", "source": "/direct"}).encode()
    requests = [
        _post("/events", _event("m-1")),
        _post("/events", bad),
        head("POST", "/events", {"Content-Type": STRUCTURED}, len(bad)) + bad,
    ]
    statuses = []
    for raw in requests:
        async with _connection(server) as (reader, writer):
            writer.write(raw)
            statuses.append((await read_answer(reader)).status)
    assert statuses == [200, 400, 401]
    samples = await scrape(server)
    for mode, outcome in (
        ("structured", "ok"),
        ("structured", "invalid_event"),
        ("unknown", "unauthorized"),
    ):
        labels = {"path": "/events", "mode": mode, "outcome": outcome}
        assert value(samples, "eventhub_ingest_requests_total", **labels) == 1, labels
    assert value(samples, "eventhub_ingest_duration_seconds_count", path="/events") == 3
    lines = [r.getMessage() for r in caplog.records if r.name == "eventhub.access"]
    posts = [line for line in lines if line.startswith("POST /events ")]
    assert [line.split()[2] for line in posts] == ["200", "400", "401"]
    assert [line.split()[-1] for line in posts] == ["key=env-admin", "key=env-admin", "key=-"]
