"""A webhook receiver for the delivery benchmarks on aiohttp, in its own process: answers 200
at once, counts requests and events; with ``--calls`` it records when each process call step
(``ce-id``, ``bench/processes.py``) first arrived; and (with ``--latency``) records for every
event how long it took from the producer's send time (``data.sentAt``, epoch seconds) to
arrival here; ``POST /hook/<name>`` counts the same, and with ``--latency`` keeps each name's
arrivals apart.

The benchmarks use ``lean_receiver.py`` (the same API on uvloop + httptools, ~5x less CPU a
request) unless told ``--receiver aiohttp``: this one stays to reproduce earlier figures.

    GET  /stats   {"requests", "events", "cpu_s", "latencies_ms": [...], "unique", "per_event"}
                  (latencies only with --latency, and with ?detail=1 "paths" {name: [[arrival
                  epoch s, latency ms]]}; "unique" (subscription, event) pairs only with
                  --record, and with ?detail=1 how many subscriptions got each event id; with
                  --calls, "calls": distinct ``ce-id``s, and with ?detail=1 "arrivals" {ce-id:
                  epoch seconds of its first arrival}; "cpu_s": this process's CPU seconds;
                  ?counts=1: the counts alone, no latencies, arrivals or per-event lists)
    POST /reset   forget everything counted so far
"""

from __future__ import annotations

import time

from aiohttp import web
from counts import Counts, options


async def hook(request: web.Request) -> web.Response:
    counts: Counts = request.app["counts"]
    if counts.calls:
        # Taken before the body is read: the call has arrived once its headers have.
        counts.arrived(request.headers.get("ce-id", ""), time.time())
    body = await request.read()
    counts.take(body, request.match_info.get("name"))
    return web.Response(status=200)


async def stats(request: web.Request) -> web.Response:
    counts: Counts = request.app["counts"]
    body = counts.stats(bool(request.query.get("detail")), bool(request.query.get("counts")))
    return web.Response(body=body, content_type="application/json")


async def reset(request: web.Request) -> web.Response:
    request.app["counts"] = request.app["counts"].fresh()
    return web.Response(status=204)


def main() -> None:
    args = options(__doc__.split("\n\n")[0])
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app["counts"] = Counts(args.latency, args.record, args.calls)
    app.router.add_post("/hook", hook)
    app.router.add_post("/hook/{name}", hook)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None, backlog=4096)


if __name__ == "__main__":
    main()
