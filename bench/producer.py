"""The latency benchmarks' lean open-loop producer: uvloop, raw ``asyncio.Protocol`` keep-alive
connections, requests prebuilt as bytes but for the event id and ``sentAt``, responses read by
httptools' response parser (status and framing only).

aiohttp's client costs ~200 µs of CPU a request here: at 5,000 events/s, one event a request,
that is a whole core of the two the hub and the receiver share, and it got ~2,300 requests/s
out. This one costs a fraction of that (``bench/README.md``, "The files").

Open loop: request ``j`` is due at ``start + j / rate`` and leaves then whether or not earlier
ones were answered. Its ``sentAt`` and its send → answer time count from that due time, so a
request that had to wait (for a connection, or for this process) carries the wait. It goes out on an idle connection; if every connection is busy, another is
opened (up to ``max_connections``) and the request waits for the first connection free. Each
request's departure minus its due time is its lateness: the report says how many left more than
``LATE_MS`` late and by how much, so an offered rate the producer did not hold is visible.

    .venv/bin/python bench/producer.py --rate 5000 --seconds 5     # its own CPU a request,
    .venv/bin/python bench/producer.py --client aiohttp --receiver aiohttp   # and the old tools'

Alone, it measures itself against a bare server (a fresh receiver, answering 200 at once):
its CPU µs a request, the receiver's, the lateness, and the send → 200 percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import harness
import httptools
import orjson
import uvloop
from counts import cpu_seconds

LATE_MS = 2.0  # a request leaving later than this after its due time counts as late
TICK = 0.01  # the batched producer sends the events due every 10 ms in one request


class Requests:
    """Binary-mode single events (``batch=0``) or JSON batches of ``batch`` events to ``POST
    /events``, as bytes on the wire; ``build(j, sent_at)`` stamps request ``j``'s ids and
    ``sent_at`` (``data.sentAt``, epoch seconds: the producer gives the request's due time). Event ``i``'s id is ``<run>-<tag><i>``,
    as ``harness.binary_headers``/``harness.event_batch`` name them."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        pool: harness.Pool,
        run: str,
        tag: str = "l",
        batch: int = 0,
        total: int | None = None,
    ) -> None:
        parts = urlsplit(url)
        self.batch = batch
        self.total = total
        start = b"POST %s HTTP/1.1\r\nhost: %s\r\n" % (
            (parts.path or "/").encode(),
            parts.netloc.encode(),
        )
        common = start + b"".join(
            b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in headers.items()
        )
        ident = b"%s-%s" % (run.encode(), tag.encode())
        if not batch:
            # (headers up to the id's number, the body after '{"sentAt":<t>,')
            self.singles = [
                (
                    common
                    + b"content-type: application/json\r\nce-specversion: 1.0\r\n"
                    + b"ce-source: %s\r\nce-type: %s\r\nce-benchrun: %s\r\nce-id: %s"
                    % (source.encode(), type_.encode(), run.encode(), ident),
                    body[1:],
                )
                for type_, source, _, body in pool
            ]
        else:
            self.head = common + b"content-type: application/cloudevents-batch+json\r\n"
            self.open = b'{"specversion":"1.0","id":"%s' % ident
            # (after the id's number up to the sentAt value, the rest of the event)
            self.events = [
                (
                    b'","source":%s,"type":%s,"benchrun":"%s","data":{"sentAt":'
                    % (orjson.dumps(source), orjson.dumps(type_), run.encode()),
                    b"," + body[1:] + b"}",
                )
                for type_, source, _, body in pool
            ]

    def count(self, events: int) -> int:
        """Requests that carry ``events`` events."""
        return events if not self.batch else math.ceil(events / self.batch)

    def build(self, j: int, sent_at: float) -> bytes:
        if not self.batch:
            head, rest = self.singles[j % len(self.singles)]
            body = b'{"sentAt":%r,%s' % (sent_at, rest)
            return b"%s%d\r\ncontent-length: %d\r\n\r\n%s" % (head, j, len(body), body)
        first = j * self.batch
        last = first + self.batch if self.total is None else min(first + self.batch, self.total)
        stamp = repr(sent_at).encode()
        events, opening = self.events, self.open
        parts = []
        for i in range(first, last):
            mid, rest = events[i % len(events)]
            parts.append(b"%s%d%s%s%s" % (opening, i, mid, stamp, rest))
        body = b"[" + b",".join(parts) + b"]"
        return b"%scontent-length: %d\r\n\r\n%s" % (self.head, len(body), body)


