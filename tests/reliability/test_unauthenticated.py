"""SPEC §8: nothing unauthenticated costs more than a header read, and unauthenticated load never
takes an ingest slot from keyed producers. A request without a key is refused from its headers
unless it names a registered source and carries a signature; then it takes a slot of its own,
smaller pool, and its body is checked against the source's secret before it is parsed."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from tests.conftest import Running
from tests.e2e.helpers import STRUCTURED, ServerProcess, bearer, custom_server, error_of, hmac_hex
from tests.reliability.ingest_raw import Answer, head, read_answer

SECRET = "a-source-secret-of-16+"
FAKE_SIGNATURE = "00" * 32


def event(source: str, id_: str, **extra: Any) -> bytes:
    return json.dumps(
        {"specversion": "1.0", "id": id_, "source": source, "type": "com.example.t", **extra}
    ).encode()


def port_of(server: Running) -> int:
    return int(server.url.rsplit(":", 1)[1])


async def put_source(server: Running, name: str) -> None:
    async with server.http.put(
        f"{server.url}/admin/sources/{quote(name, safe='')}",
        json={"secret": SECRET},
        headers=server.admin,
    ) as response:
        assert response.status == 200, await response.text()


class HeadOnly:
    """A connection that has sent a request's head and keeps its body back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, raw_head: bytes) -> HeadOnly:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw_head)
        await writer.drain()
        return cls(reader, writer)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def test_a_thousand_keyless_heads_are_401_at_once_and_starve_no_keyed_producer(
    tmp_path: Path,
) -> None:
    # Fails on the old code: each keyless signed request took one of the keyed slots and waited
    # for its body (body_timeout), so the keyed producer got 429 and the heads no answer.
    async with custom_server(tmp_path, max_concurrent_ingests=64, body_timeout=60.0) as server:
        raw = head(
            "POST",
            "/events",
            {"Content-Type": STRUCTURED, "X-Eventhub-Hmac": FAKE_SIGNATURE},
            length=1000,
        )
        heads: list[HeadOnly] = []
        try:
            for _ in range(10):
                heads += await asyncio.gather(
                    *(HeadOnly.open(port_of(server), raw) for _ in range(100))
                )
            async with asyncio.timeout(10):  # well before body_timeout: nobody waits for bodies
                answers = await asyncio.gather(*(read_answer(h.reader) for h in heads))
            assert {a.status for a in answers} == {401}
            assert b"X-Eventhub-Source" in answers[0].body

            # All thousand connections are still open, bodies unsent; a keyed producer publishes.
            response = await server.post(
                "/events",
                data=event("/keyed", "k-1"),
                headers={"content-type": STRUCTURED, **bearer()},
            )
            assert response.status == 200, await response.text()
        finally:
            await asyncio.gather(*(h.close() for h in heads))
        assert [e["event"]["id"] for e in await server.log()] == ["k-1"]


