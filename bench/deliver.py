"""Delivery benchmarks: eventhub against a raw aiohttp client posting to the same receiver.

Every party is its own process on 127.0.0.1: the receiver (bench/receiver.py), the raw client
(this file, ``raw`` sub-command), eventhub (``eventhub serve`` on a fresh database) and the
producer (this process). Scenarios:

    throughput   100 subscriptions on one trigger, a backlog of events: deliveries/s,
                 and the same receiver's ceiling with a raw aiohttp client (64 in flight),
                 and with a raw loop on eventhub's own HTTP/1.1 client (what the hub uses)
    latency      10 subscriptions, events sent open-loop at a fixed rate (default 1,000/s):
                 ingest acknowledged -> receiver has it, p50/p99 (the producer's send time
                 travels in the event's data; one machine, one clock)
    fanout       10,000 subscriptions on one trigger, one event: time until all have it;
                 then the hub's RSS with 10,000 idle subscriptions, and its restart time
    matrix       delivered events/s for 1, 100 and 1,000 subscriptions x each format
    rates        end-to-end latency percentiles at 500, 1k, 2k and 5k events/s (open loop)
    recovery     kill -9 under load: restart, time until delivery resumes, lost, repeated

``--database postgres`` runs every local hub on a fresh database of a throwaway PostgreSQL
(``pg.py``: pgserver, a Unix socket), one hub process; the same scenarios without it run on
SQLite, so two invocations compare the stores (``python -m bench --only postgres`` does).

    .venv/bin/python bench/deliver.py                 # every scenario
    .venv/bin/python bench/deliver.py --quick         # small sizes, a smoke run
    .venv/bin/python bench/deliver.py --only latency
    .venv/bin/python bench/deliver.py --database postgres --only throughput --only rates
    .venv/bin/python bench/deliver.py --url https://hub.example --key "$ADMIN_KEY" \\
        --receiver-host 0.0.0.0 --advertise 10.0.0.5   # an eventhub already running

With ``--url`` the hub is that running eventhub (``--key``: an admin key, for the run's own
knowledge model and subscriptions, deleted afterwards); the receivers listen on
``--receiver-host`` and the hub reaches them at ``--advertise``. Scenarios that must start,
measure or kill the hub's process (the idle RSS and restart of ``fanout``, ``recovery``) are
skipped there.

Prints a Markdown table and writes bench/results/deliver-<date>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import harness
import loadgen
import orjson
import pg
import producer as producer_tool
import uvloop
from counts import cpu_seconds

# -- the raw client ceiling --------------------------------------------------------------------


async def raw_client(url: str, seconds: float, concurrency: int, body: bytes) -> dict[str, Any]:
    done = 0
    deadline = time.perf_counter() + seconds
    headers = {"content-type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                async with http.post(url, data=body, headers=headers) as r:
                    await r.read()
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"requests": done, "seconds": elapsed, "requests_per_s": done / elapsed}


async def own_client(url: str, seconds: float, concurrency: int, body: bytes) -> dict[str, Any]:
    """The same loop on eventhub's own HTTP/1.1 client (``eventhub.delivery.pool``), which
    the hub delivers with: the ceiling of its delivery path without the hub around it."""
    from eventhub.delivery import egress, http1, pool

    done = 0
    deadline = time.perf_counter() + seconds
    target = http1.target(url, {"content-type": "application/json"})
    # The receiver may be on loopback or, with --receiver-host, on a LAN: this ceiling checks
    # the address as the hub does, against rules that admit wherever the receiver is.
    anywhere = egress.Rules.from_settings(("0.0.0.0/0", "::/0"), only=True)
    client = pool.Pool(connect_timeout=5, total_timeout=30, max_idle=concurrency, rules=anywhere)
    await client.start()
    try:

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                answer = await client.post(target, {}, body)
                if answer.status != 200:
                    raise RuntimeError(f"the receiver answered {answer.status}")
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    finally:
        await client.close()
    return {"requests": done, "seconds": elapsed, "requests_per_s": done / elapsed}


# -- scenarios ---------------------------------------------------------------------------------


def profile(opts: argparse.Namespace, name: str) -> Path | None:
    """Where ``--py-spy DIR`` puts a scenario's profile of the hub."""
    return opts.py_spy / f"{name}.txt" if opts.py_spy else None