class Exchange(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.sent = 0.0  # perf_counter due time of the request in flight; 0: idle

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def send(self, data: bytes, due: float) -> None:
        assert self.transport is not None
        self.sent = due
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()  # connection_lost counts the request as failed

    def on_message_complete(self) -> None:
        sent, self.sent = self.sent, 0.0
        keep = self.parser.should_keep_alive()
        self.producer.answered(self, self.parser.get_status_code(), sent, keep)
        if not keep:
            assert self.transport is not None
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.producer.lost(self)


class Producer:
    """Requests offered on schedule over a pool of keep-alive connections to one server."""

    def __init__(self, url: str, max_connections: int = 512) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.max_connections = max_connections
        self.idle: list[Exchange] = []
        self.connections: set[Exchange] = set()
        self.opening = 0
        self.opened = 0
        self.waiting: collections.deque[tuple[float, int]] = collections.deque()  # (due, j)
        self.requests: Requests | None = None
        self.outstanding = 0
        self.failures = 0
        self.statuses: collections.Counter[int] = collections.Counter()
        self.acks: list[float] = []  # ms from the due time to the answer's end, 2xx answers
        self.epoch = time.time() - time.perf_counter()  # perf_counter -> epoch seconds
        self.lateness: list[float] = []  # ms from due to departure, every request
        self.drained: asyncio.Event | None = None

    async def connect(self, n: int) -> None:
        """Open ``n`` connections ahead of the run (a pool sized for the rate)."""
        await asyncio.gather(*(self._open() for _ in range(n)))

    async def _open(self) -> None:
        self.opening += 1
        try:
            loop = asyncio.get_running_loop()
            _, exchange = await loop.create_connection(lambda: Exchange(self), self.host, self.port)
        except OSError:
            self.opening -= 1
            if not self.connections and not self.opening:
                # Nothing will ever carry what waits: count it failed.
                while self.waiting:
                    self.waiting.popleft()
                    self._finish(failed=True)
            return
        self.opening -= 1
        self.opened += 1
        self.connections.add(exchange)
        self._free(exchange)

    def _free(self, exchange: Exchange) -> None:
        if self.waiting:
            due, j = self.waiting.popleft()
            self._depart(exchange, due, j)
        else:
            self.idle.append(exchange)

    def _depart(self, exchange: Exchange, due: float, j: int) -> None:
        # A request's times run from when it was due, not from when it left: a request kept
        # waiting for a connection (or by this process's own lateness) counts that wait in its
        # latency, as an open-loop measure must (no coordinated omission).
        assert self.requests is not None
        data = self.requests.build(j, due + self.epoch)
        self.lateness.append((time.perf_counter() - due) * 1000)
        exchange.send(data, due)

    def offer_one(self, due: float, j: int) -> None:
        self.outstanding += 1
        if self.idle:
            self._depart(self.idle.pop(), due, j)
            return
        self.waiting.append((due, j))
        if len(self.connections) + self.opening < self.max_connections:
            asyncio.get_running_loop().create_task(self._open())

    def answered(self, exchange: Exchange, status: int, sent: float, keep: bool) -> None:
        self.statuses[status] += 1
        ok = 200 <= status < 300
        if ok:
            self.acks.append((time.perf_counter() - sent) * 1000)
        self._finish(failed=not ok)
        if keep:
            self._free(exchange)
        else:
            self.connections.discard(exchange)

    def lost(self, exchange: Exchange) -> None:
        self.connections.discard(exchange)
        if exchange in self.idle:
            self.idle.remove(exchange)
        if exchange.sent:
            exchange.sent = 0.0
            self._finish(failed=True)
        if self.waiting and len(self.connections) + self.opening < self.max_connections:
            asyncio.get_running_loop().create_task(self._open())

    def _finish(self, failed: bool) -> None:
        self.failures += failed
        self.outstanding -= 1
        if self.outstanding == 0 and self.drained is not None:
            self.drained.set()

    async def run(self, requests: Requests, n: int, rate: float, timeout: float) -> dict[str, Any]:
        """Offer requests 0 … n - 1 at ``rate`` a second, then wait (at most ``timeout``
        seconds) for every answer. The figures of the run; ``cpu_s``: this process's CPU from
        the first request to the last answer."""
        self.requests = requests
        cpu0 = cpu_seconds()
        started = time.perf_counter()
        j = 0
        while j < n:
            now = time.perf_counter()
            due = started + j / rate
            if due > now:
                # Not less than 1 ms: uvloop's timers have 1 ms resolution, and a shorter
                # sleep returns at once (a busy loop). What falls due meanwhile leaves together.
                await asyncio.sleep(max(due - now, 0.001))
                continue
            while j < n and started + j / rate <= now:  # everything due by now leaves now
                self.offer_one(started + j / rate, j)
                j += 1
        offered_for = time.perf_counter() - started
        self.drained = asyncio.Event()  # set by the last answer from now on
        if self.outstanding:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.drained.wait(), timeout)
        unanswered = self.outstanding  # the requests still waiting for a connection too
        cpu = cpu_seconds() - cpu0
        for exchange in list(self.connections):
            assert exchange.transport is not None
            exchange.transport.close()
        late = [ms for ms in self.lateness if ms > LATE_MS]
        return {
            "client": "lean",
            "requests": n,
            "offered_for_s": offered_for,
            "achieved_requests_per_s": n / offered_for,
            "failures": self.failures + unanswered,
            "unanswered": unanswered,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "connections_opened": self.opened,
            "late": len(late),
            "late_ms": {
                "over": LATE_MS,
                "p50": harness.percentile(late, 0.50),
                "p99": harness.percentile(late, 0.99),
                "max": max(late) if late else None,
            },
            "acks_ms": self.acks,
            "cpu_s": cpu,
            "cpu_us_per_request": cpu / n * 1e6 if n else None,
        }