async def test_keyless_requests_naming_a_source_have_their_own_pool(tmp_path: Path) -> None:
    # Fails on the old code: the keyless requests waiting for their bodies held keyed slots.
    async with custom_server(
        tmp_path, max_concurrent_ingests=4, max_unauthenticated_ingests=4
    ) as server:
        await put_source(server, "/signed")
        bodies = [event("/signed", f"s-{i}") for i in range(4)]
        waiting = [
            await HeadOnly.open(
                port_of(server),
                head(
                    "POST",
                    "/events",
                    {
                        "Content-Type": STRUCTURED,
                        "X-Eventhub-Source": "/signed",
                        "X-Eventhub-Hmac": hmac_hex(SECRET, body),
                    },
                    length=len(body),
                ),
            )
            for body in bodies
        ]
        try:
            extra = event("/signed", "s-extra")
            signed = {
                "content-type": STRUCTURED,
                "x-eventhub-source": "/signed",
                "x-eventhub-hmac": hmac_hex(SECRET, extra),
            }
            # The four heads take the four keyless slots as they arrive: a fifth is 429.
            async with asyncio.timeout(10):
                while True:
                    response = await server.post("/events", data=extra, headers=signed)
                    if response.status == 429:
                        break
                    assert response.status == 200, await response.text()
                    await asyncio.sleep(0.01)

            # Keyed producers keep every one of their slots.
            keyed = await asyncio.gather(
                *(
                    server.post(
                        "/events",
                        data=event("/keyed", f"k-{i}"),
                        headers={"content-type": STRUCTURED, **bearer()},
                    )
                    for i in range(4)
                )
            )
            assert [r.status for r in keyed] == [200] * 4

            # The bodies arrive, signed: each is stored.
            for connection, body in zip(waiting, bodies, strict=True):
                connection.writer.write(body)
            answers: list[Answer] = await asyncio.gather(*(read_answer(c.reader) for c in waiting))
            assert [a.status for a in answers] == [200] * 4
        finally:
            await asyncio.gather(*(c.close() for c in waiting))
        ids = {e["event"]["id"] for e in await server.log()}
        assert {f"s-{i}" for i in range(4)} | {f"k-{i}" for i in range(4)} <= ids


async def test_a_keyless_signature_is_checked_before_anything_is_stored(server: Running) -> None:
    await put_source(server, "/signed")
    body = event("/signed", "w-1")
    named = {"content-type": STRUCTURED, "x-eventhub-source": "/signed"}

    wrong = {**named, "x-eventhub-hmac": hmac_hex("not-the-secret-at-all", body)}
    await error_of(await server.post("/events", data=body, headers=wrong), 401, "unauthorized")
    unsigned = await server.post("/events", data=body, headers=named)
    await error_of(unsigned, 401, "unauthorized")
    # A source that is not registered (so has no secret) cannot be named.
    other = {**wrong, "x-eventhub-source": "/not-registered"}
    await error_of(await server.post("/events", data=body, headers=other), 401, "unauthorized")
    assert await server.log() == []

    right = {**named, "x-eventhub-hmac": hmac_hex(SECRET, body)}
    response = await server.post("/events", data=body, headers=right)
    assert response.status == 200, await response.text()

    # Signed for /signed, but an event of another source: 403, nothing of the batch stored.
    batch = b"[" + event("/signed", "w-2") + b"," + event("/elsewhere", "w-3") + b"]"
    response = await server.post(
        "/events",
        data=batch,
        headers={
            "content-type": "application/cloudevents-batch+json",
            "x-eventhub-source": "/signed",
            "x-eventhub-hmac": hmac_hex(SECRET, batch),
        },
    )
    error = await error_of(response, 403, "forbidden")
    assert "/elsewhere" in error["message"]

    # Binary mode names its source with ce-source.
    binary = {
        "ce-specversion": "1.0",
        "ce-id": "w-4",
        "ce-source": "/signed",
        "ce-type": "com.example.t",
        "content-type": "application/json",
    }
    data = b'{"n": 1}'
    response = await server.post(
        "/events", data=data, headers={**binary, "x-eventhub-hmac": hmac_hex(SECRET, data)}
    )
    assert response.status == 200, await response.text()
    assert [e["event"]["id"] for e in await server.log()] == ["w-1", "w-4"]


def _peak_rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