def database(opts: argparse.Namespace) -> str | None:
    """A fresh database of the throwaway PostgreSQL for one local hub (``--database
    postgres``); None: the hub runs on SQLite."""
    return pg.fresh_database(opts.pg_uri, "deliver") if opts.pg_uri else None


def raw_ceiling(
    tmp: Path, opts: argparse.Namespace, body_bytes: int, client: str = "aiohttp"
) -> dict[str, Any]:
    """A raw client (``aiohttp``, or eventhub's own), in its own process, against a fresh
    receiver."""
    with harness.receiver(tmp, opts.net) as (rlocal, _):
        argv = [sys.executable, __file__, "raw", "--url", rlocal + "/hook", "--client", client]
        argv += ["--seconds", str(opts.raw_seconds), "--body-bytes", str(body_bytes)]
        raw = subprocess.run(
            argv,
            capture_output=True,
            check=True,
        )
    result: dict[str, Any] = orjson.loads(raw.stdout.splitlines()[-1])
    return result


def scenario_throughput(tmp: Path, opts: argparse.Namespace, pool: harness.Pool) -> dict[str, Any]:
    subs, events = opts.subscriptions, opts.backlog
    sample = harness.event_batch(pool, "r", 0, 1)[1:-1]  # the size of one delivered event, roughly
    # The ceiling is measured before and after the hub, and averaged: on a noisy machine one
    # reading on one side of the hub's run can be far off.
    size = len(sample) + 120
    before = raw_ceiling(tmp, opts, size)
    own_before = raw_ceiling(tmp, opts, size, "eventhub")

    with (
        harness.receiver(tmp, opts.net) as (rlocal, rhub),
        harness.served(tmp, tmp / "throughput.db", opts.external, database(opts)) as hub,
    ):

        async def run() -> dict[str, Any]:
            async with aiohttp.ClientSession() as http:
                await harness.wait_http(hub.url + "/readyz")
                await harness.setup_trigger(http, hub)
                # One event a request: a delivery here is a request, like the raw client's.
                await harness.subscribe(http, hub, rhub + "/hook", subs, batch_size=1)
                receiver0 = await harness.receiver_stats(http, rlocal, counts_only=True)
                with harness.py_spy(hub.pid if hub.local else None, profile(opts, "throughput")):
                    started = time.perf_counter()
                    await harness.post_events(http, hub, pool, events)
                    await harness.until_received(
                        http, rlocal, subs * events, timeout=600, poll=0.05
                    )
                    elapsed = time.perf_counter() - started
                receiver1 = await harness.receiver_stats(http, rlocal, counts_only=True)
                return {
                    "deliveries": subs * events,
                    "seconds": elapsed,
                    "deliveries_per_s": subs * events / elapsed,
                    "receiver": harness.RECEIVER,
                    "receiver_cpu_us_per_request": (receiver1["cpu_s"] - receiver0["cpu_s"])
                    / max(1, receiver1["requests"] - receiver0["requests"])
                    * 1e6,
                }

        measured = asyncio.run(run())
    own_after = raw_ceiling(tmp, opts, size, "eventhub")
    after = raw_ceiling(tmp, opts, size)
    ceiling = {
        "requests_per_s": (before["requests_per_s"] + after["requests_per_s"]) / 2,
        "before": before,
        "after": after,
    }
    own = {
        "requests_per_s": (own_before["requests_per_s"] + own_after["requests_per_s"]) / 2,
        "before": own_before,
        "after": own_after,
    }
    ratio = measured["deliveries_per_s"] / ceiling["requests_per_s"]
    return {
        "subscriptions": subs,
        "backlog_events": events,
        "raw_client": ceiling,
        "own_client": own,
        "eventhub": measured,
        "ratio_to_raw_client": ratio,
        "ratio_to_own_client": measured["deliveries_per_s"] / own["requests_per_s"],
        "target_ratio": 0.70,
        "target_met": ratio >= 0.70,
    }


TICK = producer_tool.TICK  # the batched producer sends the events due every 10 ms in one request


async def lean_producer(
    hub: harness.Hub, pool: harness.Pool, rate: int, total: int, producer: str
) -> dict[str, Any]:
    """``total`` events at ``rate`` a second to the hub on the lean producer (``producer.py``):
    one a request (binary mode), or (``batched``) the events due every 10 ms in one request."""
    batch = 0 if producer == "single" else max(1, round(rate * TICK))
    requests = producer_tool.Requests(
        hub.url + "/events", hub.auth, pool, hub.run, "l", batch=batch, total=total
    )
    n = requests.count(total)
    per_s = n / (total / rate)  # requests a second
    lean = producer_tool.Producer(hub.url)
    await lean.connect(producer_tool.pool_size(per_s))
    return await lean.run(requests, n, per_s, timeout=300)


