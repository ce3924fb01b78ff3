"""eventhub's HTTP/1.1 delivery client against scripted servers on 127.0.0.1: what it sends,
how it reads every way an answer can end, keep-alive reuse, time limits and TLS."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from eventhub.delivery import egress, http1, pool
from eventhub.delivery.sender import Sender

# The scripted servers listen on 127.0.0.1, which the default egress rules refuse.
LOOPBACK = egress.Rules.from_settings(["127.0.0.0/8"], only=True)

Reply = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]


class Scripted:
    """A server answering each request with the next reply of its script (the last repeats);
    it records every request and counts the connections it accepted."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.requests: list[bytes] = []
        self.connections = 0
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self, context: ssl.SSLContext | None = None) -> Scripted:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=context)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"{'https' if context else 'http'}://127.0.0.1:{port}/hook?x=1"
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
                await reply(request, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def send(raw: bytes, close: bool = False) -> Reply:
    async def reply(_: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(raw)
        await writer.drain()
        if close:
            writer.close()

    return reply


def in_pieces(*parts: bytes) -> Reply:
    async def reply(_: bytes, writer: asyncio.StreamWriter) -> None:
        for part in parts:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.02)

    return reply


def stall(seconds: float) -> Reply:
    async def reply(_: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(seconds)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    return reply


async def hang_up(_: bytes, writer: asyncio.StreamWriter) -> None:
    writer.close()


OK = send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


@pytest.fixture
async def client() -> AsyncIterator[pool.Pool]:
    p = pool.Pool(connect_timeout=1.0, total_timeout=0.5, max_idle=8, rules=LOOPBACK)
    await p.start()
    yield p
    await p.close()


async def serving(*replies: Reply) -> Scripted:
    return await Scripted(*replies).start()


async def post(p: pool.Pool, server: Scripted, **headers: str) -> http1.Answer:
    return await p.post(http1.target(server.url, {}), headers, b'{"n":1}')


# -- what goes on the wire ----------------------------------------------------------------------


async def test_the_request_carries_the_target_the_headers_and_the_body(
    client: pool.Pool,
) -> None:
    server = await serving(OK)
    target = http1.target(server.url, {"Authorization": "Bearer t", "X-Team": "a b"})
    answer = await client.post(target, {"webhook-id": "msg_1"}, b'{"n":1}')
    await server.stop()
    assert answer == http1.Answer(200, None, keep_alive=True)
    (request,) = server.requests
    head, _, body = request.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    port = server.url.split(":")[2].split("/")[0]
    assert lines[0] == b"POST /hook?x=1 HTTP/1.1"
    assert f"Host: 127.0.0.1:{port}".encode() in lines
    assert b"Authorization: Bearer t" in lines and b"X-Team: a b" in lines
    assert b"webhook-id: msg_1" in lines and b"Content-Length: 7" in lines
    assert body == b'{"n":1}'


@pytest.mark.parametrize(
    ("uri", "headers"),
    [
        ("ftp://example.com/x", {}),
        ("http:///no-host", {}),
        ("http://example.com:99999/", {}),
        ("http://example.com/", {"X-Evil": "a\r\nInjected: 1"}),
        ("http://example.com/", {"Bad Name": "v"}),
    ],
)
async def test_an_unusable_target_is_an_error_not_a_request(
    client: pool.Pool, uri: str, headers: dict[str, str]
) -> None:
    target = http1.target(uri, headers)
    assert target.error
    with pytest.raises(ValueError):
        await client.post(target, {}, b"")


async def test_a_line_break_in_a_delivery_header_is_refused(client: pool.Pool) -> None:
    server = await serving(OK)
    with pytest.raises(ValueError):
        await post(client, server, x="1\r\nInjected: yes")
    await server.stop()
    assert server.requests == []


@pytest.mark.parametrize(
    ("uri", "line", "host"),
    [
        ("http://h/a b/ü?q=1 2&r=%2F#frag", b"POST /a%20b/%C3%BC?q=1%202&r=%2F HTTP/1.1", b"h"),
        ("https://bücher.de/", b"POST / HTTP/1.1", b"xn--bcher-kva.de"),
        ("http://[::1]:8080", b"POST / HTTP/1.1", b"[::1]:8080"),
        ("https://h:443/p", b"POST /p HTTP/1.1", b"h"),
    ],
)
def test_urls_are_sent_the_way_aiohttp_sent_them(uri: str, line: bytes, host: bytes) -> None:
    lines = http1.target(uri, {}).head.split(b"\r\n")
    assert lines[0] == line and b"Host: " + host in lines


def test_credentials_in_the_url_become_basic_auth() -> None:
    head = http1.target("http://u%40x:p%20w@h/", {}).head
    assert b"Authorization: Basic dUB4OnAgdw==\r\n" in head  # base64 of "u@x:p w"
    assert http1.target("http://u:p@h/", {"authorization": "Bearer t"}).error


def test_framing_headers_of_a_subscription_are_not_sent() -> None:
    target = http1.target("http://h/", {"Content-Length": "5", "Host": "other", "X": "1"})
    assert target.head == b"POST / HTTP/1.1\r\nUser-Agent: eventhub\r\nHost: other\r\nX: 1\r\n"


# -- reading answers ----------------------------------------------------------------------------


async def test_keep_alive_reuses_one_connection(client: pool.Pool) -> None:
    server = await serving(OK)
    for _ in range(3):
        assert (await post(client, server)).status == 200
    await server.stop()
    assert server.connections == 1 and len(server.requests) == 3


async def test_a_chunked_answer_is_read_to_its_end_and_the_connection_reused(
    client: pool.Pool,
) -> None:
    # In three writes: the client waits mid-headers, then mid-body.
    server = await serving(
        in_pieces(
            b"HTTP/1.1 202 Accepted\r\nTransfer-",
            b"Encoding: chunked\r\n\r\n3\r\nabc\r\n",
            b"0\r\n\r\n",
        ),
        OK,
    )
    assert (await post(client, server)).status == 202
    assert (await post(client, server)).status == 200
    await server.stop()
    assert server.connections == 1


async def test_an_answer_without_a_length_ends_when_the_receiver_closes(
    client: pool.Pool,
) -> None:
    server = await serving(send(b"HTTP/1.1 200 OK\r\n\r\nsome body", close=True))
    answer = await post(client, server)
    assert answer.status == 200 and not answer.keep_alive
    assert (await post(client, server)).status == 200
    await server.stop()
    assert server.connections == 2 and client.idle == 0


async def test_connection_close_is_honoured(client: pool.Pool) -> None:
    server = await serving(
        send(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    )
    await post(client, server)
    await post(client, server)
    await server.stop()
    assert server.connections == 2


async def test_retry_after_and_the_status_of_a_refusal(client: pool.Pool) -> None:
    server = await serving(
        send(b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 120\r\nContent-Length: 0\r\n\r\n")
    )
    assert await post(client, server) == http1.Answer(429, "120", keep_alive=True)
    await server.stop()


async def test_an_interim_100_continue_is_skipped(client: pool.Pool) -> None:
    server = await serving(
        send(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"), OK
    )
    assert (await post(client, server)).status == 204
    assert (await post(client, server)).status == 200
    await server.stop()


# -- failures -----------------------------------------------------------------------------------


async def test_a_receiver_closing_without_an_answer_is_a_disconnection(
    client: pool.Pool,
) -> None:
    server = await serving(hang_up)
    with pytest.raises(http1.Disconnected):
        await post(client, server)
    await server.stop()
    assert client.idle == 0


async def test_a_truncated_answer_is_a_disconnection(client: pool.Pool) -> None:
    server = await serving(send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", close=True))
    with pytest.raises(http1.Disconnected):
        await post(client, server)
    await server.stop()


async def test_a_stall_past_the_total_time_limit_times_out_and_drops_the_connection(
    client: pool.Pool,
) -> None:
    server = await serving(stall(2.0), OK)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await post(client, server)
    assert loop.time() - started < 1.0
    assert client.idle == 0
    assert (await post(client, server)).status == 200  # on a fresh connection
    await server.stop()
    assert server.connections == 2


async def test_a_refused_connection_is_an_os_error(client: pool.Pool) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(ConnectionRefusedError):
            await client.post(http1.target(f"http://127.0.0.1:{port}/", {}), {}, b"")


async def test_an_answer_that_is_not_http_is_a_protocol_error(client: pool.Pool) -> None:
    server = await serving(send(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"))
    with pytest.raises(http1.ProtocolError):
        await post(client, server)
    await server.stop()
    assert client.idle == 0


async def test_a_cancelled_request_drops_its_connection(client: pool.Pool) -> None:
    server = await serving(stall(0.3), OK)
    task = asyncio.create_task(post(client, server))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.idle == 0
    await post(client, server)
    await server.stop()
    assert server.connections == 2


async def test_an_idle_connection_the_receiver_closed_is_not_reused(client: pool.Pool) -> None:
    server = await serving(send(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", close=True), OK)
    await post(client, server)  # keep-alive by its headers, but the server then hangs up
    await asyncio.sleep(0.05)
    assert (await post(client, server)).status == 200
    await server.stop()
    assert server.connections == 2


async def test_idle_connections_expire_and_the_sweep_closes_them() -> None:
    p = pool.Pool(
        connect_timeout=1.0, total_timeout=1.0, max_idle=8, keepalive=0.05, rules=LOOPBACK
    )
    await p.start()
    server = await serving(OK)
    await post(p, server)
    assert p.idle == 1
    await asyncio.sleep(0.1)
    p.sweep(asyncio.get_running_loop().time())
    assert p.idle == 0
    await post(p, server)
    await p.close()
    await server.stop()
    assert server.connections == 2


async def test_no_more_than_max_idle_connections_are_kept() -> None:
    p = pool.Pool(connect_timeout=1.0, total_timeout=1.0, max_idle=2, rules=LOOPBACK)
    await p.start()
    server = await serving(stall(0.05))
    await asyncio.gather(*(post(p, server) for _ in range(5)))
    assert server.connections == 5 and p.idle == 2
    await p.close()
    await server.stop()


# -- the sender's view: outcomes as values ------------------------------------------------------


async def test_the_sender_turns_failures_into_answers() -> None:
    sender = Sender(4, connect_timeout=1.0, total_timeout=0.3, rules=LOOPBACK)
    await sender.start()
    server = await serving(send(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"), stall(1.0))
    target = sender.target(server.url, {})
    busy = await sender.post(target, {}, b"x", "owner")
    assert (busy.status, busy.error) == (503, "HTTP 503")
    late = await sender.post(target, {}, b"x", "owner")
    assert (late.status, late.error) == (None, "timed out")
    bad = await sender.post(sender.target("http://h:port/", {}), {}, b"x", "owner")
    assert bad.status is None and bad.error is not None and bad.error.startswith("ValueError")
    await sender.stop()
    await server.stop()


async def test_a_redirect_is_not_followed_and_its_error_says_where_it_pointed() -> None:
    sender = Sender(4, connect_timeout=1.0, total_timeout=1.0, rules=LOOPBACK)
    await sender.start()
    moved = b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest\r\n"
    server = await serving(send(moved + b"Content-Length: 0\r\n\r\n"))
    answer = await sender.post(sender.target(server.url, {}), {}, b"x", "owner")
    assert answer.status == 302 and not answer.refused
    assert answer.error == (
        "HTTP 302: redirect to http://169.254.169.254/latest refused (redirects are never followed)"
    )
    assert len(server.requests) == 1
    await sender.stop()
    await server.stop()


async def test_a_refused_address_is_never_connected_and_the_answer_says_refused() -> None:
    # localhost resolves to 127.0.0.1 (and maybe ::1); only 127.0.0.2 is allowed: the one
    # server listening on 127.0.0.1 must never see a connection.
    only_two = egress.Rules.from_settings(["127.0.0.2/32"], only=True)
    sender = Sender(4, connect_timeout=1.0, total_timeout=1.0, rules=only_two)
    await sender.start()
    server = await serving(OK)
    port = server.url.split(":")[2].split("/")[0]
    for host in ("localhost", "127.0.0.1", "127.1", "2130706433"):
        answer = await sender.post(sender.target(f"http://{host}:{port}/", {}), {}, b"x", "owner")
        assert answer.refused and answer.status is None, answer
        assert answer.error is not None
        assert answer.error.startswith("callback address 127.0.0.1 refused: not in"), answer
    assert server.connections == 0
    await sender.stop()
    await server.stop()


async def test_the_default_rules_refuse_loopback_before_connecting() -> None:
    p = pool.Pool(connect_timeout=1.0, total_timeout=1.0, max_idle=2)
    await p.start()
    server = await serving(OK)
    with pytest.raises(egress.Refused, match="loopback"):
        await post(p, server)
    assert server.connections == 0
    await p.close()
    await server.stop()


# -- TLS ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"),
            *("-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_https_callbacks_are_verified_and_kept_alive(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    server = await Scripted(OK).start(server_context)

    trusting = pool.default_ssl_context()
    trusting.load_verify_locations(cert)
    p = pool.Pool(1.0, 2.0, max_idle=4, ssl_context=trusting, rules=LOOPBACK)
    await p.start()
    assert (await post(p, server)).status == 200
    assert (await post(p, server)).status == 200
    await p.close()
    assert server.connections == 1

    strict = pool.Pool(
        1.0, 2.0, max_idle=4, rules=LOOPBACK
    )  # the system's CAs do not know this certificate
    await strict.start()
    with pytest.raises(ssl.SSLCertVerificationError):
        await post(strict, server)
    await strict.close()
    await server.stop()


async def test_each_request_times_out_at_its_own_deadline_under_one_shared_timer() -> None:
    # One timer watches every request in flight: a later request must neither expire with
    # the first one nor wait past its own limit, and a request answered meanwhile is untouched.
    p = pool.Pool(connect_timeout=1.0, total_timeout=0.3, max_idle=8, rules=LOOPBACK)
    await p.start()
    stalled = await serving(stall(2.0))
    quick = await serving(OK)
    loop = asyncio.get_running_loop()

    async def timed_out_after() -> float:
        started = loop.time()
        with pytest.raises(TimeoutError):
            await post(p, stalled)
        return loop.time() - started

    first = asyncio.create_task(timed_out_after())
    await asyncio.sleep(0.15)
    second = asyncio.create_task(timed_out_after())
    assert (await post(p, quick)).status == 200
    for elapsed in await asyncio.gather(first, second):
        assert 0.28 <= elapsed < 0.45
    assert (await post(p, quick)).status == 200  # the timer is set again for new requests
    await p.close()
    await stalled.stop()
    await quick.stop()