async def _upload(port: int, size: int) -> int:
    """A keyless, 'signed' request with a ``size``-byte body, sent until the hub answers."""
    raw = head(
        "POST",
        "/events",
        {"Content-Type": STRUCTURED, "X-Eventhub-Hmac": FAKE_SIGNATURE},
        length=size,
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def pump() -> None:
        chunk = b" " * 65536
        with contextlib.suppress(ConnectionError):
            for _ in range(size // len(chunk)):
                writer.write(chunk)
                await writer.drain()

    writer.write(raw)
    pumping = asyncio.create_task(pump())
    try:
        return (await read_answer(reader)).status
    finally:
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pumping
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_keyless_ten_mib_bodies_do_not_raise_the_hubs_memory(tmp_path: Path) -> None:
    # Fails on the old code: every body was read whole (and parsed) before its signature was
    # looked at; 60 at once took the hub from about 50 MB to over 600 MB.
    hub = ServerProcess(tmp_path / "eventhub.db", tmp_path / "hub.log")
    try:
        async with aiohttp.ClientSession() as http:
            await hub.ready(http)
            rss_before, _ = _peak_rss_kib(hub.process.pid)
            async with asyncio.timeout(60):
                statuses = await asyncio.gather(
                    *(_upload(hub.port, 10 * 1024 * 1024) for _ in range(60))
                )
            _, peak = _peak_rss_kib(hub.process.pid)
        grown_mib = (peak - rss_before) / 1024
        assert grown_mib < 64, f"peak RSS grew by {grown_mib:.0f} MiB"
        assert set(statuses) == {401}
    finally:
        hub.close()


async def test_keyless_bodies_for_a_named_source_are_refused_past_its_limit_unread(
    tmp_path: Path,
) -> None:
    # A source's name is no secret: without a key, naming one is enough to have a body read,
    # so that read is bounded by the source's own limit (max_unauthenticated_body_bytes by
    # default), and the rest of the body is never read.
    hub = ServerProcess(
        tmp_path / "eventhub.db",
        tmp_path / "hub.log",
        env={"EVENTHUB_MAX_UNAUTHENTICATED_BODY_BYTES": "65536"},
    )
    try:
        async with aiohttp.ClientSession() as http:
            await hub.ready(http)
            server = Running(hub.url, None, http, bearer())  # type: ignore[arg-type]
            await put_source(server, "/signed")

            big = event("/signed", "big", data="x" * 70_000)
            signed = {
                "content-type": STRUCTURED,
                "x-eventhub-source": "/signed",
                "x-eventhub-hmac": hmac_hex(SECRET, big),
            }
            response = await server.post("/events", data=big, headers=signed)
            error = await error_of(response, 413, "payload_too_large")
            assert "65536" in error["message"]
            # The same body with a key is within max_body_bytes.
            keyed = await server.post("/events", data=big, headers={**signed, **bearer()})
            assert keyed.status == 200, await keyed.text()

            # The source raises its own limit: the keyless request is read, checked, stored.
            async with http.put(
                f"{hub.url}/admin/sources/%2Fsigned",
                json={"maxBodyBytes": 200_000},
                headers=bearer(),
            ) as answer:
                assert answer.status == 200, await answer.text()
                assert (await answer.json())["maxBodyBytes"] == 200_000
            again = event("/signed", "big-2", data="x" * 70_000)
            signed["x-eventhub-hmac"] = hmac_hex(SECRET, again)
            response = await server.post("/events", data=again, headers=signed)
            assert response.status == 200, await response.text()

            # Sixty keyless 10 MiB bodies naming the registered source: each is 413 from its
            # head, and the hub holds none of them.
            raw_head = head(
                "POST",
                "/events",
                {
                    "Content-Type": STRUCTURED,
                    "X-Eventhub-Source": "/signed",
                    "X-Eventhub-Hmac": FAKE_SIGNATURE,
                },
                length=10 * 1024 * 1024,
            )
            rss_before, _ = _peak_rss_kib(hub.process.pid)
            heads = await asyncio.gather(*(HeadOnly.open(hub.port, raw_head) for _ in range(60)))
            try:
                async with asyncio.timeout(10):
                    answers = await asyncio.gather(*(read_answer(h.reader) for h in heads))
            finally:
                await asyncio.gather(*(h.close() for h in heads))
            assert {a.status for a in answers} == {413}
            _, peak = _peak_rss_kib(hub.process.pid)
            assert (peak - rss_before) / 1024 < 64
    finally:
        hub.close()
