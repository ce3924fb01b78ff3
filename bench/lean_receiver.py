"""The benchmarks' webhook receiver: the API of ``receiver.py`` (``/hook``, ``/hook/<name>``,
``/stats``, ``/reset``; ``--latency``, ``--record``, ``--calls``) without a web framework, on
uvloop and httptools' request parser, answering 200 as soon as a request's body is in.

aiohttp's receiver costs ~100 µs of CPU a request on this machine; a fan-out to 10,000
subscriptions then spends ~1 s of the two cores in the receiver, beside the hub being measured.
This one spends a fraction of that (``bench/README.md``, "The files"), so the benchmarks measure
the hub. HTTP/1.1 keep-alive, requests answered in order; a body over 16 MB or a request that
does not parse is answered 413/400 and the connection closed.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from typing import cast

import httptools
import uvloop
from counts import Counts, options

MAX_BODY = 16 * 1024 * 1024
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
BAD = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
TOO_LARGE = b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class Receiver:
    """What every connection shares: the counts (replaced whole by ``/reset``)."""

    def __init__(self, counts: Counts) -> None:
        self.counts = counts


class Connection(asyncio.Protocol):
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.ce_id = ""
        self.body: list[bytes] = []
        self.size = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.close(BAD)

    def close(self, answer: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(answer)
            self.transport.close()

    # -- httptools callbacks

    def on_message_begin(self) -> None:
        self.url, self.ce_id, self.body, self.size = b"", "", [], 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > MAX_BODY:
            self.close(TOO_LARGE)
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        assert self.transport is not None
        if self.transport.is_closing():
            return  # answered already (413)
        answer = self.answer(self.parser.get_method(), self.url)
        self.transport.write(answer)
        if not self.parser.should_keep_alive():
            self.transport.close()

    def answer(self, method: bytes, url: bytes) -> bytes:
        parsed = httptools.parse_url(url)
        path = parsed.path
        receiver = self.receiver
        if method == b"POST" and (path == b"/hook" or path.startswith(b"/hook/")):
            name = path[6:].decode() if path.startswith(b"/hook/") else None
            receiver.counts.take(b"".join(self.body), name or None)
            return OK
        if method == b"GET" and path == b"/stats":
            query = urllib.parse.parse_qs((parsed.query or b"").decode())
            body = receiver.counts.stats(
                bool(query.get("detail", [""])[0]), bool(query.get("counts", [""])[0])
            )
            return (
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body)
            )
        if method == b"POST" and path == b"/reset":
            receiver.counts = receiver.counts.fresh()
            return NO_CONTENT
        return NOT_FOUND


class CallsConnection(Connection):
    """With ``--calls``: also reads each request's ``ce-id`` and the time its headers were in.
    (httptools calls only the callbacks a protocol has: without ``--calls`` no header costs a
    Python call.)"""

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"ce-id":
            self.ce_id = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        if self.url.startswith(b"/hook"):
            # The call has arrived once its headers have, as receiver.py takes it.
            self.receiver.counts.arrived(self.ce_id, time.time())


async def serve(host: str, port: int, counts: Counts) -> None:
    receiver = Receiver(counts)
    loop = asyncio.get_running_loop()
    kind = CallsConnection if counts.calls else Connection
    server = await loop.create_server(lambda: kind(receiver), host, port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    args = options(__doc__.split("\n\n")[0])
    counts = Counts(args.latency, args.record, args.calls)
    # SIGTERM (harness.Process.stop) ends the process at once: nothing is left to flush.
    uvloop.run(serve(args.host, args.port, counts))


if __name__ == "__main__":
    main()