def pool_size(rate: float) -> int:
    """Connections to open ahead: the rate times a few ms of answer time, at least 4 (more
    open on demand)."""
    return max(4, min(128, int(rate * 0.005)))


async def aiohttp_run(
    url: str, headers: dict[str, str], bodies: list[bytes], rate: float
) -> dict[str, Any]:
    """The old producer's way (aiohttp, a task a request) on the same schedule, for the
    comparison of the two producers' CPU a request."""
    import aiohttp

    cpu0 = cpu_seconds()
    acks: list[float] = []
    failures = 0
    async with aiohttp.ClientSession() as http:

        async def post(body: bytes) -> None:
            nonlocal failures
            sent = time.perf_counter()
            try:
                async with http.post(url, data=body, headers=headers) as r:
                    await r.read()
                    if r.status != 200:
                        failures += 1
                    else:
                        acks.append((time.perf_counter() - sent) * 1000)
            except aiohttp.ClientError:
                failures += 1

        tasks = []
        started = time.perf_counter()
        for j, body in enumerate(bodies):
            delay = started + j / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(body)))
        await asyncio.gather(*tasks)
        offered_for = time.perf_counter() - started
    cpu = cpu_seconds() - cpu0
    n = len(bodies)
    return {
        "client": "aiohttp",
        "requests": n,
        "offered_for_s": offered_for,
        "achieved_requests_per_s": n / offered_for,
        "failures": failures,
        "acks_ms": acks,
        "cpu_s": cpu,
        "cpu_us_per_request": cpu / n * 1e6 if n else None,
    }


async def measure(url: str, client: str, rate: float, seconds: float) -> dict[str, Any]:
    """The producer ``client`` against the receiver at ``url`` (a bare server: 200 at once):
    its CPU a request and the receiver's, at ``rate`` requests/s of ~1 KB binary events."""
    import aiohttp
    import payloads

    pool = payloads.build_pool()
    n = int(rate * seconds)
    async with aiohttp.ClientSession() as http:
        async with http.post(url + "/reset") as r:
            r.raise_for_status()
        before = await harness.receiver_stats(http, url)
        if client == "lean":
            producer = Producer(url + "/hook")
            await producer.connect(pool_size(rate))
            requests = Requests(url + "/hook", {}, pool, "self")
            result = await producer.run(requests, n, rate, timeout=60)
        else:
            bodies = [harness.timed(pool[j % len(pool)][3], time.time()) for j in range(n)]
            headers = {"content-type": "application/json", "ce-id": "x"}
            result = await aiohttp_run(url + "/hook", headers, bodies, rate)
        after = await harness.receiver_stats(http, url)
    acks = result.pop("acks_ms")
    served = after["requests"] - before["requests"]
    return {
        **result,
        "offered_per_s": rate,
        "ack_p50_ms": harness.percentile(acks, 0.50),
        "ack_p99_ms": harness.percentile(acks, 0.99),
        "receiver": harness.RECEIVER,
        "receiver_requests": served,
        "receiver_cpu_us_per_request": (after["cpu_s"] - before["cpu_s"]) / served * 1e6
        if served
        else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--client", choices=["lean", "aiohttp"], default="lean")
    p.add_argument("--receiver", choices=sorted(harness.RECEIVERS), default="lean")
    p.add_argument("--rate", type=float, default=2000)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--url", help="a receiver already running (default: a fresh one)")
    args = p.parse_args(argv)
    harness.RECEIVER = args.receiver
    if args.url:
        result = uvloop.run(measure(args.url.rstrip("/"), args.client, args.rate, args.seconds))
    else:
        with (
            tempfile.TemporaryDirectory(prefix="eventhub-producer-") as tmp,
            harness.receiver(Path(tmp), harness.Network()) as (local, _),
        ):
            result = uvloop.run(measure(local, args.client, args.rate, args.seconds))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