def scenario_latency(
    tmp: Path,
    opts: argparse.Namespace,
    pool: harness.Pool,
    rate: int | None = None,
    producer: str = "single",
) -> dict[str, Any]:
    """Open-loop end-to-end latency at ``rate`` events/s over 10 subscriptions. ``single``:
    one event a request (binary mode); ``batched``: the events due every 10 ms in one request,
    as a producer at thousands of events/s would send them."""
    rate, seconds, subs = rate or opts.rate, opts.latency_seconds, 10
    with (
        harness.receiver(tmp, opts.net, latency=True) as (rlocal, rhub),
        harness.served(
            tmp, tmp / f"latency-{rate}-{producer}.db", opts.external, database(opts)
        ) as hub,
    ):

        async def run() -> dict[str, Any]:
            async with aiohttp.ClientSession() as http:
                await harness.wait_http(hub.url + "/readyz")
                await harness.setup_trigger(http, hub)
                await harness.subscribe(http, hub, rhub + "/hook", subs)
                await http.post(rlocal + "/reset")
                failures = 0
                acks: list[float] = []  # ms from the send to the hub's 200: the ingest's part

                async def post(data: bytes, headers: dict[str, str]) -> None:
                    nonlocal failures
                    sent = time.perf_counter()
                    try:
                        async with http.post(hub.url + "/events", data=data, headers=headers) as r:
                            if r.status != 200:
                                failures += 1
                            else:
                                acks.append((time.perf_counter() - sent) * 1000)
                    except aiohttp.ClientError:
                        failures += 1

                def single(i: int) -> Coroutine[Any, Any, None]:
                    type_, source, _, body = pool[i % len(pool)]
                    headers = harness.binary_headers(hub, type_, source, f"l{i}")
                    return post(harness.timed(body, time.time()), headers)

                batch_headers = {**hub.auth, "content-type": "application/cloudevents-batch+json"}

                def batched(first: int, n: int) -> Coroutine[Any, Any, None]:
                    body = harness.event_batch(pool, hub.run, first, n, "l", time.time())
                    return post(body, batch_headers)

                # Open loop: sends leave on schedule whether or not earlier ones finished,
                # so a slow hub shows up as latency instead of a lower offered rate.
                tasks = []
                total = int(rate * seconds)
                pid = hub.pid if hub.local else None
                receiver0 = (await harness.receiver_stats(http, rlocal, counts_only=True))["cpu_s"]
                hub0 = loadgen.process_cpu_seconds(pid) if pid else None
                cpu0 = cpu_seconds()
                tool: dict[str, Any] = {"client": opts.producer_client}
                with harness.py_spy(pid, profile(opts, f"latency-{rate}-{producer}")):
                    if opts.producer_client == "lean":
                        lean = await lean_producer(hub, pool, rate, total, producer)
                        acks = lean.pop("acks_ms")
                        failures = lean["failures"]
                        sent_for = lean["offered_for_s"]
                        tool.update(lean)
                    else:
                        started = time.perf_counter()
                        sent = 0
                        while sent < total:
                            step = max(1, round(rate * TICK))
                            due = sent if producer == "single" else sent + step
                            delay = started + sent / rate - time.perf_counter()
                            if delay > 0:
                                await asyncio.sleep(delay)
                            if producer == "single":
                                tasks.append(asyncio.create_task(single(sent)))
                                sent += 1
                            else:
                                n = min(due, total) - sent
                                tasks.append(asyncio.create_task(batched(sent, n)))
                                sent += n
                        await asyncio.gather(*tasks)
                        sent_for = time.perf_counter() - started
                        tool["requests"] = len(tasks)
                        tool["cpu_s"] = cpu_seconds() - cpu0
                        tool["cpu_us_per_request"] = tool["cpu_s"] / len(tasks) * 1e6
                hub_cpu = loadgen.process_cpu_seconds(pid) - hub0 if pid and hub0 else None
                with contextlib.suppress(RuntimeError):
                    await harness.until_received(
                        http, rlocal, total * subs, timeout=60, poll=0.05, count="events"
                    )
                stats = await harness.receiver_stats(http, rlocal)
                lat = stats["latencies_ms"]
                return {
                    "producer": producer,
                    # The tools' own cost, beside the hub on the same cores: the producer's
                    # CPU a request (its client: lean or aiohttp), the receiver's a delivery
                    # (its /stats polls included), the hub's an event (from the first send
                    # to the last answer of the ingest).
                    "producer_tool": tool,
                    "receiver": harness.RECEIVER,
                    "receiver_cpu_us_per_request": (stats["cpu_s"] - receiver0)
                    / max(1, stats["requests"])
                    * 1e6,
                    # a delivery may carry many events (the subscriptions' default batchSize)
                    "receiver_cpu_us_per_event": (stats["cpu_s"] - receiver0)
                    / max(1, stats["events"])
                    * 1e6,
                    "hub_cpu_us_per_event": hub_cpu / total * 1e6 if hub_cpu else None,
                    "offered_per_s": rate,
                    "achieved_per_s": total / sent_for,
                    "events": total,
                    "subscriptions": subs,
                    "deliveries": len(lat),
                    "ingest_failures": failures,
                    "p50_ms": harness.percentile(lat, 0.50),
                    "p90_ms": harness.percentile(lat, 0.90),
                    "p99_ms": harness.percentile(lat, 0.99),
                    "p999_ms": harness.percentile(lat, 0.999),
                    "max_ms": max(lat) if lat else None,
                    # Of the end-to-end time, what the ingest took (its commit included):
                    # the rest is the wake-up, the page read and the POST to the receiver.
                    "ack_p50_ms": harness.percentile(acks, 0.50),
                    "ack_p99_ms": harness.percentile(acks, 0.99),
                }

        # The lean producer runs on uvloop; the aiohttp one as it always ran, on asyncio's loop.
        result = (uvloop.run if opts.producer_client == "lean" else asyncio.run)(run())
    result["target_met"] = bool(result["p99_ms"] is not None and result["p99_ms"] < 25)
    return result


