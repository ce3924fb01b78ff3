"""A closed-loop HTTP load generator in Python (aiohttp on uvloop), for machines without wrk.

N keep-alive connections, each sending its next request as soon as the last is answered, for a
warm-up then a measured window; bounded by time and by request count. Request headers and bodies
are built ahead from the payload pool; only the CloudEvent id changes per request (per event in
batch mode), so every request is a new event to the hub.

Prints one JSON object: requests and events in the window, statuses, latency percentiles, and
the CPU seconds this process and the server (``--server-pid``, read from /proc) spent in it.
Run by ``ingest.py``; by hand:

    .venv/bin/python bench/loadgen.py --url http://127.0.0.1:8080/events --pool pool.tsv \\
        --mode binary --key "$EVENTHUB_ADMIN_KEY" --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import resource
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import payloads
import uvloop

# Latencies go into buckets 1% wide (log scale), so a run of any length keeps ~1,500 counters.
_BUCKET_BASE = math.log(1.01)


def _bucket(seconds: float) -> int:
    return int(math.log(max(seconds, 1e-6) * 1e6) / _BUCKET_BASE)


def _bucket_ms(bucket: int) -> float:
    return math.exp((bucket + 0.5) * _BUCKET_BASE) / 1e3


def percentile(histogram: dict[int, int], q: float) -> float | None:
    """The ``q``-th percentile in milliseconds of a bucket → count histogram."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = math.ceil(total * q / 100)
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return _bucket_ms(bucket)
    return None


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process (all its threads), or None where /proc is missing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Requests:
    """Pre-built requests; ``next()`` only stamps fresh ids into them."""

    def __init__(self, pool_path: Path, mode: str, key: str, batch: int, prefix: str) -> None:
        pool = payloads.read_pool(pool_path)
        self._mode = mode
        self._batch = batch
        self._prefix = prefix
        self._counter = itertools.count(1)
        auth = {"Authorization": f"Bearer {key}"} if key else {}
        if mode == "binary":
            self._binary = [
                (
                    {
                        **auth,
                        "Content-Type": "application/json",
                        "ce-specversion": "1.0",
                        "ce-source": source,
                        "ce-type": type_,
                        "ce-time": stamp,
                    },
                    body,
                )
                for type_, source, stamp, body in pool
            ]
        else:
            media = "cloudevents+json" if mode == "structured" else "cloudevents-batch+json"
            self._headers = {**auth, "Content-Type": f"application/{media}"}
            # Each event split around its id: '{"specversion":"1.0","id":"' <id> tail.
            self._tails = [
                b'","source":'
                + orjson.dumps(source)
                + b',"type":'
                + orjson.dumps(type_)
                + b',"time":'
                + orjson.dumps(stamp)
                + b',"datacontenttype":"application/json","data":'
                + body
                + b"}"
                for type_, source, stamp, body in pool
            ]

    def next(self) -> tuple[dict[str, str], bytes]:
        n = next(self._counter)
        if self._mode == "binary":
            headers, body = self._binary[n % len(self._binary)]
            return {**headers, "ce-id": f"{self._prefix}{n}"}, body
        tails, start = self._tails, n * self._batch
        if self._mode == "structured":
            head = b'{"specversion":"1.0","id":"%s%d' % (self._prefix.encode(), n)
            return self._headers, head + tails[n % len(tails)]
        parts = [b"["]
        for i in range(self._batch):
            if i:
                parts.append(b",")
            parts.append(b'{"specversion":"1.0","id":"%s%d-%d' % (self._prefix.encode(), n, i))
            parts.append(tails[(start + i) % len(tails)])
        parts.append(b"]")
        return self._headers, b"".join(parts)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    requests = Requests(args.pool, args.mode, args.key, args.batch, args.id_prefix)
    histogram: Counter[int] = Counter()
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    state = {"measured": 0, "acked_total": 0, "sent": 0}
    loop_time = time.perf_counter
    begin = loop_time()
    window_start = begin + args.warmup
    window_end = window_start + args.duration

    async def worker(session: aiohttp.ClientSession) -> None:
        # Bounded twice: by the end of the window and by --max-requests.
        while state["sent"] < args.max_requests:
            started = loop_time()
            if started >= window_end:
                return
            state["sent"] += 1
            headers, body = requests.next()
            try:
                async with session.post(args.url, data=body, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors[type(exc).__name__] += 1
                await asyncio.sleep(0.01)  # a refused connection must not spin the loop
                continue
            finished = loop_time()
            ok = 200 <= status < 300
            if ok:
                state["acked_total"] += 1
            if started >= window_start and finished <= window_end:
                statuses[status] += 1
                if ok:
                    state["measured"] += 1
                    histogram[_bucket(finished - started)] += 1

    connector = aiohttp.TCPConnector(limit=args.connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=args.request_timeout)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, skip_auto_headers=("User-Agent",)
    ) as session:
        workers = [asyncio.create_task(worker(session)) for _ in range(args.connections)]
        await asyncio.sleep(max(0.0, window_start - loop_time()))
        cpu0, server0 = _own_cpu_seconds(), process_cpu_seconds(args.server_pid)
        await asyncio.sleep(max(0.0, window_end - loop_time()))
        cpu1, server1 = _own_cpu_seconds(), process_cpu_seconds(args.server_pid)
        elapsed = loop_time() - window_start
        # In-flight requests finish within the request timeout; past that, cancel them.
        _, late = await asyncio.wait(workers, timeout=args.request_timeout + 1)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    per_request = args.batch if args.mode == "batch" else 1
    server_cpu = None if server0 is None or server1 is None else server1 - server0
    return {
        "generator": "aiohttp",
        "window_s": elapsed,
        "requests": state["measured"],
        "events": state["measured"] * per_request,
        "acked_events_total": state["acked_total"] * per_request,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": dict(errors),
        "p50_ms": percentile(histogram, 50),
        "p90_ms": percentile(histogram, 90),
        "p99_ms": percentile(histogram, 99),
        "generator_cpu_s": cpu1 - cpu0,
        "server_cpu_s": server_cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--pool", type=Path, required=True, help="payload file (payloads.py)")
    parser.add_argument("--mode", choices=["binary", "structured", "batch"], default="binary")
    parser.add_argument("--batch", type=int, default=100, help="events a batch request")
    parser.add_argument("--key", default="", help="API key (Authorization: Bearer)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--max-requests", type=int, default=5_000_000)
    parser.add_argument("--request-timeout", type=float, default=30.0)
    parser.add_argument("--id-prefix", default=f"lg{os.getpid()}-")
    parser.add_argument("--server-pid", type=int, default=0, help="server process to sample")
    args = parser.parse_args()
    result = uvloop.run(run(args))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
