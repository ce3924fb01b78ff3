"""Connection limits (SPEC §8), against the real server process over raw sockets on 127.0.0.1:
header_timeout, max_header_bytes, keepalive_timeout, max_connections with a low RLIMIT_NOFILE,
and the HTTP layer's own errors in the JSON shape."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.conftest import ADMIN_KEY
from tests.e2e.helpers import ServerProcess

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n"


@contextlib.asynccontextmanager
async def hub(
    tmp_path: Path,
    env: Mapping[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> AsyncIterator[ServerProcess]:
    process = ServerProcess(tmp_path / "hub.db", tmp_path / "hub.log", env, preexec_fn)
    try:
        async with aiohttp.ClientSession() as http:
            await process.ready(http)
        yield process
    finally:
        process.close()


async def connect(process: ServerProcess) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", process.port)


async def response(reader: asyncio.StreamReader, within: float = 3.0) -> tuple[int, bytes, bytes]:
    """One HTTP/1.1 response with a Content-Length: (status, raw head, body)."""
    async with asyncio.timeout(within):
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await reader.readexactly(length)
    return int(head.split(b" ")[1]), head, body


def assert_error(head: bytes, body: bytes, code: str) -> None:
    """The one JSON error shape, and the connection announced closed."""
    assert b"content-type: application/json" in head.lower(), head
    assert b"connection: close" in head.lower(), head
    error = orjson.loads(body)["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert error["code"] == code, error
    assert error["message"] and error["details"] == [], error


async def closed(reader: asyncio.StreamReader, within: float) -> float:
    """Seconds until the server closes the connection; fails after ``within``."""
    start = time.monotonic()
    async with asyncio.timeout(within):
        while True:
            try:
                if not await reader.read(65536):
                    break
            except ConnectionResetError:
                break
    return time.monotonic() - start


async def healthz_seconds(url: str) -> float:
    start = time.monotonic()
    async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as reply:
        assert reply.status == 200
    return time.monotonic() - start


# -- header_timeout -----------------------------------------------------------------------------


async def test_a_head_that_does_not_arrive_in_time_is_answered_408_and_closed(
    tmp_path: Path,
) -> None:
    async with hub(tmp_path, {"EVENTHUB_HEADER_TIMEOUT": "0.5"}) as process:
        silent = await connect(process)
        half, half_writer = await connect(process)
        half_writer.write(b"POST /events HTTP/1.1\r\nHost: hub\r\nContent-Type: app")
        trickle, trickle_writer = await connect(process)
        start = time.monotonic()

        # A client that sends a byte every 0.1 s does not reset the clock (slowloris).
        async def drip() -> None:
            with contextlib.suppress(ConnectionError):
                for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 100:
                    trickle_writer.write(bytes([byte]))
                    await trickle_writer.drain()
                    await asyncio.sleep(0.1)

        dripping = asyncio.create_task(drip())
        for reader in (silent[0], half, trickle):
            status, head, body = await response(reader)
            assert status == 408
            assert_error(head, body, "request_timeout")
            await closed(reader, within=1)
        assert time.monotonic() - start < 2.5
        dripping.cancel()

        # Between requests on a keep-alive connection, the next head gets the same limit
        # once its first byte arrives.
        reader, writer = await connect(process)
        writer.write(HEALTHZ)
        assert (await response(reader))[0] == 200
        writer.write(b"GET /healthz HTTP/1.1\r\n")
        status, head, body = await response(reader)
        assert status == 408
        assert_error(head, body, "request_timeout")
        for _, w in (silent, (half, half_writer), (trickle, trickle_writer), (reader, writer)):
            w.close()


# -- keepalive_timeout --------------------------------------------------------------------------


async def test_an_idle_keepalive_connection_closes_after_keepalive_timeout(tmp_path: Path) -> None:
    async with hub(tmp_path, {"EVENTHUB_KEEPALIVE_TIMEOUT": "0.5"}) as process:
        reader, writer = await connect(process)
        writer.write(HEALTHZ)
        assert (await response(reader))[0] == 200
        idle = await closed(reader, within=3)
        assert 0.3 < idle < 2.0, idle
        writer.close()


async def test_keepalive_timeout_counts_from_the_last_answer(tmp_path: Path) -> None:
    """The connection's one keep-alive timer (api/_protocol.py) fires while requests keep
    coming: it must wait out the rest of the idle time, not close a connection that was idle
    less than ``keepalive_timeout``; once the requests stop, the connection closes on time."""
    async with hub(tmp_path, {"EVENTHUB_KEEPALIVE_TIMEOUT": "0.5"}) as process:
        reader, writer = await connect(process)
        start = time.monotonic()
        while time.monotonic() - start < 1.3:  # past two timeouts, never 0.5 s idle
            writer.write(HEALTHZ)
            assert (await response(reader))[0] == 200
            await asyncio.sleep(0.3)  # the client's pace: not a synchronisation
        writer.write(HEALTHZ)
        assert (await response(reader))[0] == 200
        idle = await closed(reader, within=3)
        assert 0.3 < idle < 2.0, idle
        writer.close()


async def test_blank_lines_between_requests_do_not_keep_a_connection_open(
    tmp_path: Path,
) -> None:
    """Blank lines between requests (RFC 9112 §2.2 lets a server ignore them) start no head:
    they must not hold an idle keep-alive connection open past ``keepalive_timeout``, with
    neither the keep-alive timer nor ``header_timeout`` watching it."""
    async with hub(tmp_path, {"EVENTHUB_KEEPALIVE_TIMEOUT": "0.5"}) as process:
        reader, writer = await connect(process)
        writer.write(HEALTHZ)
        assert (await response(reader))[0] == 200
        writer.write(b"\r\n")
        idle = await closed(reader, within=5)
        assert idle < 2.0, idle
        writer.close()


# -- max_header_bytes ---------------------------------------------------------------------------


async def test_a_head_over_max_header_bytes_is_answered_431(tmp_path: Path) -> None:
    async with hub(tmp_path, {"EVENTHUB_MAX_HEADER_BYTES": "8192"}) as process:
        # Just under the limit passes.
        reader, writer = await connect(process)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: hub\r\nX-Pad: " + b"a" * 7000 + b"\r\n\r\n")
        assert (await response(reader))[0] == 200
        writer.close()
        # Over it, in one write (one read for the server) and across many small ones.
        for piece in (100_000, 1000):
            reader, writer = await connect(process)
            head = b"GET /healthz HTTP/1.1\r\nHost: hub\r\nX-Pad: " + b"a" * 20_000 + b"\r\n\r\n"
            for i in range(0, len(head), piece):
                writer.write(head[i : i + piece])
                await writer.drain()
            status, raw, body = await response(reader)
            assert status == 431
            assert_error(raw, body, "request_header_fields_too_large")
            await closed(reader, within=3)
            writer.close()
        # Many headers, each small, count too.
        reader, writer = await connect(process)
        writer.write(HEALTHZ[:-2] + b"".join(b"X-H%d: v\r\n" % i for i in range(1000)) + b"\r\n")
        status, raw, body = await response(reader)
        assert status == 431
        writer.close()


async def test_pipelined_requests_and_large_bodies_are_not_mistaken_for_large_heads(
    tmp_path: Path,
) -> None:
    async with hub(tmp_path, {"EVENTHUB_MAX_HEADER_BYTES": "8192"}) as process:
        reader, writer = await connect(process)
        # Three requests in one write: each answered, in order, on the same connection.
        writer.write(HEALTHZ * 3)
        for _ in range(3):
            assert (await response(reader))[0] == 200
        # A 300 KB body in the same writes as its head, then a pipelined request behind it.
        data = b'{"pad": "' + b"a" * 300_000 + b'"}'
        head = (
            b"POST /events HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer "
            + ADMIN_KEY.encode()
            + b"\r\nce-specversion: 1.0\r\nce-id: big-1\r\nce-source: /test\r\nce-type: t"
            + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(data)
        )
        writer.write(head + data + HEALTHZ)
        status, _, body = await response(reader)
        assert status < 300, (status, body)
        assert (await response(reader))[0] == 200
        writer.close()


async def test_a_huge_streamed_header_is_cut_off_and_the_loop_stays_responsive(
    tmp_path: Path,
) -> None:
    async with hub(tmp_path) as process:
        _, writer = await connect(process)
        sent = 0
        total = 64 * 1024 * 1024
        cut_off = asyncio.Event()

        async def stream() -> None:
            # One endless header value, as fast as the server takes it.
            nonlocal sent
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: hub\r\nX-Huge: ")
            chunk = b"a" * 65536
            try:
                while sent < total:
                    writer.write(chunk)
                    await writer.drain()
                    sent += len(chunk)
            except ConnectionError:
                cut_off.set()

        streaming = asyncio.create_task(stream())
        slowest = max([await healthz_seconds(process.url) for _ in range(20)])
        async with asyncio.timeout(5):
            await cut_off.wait()
        await streaming
        # The server stopped reading after max_header_bytes plus what a lingering close drains.
        assert sent < 8 * 1024 * 1024, sent
        assert slowest < 1.0, slowest
        writer.close()


# -- malformed requests -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\x01 / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: hub\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n",
        b"POST /events HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    ],
)
async def test_a_malformed_request_is_answered_400_in_json(
    tmp_path: Path, request_bytes: bytes
) -> None:
    async with hub(tmp_path) as process:
        reader, writer = await connect(process)
        writer.write(request_bytes)
        status, head, body = await response(reader)
        assert status == 400
        assert_error(head, body, "invalid_request")
        writer.close()


# -- max_connections ----------------------------------------------------------------------------


async def test_at_max_connections_the_longest_idle_connection_makes_room(tmp_path: Path) -> None:
    env = {
        "EVENTHUB_MAX_CONNECTIONS": "4",
        "EVENTHUB_KEEPALIVE_TIMEOUT": "30",
        "EVENTHUB_HEADER_TIMEOUT": "30",
    }
    async with hub(tmp_path, env) as process:
        # readiness polling left no connection behind: aiohttp's session is closed
        idle = []
        for _ in range(4):
            reader, writer = await connect(process)
            writer.write(HEALTHZ)
            assert (await response(reader))[0] == 200
            idle.append((reader, writer))
        newcomer = await connect(process)
        newcomer[1].write(HEALTHZ)
        assert (await response(newcomer[0]))[0] == 200
        # The oldest idle one was closed for it; the others still serve.
        await closed(idle[0][0], within=3)
        for reader, writer in idle[1:]:
            writer.write(HEALTHZ)
            assert (await response(reader))[0] == 200
        for _, writer in [*idle, newcomer]:
            writer.close()


async def test_at_max_connections_with_every_request_in_progress_a_new_one_is_closed(
    tmp_path: Path,
) -> None:
    env = {"EVENTHUB_MAX_CONNECTIONS": "3", "EVENTHUB_BODY_TIMEOUT": "30"}
    async with hub(tmp_path, env) as process:
        busy = []
        for _ in range(3):
            reader, writer = await connect(process)
            # A request whose body is still to come: in progress, so not to be closed. The
            # 100 Continue proves the hub has read the head and waits for the body.
            writer.write(
                b"POST /events HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer "
                + ADMIN_KEY.encode()
                + b"\r\nContent-Type: application/cloudevents+json\r\nContent-Length: 100"
                + b"\r\nExpect: 100-continue\r\n\r\n"
            )
            async with asyncio.timeout(3):
                assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b"{")
            busy.append((reader, writer))
        reader, writer = await connect(process)
        writer.write(HEALTHZ)
        assert await closed(reader, within=3) < 1.0
        for r, w in busy:
            assert not r.at_eof()
            w.close()
        writer.close()


# -- file descriptors ---------------------------------------------------------------------------


def _low_nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


async def test_idle_sockets_past_the_open_file_limit_do_not_lock_a_client_out(
    tmp_path: Path,
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1300:
        if hard != resource.RLIM_INFINITY and hard < 1300:
            pytest.skip("this test needs 1,300 open files in the test process")
        resource.setrlimit(resource.RLIMIT_NOFILE, (1300, hard))
    async with hub(tmp_path, preexec_fn=_low_nofile) as process:
        sockets: list[socket.socket] = []
        try:
            for _ in range(1100):
                s = socket.socket()
                s.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    s.connect(("127.0.0.1", process.port))
                sockets.append(s)
            # The real client comes last: the newest connection, never the one closed.
            async with asyncio.timeout(5):
                assert await healthz_seconds(process.url) < 5
        finally:
            for s in sockets:
                s.close()
        assert "max_connections lowered" in process.output()


def test_the_connection_cap_fits_the_open_file_limit() -> None:
    from eventhub.api import _fds

    # Enough already: unchanged.
    assert _fds.plan(2048, 256, 65536, 65536) == _fds.Budget(65536, 2048)
    # Raised up to what is needed, within the hard limit.
    assert _fds.plan(2048, 256, 1024, 1_000_000) == _fds.Budget(2048 + 256 + _fds.RESERVE, 2048)
    assert _fds.plan(2048, 256, 1024, None).soft_limit == 2048 + 256 + _fds.RESERVE
    # Not enough even at the hard limit: the cap is lowered to fit.
    assert _fds.plan(2048, 256, 1024, 1024) == _fds.Budget(1024, 1024 - 256 - _fds.RESERVE)
    assert _fds.plan(2048, 256, 1024, 2000) == _fds.Budget(2000, 2000 - 256 - _fds.RESERVE)
    # Never below one connection.
    assert _fds.plan(10, 256, 64, 64).max_connections == 1


async def test_upgrade_requests_are_served_as_plain_http_without_flooding_the_log(
    tmp_path: Path,
) -> None:
    # uvicorn logs two warnings for every request naming an Upgrade: anyone, without a key,
    # could fill the hub's log with them. Fails on the code before: the log holds them.
    async with hub(tmp_path) as process:
        upgrade = (
            b"GET /healthz HTTP/1.1\r\nHost: hub\r\nConnection: Upgrade\r\n"
            b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        for _ in range(20):
            reader, writer = await connect(process)
            writer.write(upgrade)
            status, _, body = await response(reader)
            assert status == 200 and orjson.loads(body) == {"status": "ok"}
            writer.close()
        output = process.output()
    assert "upgrade" not in output.lower(), output