def scenario_fanout(tmp: Path, opts: argparse.Namespace, pool: harness.Pool) -> dict[str, Any]:
    subs = opts.fanout
    data = tmp / "fanout.db"
    with harness.receiver(tmp, opts.net) as (rlocal, rhub):
        with harness.served(tmp, data, opts.external, database(opts)) as hub:

            async def run() -> dict[str, Any]:
                async with aiohttp.ClientSession() as http:
                    await harness.wait_http(hub.url + "/readyz")
                    await harness.setup_trigger(http, hub)
                    create_s = await harness.subscribe(
                        http, hub, rhub + "/hook", subs, concurrency=32, batch_size=1
                    )
                    await asyncio.sleep(1.0)
                    await http.post(rlocal + "/reset")
                    pid = hub.pid if hub.local else None
                    receiver0 = await harness.receiver_stats(http, rlocal, counts_only=True)
                    with harness.py_spy(pid, profile(opts, "fanout")):
                        started = time.perf_counter()
                        first = harness.event_batch(pool, hub.run, 0, 1)
                        await harness.post_batch(http, hub, first)
                        await harness.until_received(http, rlocal, subs, timeout=120, poll=0.005)
                        fanout = time.perf_counter() - started
                    receiver1 = await harness.receiver_stats(http, rlocal, counts_only=True)
                    return {
                        "subscriptions": subs,
                        "create_seconds": create_s,
                        "fanout_seconds": fanout,
                        # what the receiver took of the same two cores (its polls included)
                        "receiver": harness.RECEIVER,
                        "receiver_cpu_s": receiver1["cpu_s"] - receiver0["cpu_s"],
                    }

            result = asyncio.run(run())
            if hub.local:
                time.sleep(1.0)
                result["idle_rss_mb"] = harness.rss_mb(hub.pid)
        if not hub.local:
            result["skipped"] = "idle RSS and restart: the hub's process is not ours (--url)"
            result["target_met"] = result["fanout_seconds"] < 2.0
            return result
        again = harness.start_local(tmp, data, hub.run, hub.dsn)
        try:
            result["restart_seconds"] = asyncio.run(
                harness.wait_http(again.url + "/readyz", timeout=120)
            )
            result["restart_rss_mb"] = harness.rss_mb(again.pid)
        finally:
            assert again.proc is not None
            again.proc.stop()
    result["targets"] = {"fanout_seconds": 2.0, "idle_rss_mb": 300, "restart_seconds": 3.0}
    result["target_met"] = (
        result["fanout_seconds"] < 2.0
        and result["restart_rss_mb"] < 300
        and result["restart_seconds"] < 3.0
    )
    return result


