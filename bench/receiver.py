"""A webhook receiver for the delivery benchmarks, in its own process: answers 200 at once,
counts requests and events; with ``--calls`` it records when each process call step
(``ce-id``, ``bench/processes.py``) first arrived; and (with ``--latency``) records for every event how long it
took from the producer's send time (``data.sentAt``, epoch seconds) to arrival here;
``POST /hook/<name>`` counts the same, and with ``--latency`` keeps each name's arrivals apart.

    GET  /stats   {"requests", "events", "latencies_ms": [...], "unique", "per_event"}  (latencies only with
                  --latency, and with ?detail=1 "paths" {name: [[arrival epoch s, latency ms]]}; "unique" (subscription, event) pairs only with --record, and with
                  ?detail=1 how many subscriptions got each event id; with --calls, "calls":
                  distinct ``ce-id``s, and with ?detail=1 "arrivals" {ce-id: epoch seconds of
                  its first arrival})
    POST /reset   forget everything counted so far
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import orjson
from aiohttp import web


class Counts:
    def __init__(self, latency: bool, record: bool = False, calls: bool = False) -> None:
        self.latency = latency
        self.record = record
        self.calls = calls
        self.arrivals: dict[str, float] = {}  # ce-id -> first arrival, with --calls
        self.requests = 0
        self.events = 0
        self.latencies: list[float] = []
        self.seen: set[tuple[str, str]] = set()  # (subscription, event id), with --record
        # With --latency, for POST /hook/<name>: (arrival, latency ms) of each event, by name
        # (one name a subscription: the fail-over of bench/pg_scale.py reads them).
        self.paths: dict[str, list[tuple[float, float]]] = {}


async def hook(request: web.Request) -> web.Response:
    counts: Counts = request.app["counts"]
    if counts.calls:
        # Taken before the body is read: the call has arrived once its headers have. A repeat
        # (the same ce-id after a retry or a crash) keeps the first arrival.
        now = time.time()
        counts.arrivals.setdefault(request.headers.get("ce-id", ""), now)
    body = await request.read()
    counts.requests += 1
    if counts.calls:
        counts.events += 1
    elif counts.record:
        items = orjson.loads(body)
        for item in items:
            counts.seen.add((item["subscriptionId"], item["eventId"]))
        counts.events += len(items)
    elif counts.latency:
        now = time.time()
        items = orjson.loads(body)
        name = request.match_info.get("name")
        for item in items if isinstance(items, list) else [items]:
            event = item.get("event", item)
            data = event.get("data")
            if isinstance(data, dict) and "sentAt" in data:
                counts.latencies.append((now - data["sentAt"]) * 1000)
                if name is not None:
                    counts.paths.setdefault(name, []).append((now, counts.latencies[-1]))
        counts.events += len(items) if isinstance(items, list) else 1
    else:
        # Envelope and batch deliveries carry many events, each with its specversion; a
        # binary-mode delivery carries its one event's attributes in headers. Counting bytes
        # keeps the receiver's CPU per request as low as the raw client's ceiling run sees.
        counts.events += body.count(b'"specversion"') or 1
    return web.Response(status=200)


async def stats(request: web.Request) -> web.Response:
    counts: Counts = request.app["counts"]
    body: dict[str, Any] = {"requests": counts.requests, "events": counts.events}
    if counts.latency:
        body["latencies_ms"] = counts.latencies
        if request.query.get("detail"):
            body["paths"] = counts.paths
    if counts.calls:
        body["calls"] = len(counts.arrivals)
        if request.query.get("detail"):
            body["arrivals"] = counts.arrivals
    if counts.record:
        body["unique"] = len(counts.seen)
        if request.query.get("detail"):
            per_event: dict[str, int] = {}
            for _, event_id in counts.seen:
                per_event[event_id] = per_event.get(event_id, 0) + 1
            body["per_event"] = per_event
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def reset(request: web.Request) -> web.Response:
    counts: Counts = request.app["counts"]
    request.app["counts"] = Counts(counts.latency, counts.record, counts.calls)
    return web.Response(status=204)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    parser.add_argument("--latency", action="store_true")
    parser.add_argument("--record", action="store_true", help="count unique deliveries")
    parser.add_argument("--calls", action="store_true", help="record call arrivals by ce-id")
    args = parser.parse_args()
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app["counts"] = Counts(args.latency, args.record, args.calls)
    app.router.add_post("/hook", hook)
    app.router.add_post("/hook/{name}", hook)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None, backlog=4096)


if __name__ == "__main__":
    main()