def _matrix_cell(
    tmp: Path, opts: argparse.Namespace, pool: harness.Pool, count: int, fmt: str
) -> dict[str, Any]:
    events = max(10, opts.matrix_deliveries // count)
    batch_size = 100 if fmt == "batch" else 1
    with (
        harness.receiver(tmp, opts.net) as (rlocal, rhub),
        harness.served(tmp, tmp / f"matrix-{count}-{fmt}.db", opts.external, database(opts)) as hub,
    ):

        async def run() -> dict[str, Any]:
            async with aiohttp.ClientSession() as http:
                await harness.wait_http(hub.url + "/readyz")
                await harness.setup_trigger(http, hub)
                await harness.subscribe(
                    http, hub, rhub + "/hook", count, 32, batch_size=batch_size, fmt=fmt
                )
                started = time.perf_counter()
                await harness.post_events(http, hub, pool, events)
                # The receiver counts events; asking the hub (its subscription list) every few
                # milliseconds would cost the hub the CPU being measured.
                await harness.until_received(
                    http, rlocal, count * events, timeout=600, poll=0.02, count="events"
                )
                elapsed = time.perf_counter() - started
                # and the hub agrees that it delivered every one of them
                delivered = await harness.delivered_total(http, hub)
                if delivered < count * events:
                    raise RuntimeError(f"hub delivered {delivered} of {count * events}")
                requests = (await harness.receiver_stats(http, rlocal))["requests"]
            return {
                "subscriptions": count,
                "format": fmt,
                "batch_size": batch_size,
                "events": count * events,
                "seconds": elapsed,
                "events_per_s": count * events / elapsed,
                "requests_per_s": requests / elapsed,
            }

        return asyncio.run(run())


def scenario_matrix(tmp: Path, opts: argparse.Namespace, pool: harness.Pool) -> dict[str, Any]:
    """Delivered events/s for each subscription count and each format (``batch`` with
    batchSize 100, the others one event a request)."""
    rows = []
    for count in opts.matrix_counts:
        for fmt in ("envelope", "binary", "structured", "batch"):
            rows.append(_matrix_cell(tmp, opts, pool, count, fmt))
            print(
                f"  {count:>5} x {fmt:10} {rows[-1]['events_per_s']:,.0f} events/s",
                file=sys.stderr,
                flush=True,
            )
    return {"rows": rows}


def scenario_rates(tmp: Path, opts: argparse.Namespace, pool: harness.Pool) -> dict[str, Any]:
    """End-to-end latency percentiles at each offered rate (open loop), for a producer that
    sends one event a request and for one that batches what is due every 10 ms."""
    rows = []
    for producer in opts.producers:
        for rate in opts.rates:
            rows.append(scenario_latency(tmp, opts, pool, rate, producer))
            row = rows[-1]
            print(
                f"  {producer:7} {rate:>6,}/s offered: p50 {row['p50_ms'] or 0:.1f} ms, "
                f"p99 {row['p99_ms'] or 0:.1f} ms",
                file=sys.stderr,
                flush=True,
            )
    return {"rows": rows}


def scenario_recovery(tmp: Path, opts: argparse.Namespace, pool: harness.Pool) -> dict[str, Any]:
    """kill -9 under load: restart time, time until delivery resumes, acknowledged events
    never delivered (must be 0), and deliveries repeated."""
    subs, rate, seconds = 10, opts.recovery_rate, opts.recovery_seconds
    result: dict[str, Any] = {"subscriptions": subs, "offered_per_s": rate}
    if opts.external is not None:
        return {**result, "skipped": "kills the hub's process: not on an eventhub given by --url"}
    data = tmp / "recovery.db"
    with (
        harness.receiver(tmp, opts.net, record=True) as (rlocal, rhub),
        harness.served(tmp, data, None, database(opts)) as first,
    ):
        hubs = [first]

        async def run() -> None:
            async with aiohttp.ClientSession() as http:
                hub = first
                await harness.wait_http(hub.url + "/readyz")
                await harness.setup_trigger(http, hub)
                await harness.subscribe(http, hub, rhub + "/hook", subs)
                type_, source, _, body = pool[0]
                acked: list[str] = []

                async def send(i: int) -> None:
                    # hubs[-1]: after the kill, sends go to the restarted hub.
                    target = hubs[-1]
                    headers = harness.binary_headers(target, type_, source, f"r{i}")
                    with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                        async with http.post(
                            target.url + "/events",
                            data=body,
                            headers=headers,
                            timeout=aiohttp.ClientTimeout(total=5),
                        ) as r:
                            if r.status == 200:
                                acked.append(headers["ce-id"])

                async def resumed(before: int, killed_at: float) -> float:
                    """Seconds from the kill to the first delivery after it."""
                    while (await harness.receiver_stats(http, rlocal))["requests"] <= before:
                        if time.perf_counter() - killed_at > 60:
                            raise RuntimeError("delivery did not resume within 60 s")
                        await asyncio.sleep(0.005)
                    return time.perf_counter() - killed_at

                total = int(rate * seconds)
                tasks = []
                started = time.perf_counter()
                killed_at = None
                watcher = None
                for i in range(total):
                    delay = started + i / rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    if killed_at is None and i >= total // 2:
                        hub.proc.proc.kill()  # type: ignore[union-attr]
                        hub.proc.proc.wait()  # type: ignore[union-attr]
                        killed_at = time.perf_counter()
                        before = (await harness.receiver_stats(http, rlocal))["requests"]
                        hub = harness.start_local(tmp, data, hub.run, hub.dsn)
                        hubs.append(hub)
                        result["restart_seconds"] = await harness.wait_http(hub.url + "/readyz", 60)
                        watcher = asyncio.create_task(resumed(before, killed_at))
                    tasks.append(asyncio.create_task(send(i)))
                await asyncio.gather(*tasks)
                assert watcher is not None
                result["resume_seconds"] = await watcher
                deadline = time.perf_counter() + 120
                while True:
                    async with http.get(rlocal + "/stats?detail=1") as r:
                        stats = await r.json()
                    per_event = stats["per_event"]
                    # Lost: an acknowledged event a subscription never received. (One
                    # stored but unacknowledged when the hub died may arrive too.)
                    lost = sum(subs - per_event.get(event_id, 0) for event_id in acked)
                    if lost == 0 or time.perf_counter() > deadline:
                        break
                    await asyncio.sleep(0.1)
                result.update(
                    acknowledged=len(acked),
                    expected_deliveries=len(acked) * subs,
                    delivered_unique=stats["unique"],
                    lost=lost,
                    duplicates=stats["events"] - stats["unique"],
                )

        try:
            asyncio.run(run())
        finally:
            for hub in hubs[1:]:
                assert hub.proc is not None
                hub.proc.stop()
    result["target_met"] = result.get("lost") == 0
    return result


# -- report ------------------------------------------------------------------------------------


def fmt(value: Any, pattern: str = "{:,.1f}") -> str:
    return "-" if value is None else pattern.format(value)


def markdown(results: dict[str, Any]) -> str:
    lines = ["| scenario | eventhub | ceiling / target | ratio | met |", "|---|---|---|---|---|"]
    t = results.get("throughput")
    if t:
        lines.append(
            f"| delivery, {t['subscriptions']} subscriptions | "
            f"{fmt(t['eventhub']['deliveries_per_s'], '{:,.0f}')} deliveries/s | raw aiohttp "
            f"client {fmt(t['raw_client']['requests_per_s'], '{:,.0f}')} req/s | "
            f"{t['ratio_to_raw_client']:.0%} (target 70%) | {'yes' if t['target_met'] else 'no'} |"
        )
        if "own_client" in t:
            lines.append(
                f"| the same, against eventhub's own HTTP client | | raw loop on "
                f"`eventhub.delivery.pool` {fmt(t['own_client']['requests_per_s'], '{:,.0f}')} "
                f"req/s | {t['ratio_to_own_client']:.0%} | - |"
            )
    # The latency row: the latency scenario's, or else the rates scenario's one-event-a-request
    # row at 1,000 events/s (the target's rate), which the default run measures once, there.
    single = [r for r in results.get("rates", {}).get("rows", []) if r["producer"] == "single"]
    lat = results.get("latency") or next((r for r in single if r["offered_per_s"] == 1000), None)
    if lat:
        lines.append(
            f"| end-to-end latency, {lat['offered_per_s']:,} events/s, {lat['subscriptions']} "
            f"subscriptions | p50 {fmt(lat['p50_ms'], '{:.1f}')} ms, p99 "
            f"{fmt(lat['p99_ms'], '{:.1f}')} ms | p99 < 25 ms at 1,000 events/s | - | "
            f"{'yes' if lat['target_met'] else 'no'} |"
        )
    f = results.get("fanout")
    if f:
        lines.append(
            f"| fan-out, one event to {f['subscriptions']:,} subscriptions | "
            f"{f['fanout_seconds']:.2f} s | < 2 s | - | "
            f"{'yes' if f['fanout_seconds'] < 2 else 'no'} |"
        )
    if f and "restart_rss_mb" in f:
        lines.append(
            f"| {f['subscriptions']:,} idle subscriptions | RSS {f['restart_rss_mb']:.0f} MB "
            f"after restart ({f['idle_rss_mb']:.0f} MB after the run), restart "
            f"{f['restart_seconds']:.2f} s | < 300 MB, < 3 s | - | "
            f"{'yes' if f['restart_rss_mb'] < 300 and f['restart_seconds'] < 3 else 'no'} |"
        )
    m = results.get("matrix")
    if m:
        lines += [
            "",
            "| subscriptions | format | batchSize | events/s | requests/s |",
            "|---:|---|---:|---:|---:|",
        ]
        lines += [
            f"| {r['subscriptions']:,} | {r['format']} | {r['batch_size']} | "
            f"{r['events_per_s']:,.0f} | {r['requests_per_s']:,.0f} |"
            for r in m["rows"]
        ]
    rates = results.get("rates")
    if rates:
        lines += [
            "",
            "| producer | offered events/s (10 subscriptions) | achieved | p50 ms | p90 ms "
            "| p99 ms | p99.9 ms | of which ingest (send → 200): p50 / p99 ms |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r.get('producer', 'single')} | {r['offered_per_s']:,} | "
            f"{r['achieved_per_s']:,.0f} | {fmt(r['p50_ms'])} | {fmt(r.get('p90_ms'))} | "
            f"{fmt(r['p99_ms'])} | {fmt(r.get('p999_ms'))} | "
            f"{fmt(r.get('ack_p50_ms'))} / {fmt(r.get('ack_p99_ms'))} |"
            for r in rates["rows"]
        ]
        # What the tools took of the same cores, so a missed rate can be told from a slow tool.
        tools = [
            f"{r.get('producer', 'single')} {r['offered_per_s']:,}/s: producer "
            f"{t['client']} {fmt(t.get('cpu_us_per_request'), '{:.0f}')} µs a request"
            + (f", {t['late']:,} of {t['requests']:,} sent > 2 ms late" if "late" in t else "")
            + f"; receiver {r['receiver']} {fmt(r.get('receiver_cpu_us_per_event'), '{:.0f}')}"
            " µs an event"
            for r in rates["rows"]
            if (t := r.get("producer_tool"))
        ]
        if tools:
            lines += ["", "Tools' CPU: " + "; ".join(tools) + "."]
    rec = results.get("recovery")
    if rec and "skipped" not in rec:
        lines += [
            "",
            f"kill -9 at {rec['offered_per_s']:,} events/s over {rec['subscriptions']} "
            f"subscriptions: restart {fmt(rec.get('restart_seconds'), '{:.2f}')} s, delivery "
            f"resumed {fmt(rec.get('resume_seconds'), '{:.2f}')} s after the kill; "
            f"{rec.get('acknowledged', 0):,} events acknowledged, **{rec.get('lost')} lost**, "
            f"{rec.get('duplicates')} deliveries repeated.",
        ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command")
    raw = sub.add_parser("raw", help="(internal) a raw client: the ceiling of delivery")
    raw.add_argument("--url", required=True)
    raw.add_argument("--client", choices=["aiohttp", "eventhub"], default="aiohttp")
    raw.add_argument("--seconds", type=float, default=5.0)
    raw.add_argument("--concurrency", type=int, default=64)
    raw.add_argument("--body-bytes", type=int, default=1200)
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    p.add_argument(
        "--only",
        choices=["throughput", "latency", "fanout", "matrix", "rates", "recovery"],
        action="append",
    )
    p.add_argument("--subscriptions", type=int, default=100)
    p.add_argument("--backlog", type=int, default=300, help="events, each to every subscription")
    p.add_argument("--raw-seconds", type=float, default=5.0)
    p.add_argument("--rate", type=int, default=1000)
    p.add_argument("--latency-seconds", type=float, default=10.0)
    p.add_argument("--fanout", type=int, default=10_000)
    p.add_argument(
        "--matrix-counts", type=lambda v: [int(x) for x in v.split(",")], default=[1, 100, 1000]
    )
    p.add_argument(
        "--matrix-deliveries",
        type=int,
        default=10_000,
        help="events x subscriptions per matrix cell",
    )
    p.add_argument(
        "--rates", type=lambda v: [int(x) for x in v.split(",")], default=[500, 1000, 2000, 5000]
    )
    p.add_argument(
        "--producers",
        type=lambda v: v.split(","),
        default=["single", "batched"],
        help="latency producers for --only rates: single (one event a request), batched",
    )
    p.add_argument(
        "--receiver",
        choices=sorted(harness.RECEIVERS),
        default="lean",
        help="the webhook receiver: lean (uvloop + httptools) or aiohttp (the old one)",
    )
    p.add_argument(
        "--producer-client",
        choices=["lean", "aiohttp"],
        default="lean",
        help="the latency scenarios' producer: lean (producer.py) or aiohttp (the old one)",
    )
    p.add_argument("--recovery-rate", type=int, default=500)
    p.add_argument("--recovery-seconds", type=float, default=6.0)
    p.add_argument("--out", type=Path)
    p.add_argument(
        "--database",
        choices=["sqlite", "postgres"],
        default="sqlite",
        help="postgres: each local hub on a fresh database of a throwaway PostgreSQL",
    )
    p.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="profile the hub during throughput, fanout and each latency run (bench/stacks.py)",
    )
    p.add_argument("--url", help="an eventhub already running, instead of a fresh local one")
    p.add_argument("--key", help="with --url: an admin API key of that eventhub")
    p.add_argument("--receiver-host", default="127.0.0.1", help="where receivers listen")
    p.add_argument("--advertise", help="the receivers' host as the hub reaches them")
    args = p.parse_args(argv)
    if args.command == "raw":
        return args
    if args.url and not args.key:
        p.error("--url needs --key (an admin key: the run makes a model and subscriptions)")
    if args.url and args.database == "postgres":
        p.error("--database postgres starts hubs of its own: not with --url")
    args.pg_uri = None  # set in main() while the throwaway server runs
    args.external = harness.Hub(args.url.rstrip("/"), args.key, "") if args.url else None
    args.net = harness.Network(args.receiver_host, args.advertise or args.receiver_host)
    harness.RECEIVER = args.receiver  # every scenario's, the raw ceilings' too: like for like
    if args.quick:
        args.subscriptions, args.backlog, args.raw_seconds = 10, 50, 1.0
        args.rate, args.latency_seconds, args.fanout = 200, 2.0, 200
        args.matrix_counts, args.matrix_deliveries = [1, 10], 500
        args.rates, args.recovery_rate, args.recovery_seconds = [100, 200], 100, 3.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "raw":
        body = b"x" * args.body_bytes
        loop = raw_client if args.client == "aiohttp" else own_client
        result = uvloop.run(loop(args.url, args.seconds, args.concurrency, body))
        print(orjson.dumps(result).decode())
        return 0
    import payloads

    pool = payloads.build_pool()
    chosen = args.only or ["throughput", "fanout", "matrix", "rates", "recovery"]
    results: dict[str, Any] = {
        "benchmark": "deliver",
        "started": datetime.now(UTC).isoformat(),
        "machine": harness.machine(),
        "quick": args.quick,
        "target": args.url or "a fresh local eventhub for each scenario",
        "database": args.database,
    }
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="eventhub-deliver-")))
        if args.database == "postgres":
            args.pg_uri = stack.enter_context(pg.server())
        for name in chosen:
            run = {
                "throughput": scenario_throughput,
                "latency": scenario_latency,
                "fanout": scenario_fanout,
                "matrix": scenario_matrix,
                "rates": scenario_rates,
                "recovery": scenario_recovery,
            }[name]
            print(f"running {name} ...", file=sys.stderr, flush=True)
            results[name] = run(tmp, args, pool)
    results["markdown"] = markdown(results)
    harness.write_report(results, "deliver", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
