"""Process instances (issue 9): 10,000 waiting instances woken by 10,000 events at 1,000/s.

Every party is its own process on 127.0.0.1: the hub (``eventhub serve`` on a fresh
database), the receiver of the call steps (``receiver.py --calls``: the first arrival of each
``ce-id``), the load generator (this file, ``wake`` sub-command), and for the ceiling a bare
relay (this file, ``relay``). The definition is the seed's order flow: started by
``order.created`` (filters on this run's id), step ``notify`` calls the receiver, step
``approval`` waits for ``order.approved``, step ``done`` calls the receiver again.

1. **empty**: the hub's RSS after a warm-up request, before any definition; SIGTERM, restart,
   seconds from the process start to ``/readyz`` 200 and to the first API read: the baseline.
2. **start**: ``--instances`` ``order.created`` events (batches of 100, two in flight); until
   the receiver has every ``notify`` call and the API lists every instance Waiting. RSS then,
   above the empty hub's.
3. **restart** with them all Waiting: SIGTERM, the time to ``/readyz`` and to an API read, RSS.
4. **wake**: one ``order.approved`` event per instance (binary mode, its ``cxpinstanceid``),
   open loop at ``--rate`` events/s with at most ``--concurrency`` in flight. Latency is the
   generator's send (epoch clock) to the ``done`` call's arrival at the receiver (same clock,
   same machine). The receipts' ``correlation`` words are counted; every instance must end
   Completed.
5. **ceilings**, the same generator at the same rate, right before the wake: straight to the
   receiver (one hop: the generator and the receiver alone), and through a bare aiohttp relay
   that answers at once and forwards a call-shaped request (two hops, nothing stored, nothing
   signed): what the machine gives any hub on this path.

    .venv/bin/python bench/processes.py                        # 10,000 instances at 1,000/s
    .venv/bin/python bench/processes.py --instances 200 --rate 200

Prints a Markdown table and writes bench/results/processes-<date>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import harness
import loadgen
import orjson
import uvloop
from aiohttp import web

TARGET_P99_MS = 50.0
TARGET_RSS_MB = 100.0
TARGET_RESTART_S = 2.0
DEFINITION = "bench-orders"
SOURCE = "/bench/shop"
START_BATCH = 100
WAKE_STEP = 2  # the index of the call that follows the wait: its ce-id is call_<instance>_2
# Camunda 8's published figures on three nodes, for comparison (the issue's words).
CAMUNDA = "Camunda 8, three nodes: ~250 process instances/s, p99 350-700 ms"


def call_id(instance_id: str, step_index: int) -> str:
    """The ``ce-id`` of a call step (``eventhub.processes.lifecycle.call_id``; repeated here
    so the generator and the relay run without eventhub on their path)."""
    return f"call_{instance_id}_{step_index}"


def definition(run: str, callback: str) -> dict[str, Any]:
    return {
        "name": "Bench order approval",
        "start": {"filters": [{"exact": {"type": "order.created"}}, {"exact": {"benchrun": run}}]},
        "steps": [
            {"id": "notify", "call": {"uri": callback}},
            {"id": "approval", "wait": {"type": "order.approved"}},
            {"id": "done", "call": {"uri": callback}},
        ],
    }


def start_batch(run: str, first: int, n: int) -> bytes:
    """``order.created`` events ``first`` … ``first + n - 1`` of this run, as a JSON batch."""
    events = [
        {
            "specversion": "1.0",
            "id": f"{run}-o{i}",
            "source": SOURCE,
            "type": "order.created",
            "benchrun": run,
            "datacontenttype": "application/json",
            "data": {"orderId": f"o-{i}", "amount": i % 500 + 1, "customer": f"c{i % 97}"},
        }
        for i in range(first, first + n)
    ]
    return orjson.dumps(events)


# -- the hub's side ----------------------------------------------------------------------------


async def until_ok(
    http: aiohttp.ClientSession, url: str, began: float, headers: dict[str, str] | None = None
) -> float:
    """Seconds from ``began`` (perf_counter) until ``url`` answers 200."""
    while time.perf_counter() - began < 120:
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(url, headers=headers) as r:
                if r.status == 200:
                    return time.perf_counter() - began
        await asyncio.sleep(0.005)
    raise RuntimeError(f"{url} did not answer 200 within 120 s")


async def warm_up(http: aiohttp.ClientSession, hub: harness.Hub) -> None:
    """What a hub in use has done at least once: an API read, a stored event."""
    for path in ("/api/processes", "/api/instances?limit=1"):
        async with http.get(hub.url + path, headers=hub.auth) as r:
            if r.status != 200:
                raise RuntimeError(f"GET {path}: {r.status} {await r.text()}")
    headers = harness.binary_headers(hub, "bench.warmup", SOURCE, "warmup")
    async with http.post(hub.url + "/events", data=b"{}", headers=headers) as r:
        if r.status != 200:
            raise RuntimeError(f"POST /events: {r.status} {await r.text()}")


async def restart(
    http: aiohttp.ClientSession, tmp: Path, data: Path, hub: harness.Hub
) -> tuple[harness.Hub, dict[str, float]]:
    """SIGTERM ``hub``, start it again on ``data``; seconds to stop, and from the new process's
    start to ``/readyz`` 200 and to the first successful API read."""
    assert hub.proc is not None
    stopping = time.perf_counter()
    hub.proc.stop()
    stop_s = time.perf_counter() - stopping
    began = time.perf_counter()
    again = harness.start_local(tmp, data, hub.run)
    ready, read = await asyncio.gather(
        until_ok(http, again.url + "/readyz", began),
        until_ok(http, again.url + "/api/instances?state=Waiting&limit=1", began, again.auth),
    )
    return again, {"stop_seconds": stop_s, "readyz_seconds": ready, "api_read_seconds": read}


async def instance_ids(http: aiohttp.ClientSession, hub: harness.Hub, state: str) -> list[str]:
    """Every instance of the run's definition in ``state``, oldest first (pages of 1,000)."""
    ids: list[str] = []
    after = 0
    while True:
        query = f"definition={DEFINITION}&state={state}&limit=1000&after={after}"
        async with http.get(f"{hub.url}/api/instances?{query}", headers=hub.auth) as r:
            if r.status != 200:
                raise RuntimeError(f"GET /api/instances: {r.status} {await r.text()}")
            page = await r.json()
        ids += [i["id"] for i in page["instances"]]
        if page["nextAfter"] is None:
            return ids
        after = page["nextAfter"]


async def until_state(
    http: aiohttp.ClientSession, hub: harness.Hub, state: str, n: int, timeout: float
) -> list[str]:
    deadline = time.perf_counter() + timeout
    while True:
        ids = await instance_ids(http, hub, state)
        if len(ids) >= n or time.perf_counter() > deadline:
            return ids
        await asyncio.sleep(0.2)


async def start_instances(
    http: aiohttp.ClientSession, hub: harness.Hub, receiver: str, n: int
) -> dict[str, Any]:
    """``n`` instances from ``order.created`` events, until every one is Waiting."""
    starts = list(range(0, n, START_BATCH))
    timeout = max(60.0, n / 20)

    async def poster() -> None:
        while starts:
            first = starts.pop(0)
            body = start_batch(hub.run, first, min(START_BATCH, n - first))
            await harness.post_batch(http, hub, body)

    began = time.perf_counter()
    await asyncio.gather(poster(), poster())
    posted = time.perf_counter() - began
    # The receiver is asked often (it is cheap); the hub's API only once every call arrived.
    await harness.until_received(http, receiver, n, timeout=timeout, poll=0.05, count="calls")
    called = time.perf_counter() - began
    waiting = await until_state(http, hub, "Waiting", n, timeout)
    seconds = time.perf_counter() - began
    if len(waiting) != n:
        raise RuntimeError(f"{len(waiting)} of {n} instances are Waiting after {timeout:.0f} s")
    return {
        "ids": waiting,
        "post_seconds": posted,
        "called_seconds": called,
        "waiting_seconds": seconds,
        "instances_per_s": n / seconds,
    }


# -- the load generator (``wake``) and the relay (``relay``), each its own process -------------


async def generate(opts: argparse.Namespace) -> dict[str, Any]:
    """One request per instance id, open loop: request ``i`` leaves at ``i / rate`` unless
    ``concurrency`` requests are still unanswered (then it waits, and that is counted)."""
    ids: list[str] = orjson.loads(opts.ids.read_bytes())
    permits = asyncio.Semaphore(opts.concurrency)
    sent: dict[str, float] = {}
    correlation: Counter[str] = Counter()
    state = {"failures": 0, "held": 0}
    auth = {"Authorization": f"Bearer {opts.key}"} if opts.key else {}
    connector = aiohttp.TCPConnector(limit=opts.concurrency)
    timeout = aiohttp.ClientTimeout(total=30)

    def request(i: int, instance_id: str) -> dict[str, str]:
        headers = {
            **auth,
            "content-type": "application/json",
            "ce-specversion": "1.0",
            "ce-source": SOURCE,
            "ce-type": "order.approved",
            "ce-cxpinstanceid": instance_id,
            "ce-benchrun": opts.run,
        }
        # Straight to the receiver, the request stands for the call the hub would make.
        direct = opts.mode == "direct"
        headers["ce-id"] = call_id(instance_id, WAKE_STEP) if direct else f"{opts.run}-a{i}"
        return headers

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def one(i: int, instance_id: str) -> None:
            try:
                headers = request(i, instance_id)
                body = b'{"approvedBy":"bench","n":%d}' % i
                sent[instance_id] = time.time()
                async with http.post(opts.url, data=body, headers=headers) as r:
                    answer = await r.read()
                    if r.status != 200:
                        state["failures"] += 1
                    elif opts.mode == "hub":
                        receipt = orjson.loads(answer)["events"][0]
                        correlation[str(receipt.get("correlation"))] += 1
            except (aiohttp.ClientError, TimeoutError):
                state["failures"] += 1
            finally:
                permits.release()

        tasks = []
        started = time.perf_counter()
        for i, instance_id in enumerate(ids):
            delay = started + i / opts.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if permits.locked():
                state["held"] += 1
            await permits.acquire()
            tasks.append(asyncio.create_task(one(i, instance_id)))
        sending = time.perf_counter() - started
        await asyncio.gather(*tasks)
        answered = time.perf_counter() - started
    return {
        "mode": opts.mode,
        "requests": len(ids),
        "offered_per_s": opts.rate,
        "achieved_per_s": (len(ids) - 1) / sending if len(ids) > 1 and sending > 0 else None,
        "send_seconds": sending,
        "answered_seconds": answered,
        "failures": state["failures"],
        "held_by_concurrency": state["held"],
        "correlation": dict(correlation),
        "sent": sent,
    }


def relay(opts: argparse.Namespace) -> None:
    """A bare relay: answers each request at once, then forwards a call-shaped request (the
    ``ce-id`` of the step after the wait) to ``--to``; stores nothing, signs nothing."""
    pending: set[asyncio.Task[None]] = set()

    async def forward(http: aiohttp.ClientSession, instance_id: str, body: bytes) -> None:
        headers = {
            "content-type": "application/json",
            "ce-specversion": "1.0",
            "ce-id": call_id(instance_id, WAKE_STEP),
            "ce-source": "/bench/relay",
            "ce-type": "eventhub.instance.call",
            "ce-cxpinstanceid": instance_id,
        }
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with http.post(opts.to, data=body, headers=headers) as r:
                await r.read()

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        instance_id = request.headers.get("ce-cxpinstanceid", "")
        task = asyncio.create_task(forward(request.app["http"], instance_id, body))
        pending.add(task)
        task.add_done_callback(pending.discard)
        return web.Response(body=b'{"events":[{"correlation":"woke"}]}', status=200)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def session(app: web.Application) -> Any:
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(connector=connector) as http:
            app["http"] = http
            yield

    app = web.Application()
    app.cleanup_ctx.append(session)
    app.router.add_post("/events", hook)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=opts.port, access_log=None, print=None, backlog=4096)


def wake(
    tmp: Path, url: str, key: str, run: str, ids: list[str], mode: str, opts: argparse.Namespace
) -> dict[str, Any]:
    """Run the load generator in its own process; its result."""
    ids_file, out = tmp / f"ids-{mode}.json", tmp / f"sent-{mode}.json"
    ids_file.write_bytes(orjson.dumps(ids))
    argv = [sys.executable, __file__, "wake", "--url", url, "--key", key, "--run", run]
    argv += ["--ids", str(ids_file), "--mode", mode, "--rate", str(opts.rate)]
    argv += ["--concurrency", str(opts.concurrency), "--out", str(out)]
    subprocess.run(argv, check=True, cwd=harness.BENCH.parent)
    result: dict[str, Any] = orjson.loads(out.read_bytes())
    return result


async def arrivals(http: aiohttp.ClientSession, receiver: str) -> dict[str, float]:
    async with http.get(receiver + "/stats?detail=1") as r:
        found: dict[str, float] = (await r.json())["arrivals"]
        return found


async def latency(
    http: aiohttp.ClientSession, receiver: str, generated: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """Send -> arrival of the call after the wait, for every instance: percentiles in ms."""
    sent: dict[str, float] = generated.pop("sent")
    with contextlib.suppress(RuntimeError):
        await harness.until_received(
            http, receiver, len(sent), timeout=timeout, poll=0.05, count="calls"
        )
    seen = await arrivals(http, receiver)
    timed = sorted(
        (at, (seen[key] - at) * 1000)
        for instance_id, at in sent.items()
        if (key := call_id(instance_id, WAKE_STEP)) in seen
    )
    ms = [latency for _, latency in timed]
    # By tenth of the run, in send order: a queue that grows shows as a rising p50.
    tenth = max(1, len(ms) // 10)
    tenths = [ms[i : i + tenth] for i in range(0, len(ms), tenth)]
    return {
        "p50_ms_by_tenth": [round(harness.percentile(t, 0.50) or 0, 1) for t in tenths],
        "p99_ms_by_tenth": [round(harness.percentile(t, 0.99) or 0, 1) for t in tenths],
        **generated,
        "arrived": len(ms),
        "missing": len(sent) - len(ms),
        "p50_ms": harness.percentile(ms, 0.50),
        "p90_ms": harness.percentile(ms, 0.90),
        "p99_ms": harness.percentile(ms, 0.99),
        "p999_ms": harness.percentile(ms, 0.999),
        "max_ms": max(ms) if ms else None,
    }


# -- the scenario ------------------------------------------------------------------------------


def run(tmp: Path, opts: argparse.Namespace) -> dict[str, Any]:
    data = tmp / "processes.db"
    n = opts.instances
    result: dict[str, Any] = {"instances": n, "offered_per_s": opts.rate}
    with harness.receiver(tmp, harness.Network(), calls=True) as (rlocal, rhub):
        hub = harness.start_local(tmp, data, harness.new_run_id())
        hubs = [hub]
        try:
            result.update(asyncio.run(_phases(tmp, data, hubs, rlocal, rhub, opts)))
        finally:
            for each in hubs:
                assert each.proc is not None
                each.proc.stop()
    waiting = result["waiting"]
    result["rss_above_empty_mb"] = waiting["rss_mb"] - result["empty"]["rss_mb"]
    result["restart_over_empty"] = (
        result["restart"]["readyz_seconds"] / result["empty"]["restart"]["readyz_seconds"]
    )
    wake_ = result["wake"]
    for name in ("direct", "relay"):
        ceiling = result["ceilings"][name]
        for q in ("p50_ms", "p99_ms"):
            if wake_[q] is not None and ceiling[q]:
                result[f"{q[:3]}_over_{name}"] = wake_[q] / ceiling[q]
    result["targets"] = {
        "p99_ms": TARGET_P99_MS,
        "rss_above_empty_mb": TARGET_RSS_MB,
        "restart_seconds": TARGET_RESTART_S,
    }
    result["target_met"] = bool(
        wake_["p99_ms"] is not None
        and wake_["p99_ms"] < TARGET_P99_MS
        and wake_["missing"] == 0
        and result["rss_above_empty_mb"] < TARGET_RSS_MB
        and result["restart"]["readyz_seconds"] < TARGET_RESTART_S
    )
    return result


async def _phases(
    tmp: Path,
    data: Path,
    hubs: list[harness.Hub],
    rlocal: str,
    rhub: str,
    opts: argparse.Namespace,
) -> dict[str, Any]:
    n = opts.instances
    out: dict[str, Any] = {}
    say = _say
    async with aiohttp.ClientSession() as http:
        hub = hubs[-1]
        await harness.wait_http(hub.url + "/readyz")
        await warm_up(http, hub)
        await asyncio.sleep(1.0)
        empty: dict[str, Any] = {"rss_mb": harness.rss_mb(hub.pid)}
        hub, empty["restart"] = await restart(http, tmp, data, hub)
        hubs.append(hub)
        await warm_up(http, hub)
        await asyncio.sleep(1.0)
        empty["restarted_rss_mb"] = harness.rss_mb(hub.pid)
        out["empty"] = empty
        say(
            f"empty hub: {empty['rss_mb']:.0f} MB, restart {empty['restart']['readyz_seconds']:.2f} s"
        )

        async with http.put(
            f"{hub.url}/api/processes/{DEFINITION}",
            json=definition(hub.run, rhub + "/hook"),
            headers=hub.auth,
        ) as r:
            if r.status not in (200, 201):
                raise RuntimeError(f"PUT the definition: {r.status} {await r.text()}")
        cpu = loadgen.process_cpu_seconds(hub.pid)
        started = await start_instances(http, hub, rlocal, n)
        started["hub_cpu_us_per_instance"] = _cpu_us(hub.pid, cpu, n)
        ids = started.pop("ids")
        await asyncio.sleep(1.0)
        out["waiting"] = {**started, "rss_mb": harness.rss_mb(hub.pid)}
        say(
            f"{n:,} Waiting in {started['waiting_seconds']:.1f} s, {out['waiting']['rss_mb']:.0f} MB"
        )

        hub, out["restart"] = await restart(http, tmp, data, hub)
        hubs.append(hub)
        await asyncio.sleep(1.0)
        out["restart"]["rss_mb"] = harness.rss_mb(hub.pid)
        say(f"restart with {n:,} Waiting: {out['restart']['readyz_seconds']:.2f} s")

        # The ceilings first, on the same receiver: its arrivals are forgotten after each.
        timeout = 60 + n / opts.rate
        ceilings: dict[str, Any] = {}
        await http.post(rlocal + "/reset")
        generated = wake(tmp, rlocal + "/hook", "", hub.run, ids, "direct", opts)
        ceilings["direct"] = await latency(http, rlocal, generated, timeout)
        await http.post(rlocal + "/reset")
        port = harness.free_port()
        argv = [sys.executable, __file__, "relay", "--port", str(port), "--to", rlocal + "/hook"]
        relay_proc = harness.Process(argv, tmp / f"relay-{port}.log")
        try:
            await harness.wait_http(f"http://127.0.0.1:{port}/healthz")
            generated = wake(
                tmp, f"http://127.0.0.1:{port}/events", "", hub.run, ids, "relay", opts
            )
            ceilings["relay"] = await latency(http, rlocal, generated, timeout)
        finally:
            relay_proc.stop()
        out["ceilings"] = ceilings
        await http.post(rlocal + "/reset")
        for name, c in ceilings.items():
            say(f"ceiling {name}: p50 {c['p50_ms']:.1f} ms, p99 {c['p99_ms']:.1f} ms")

        spy = opts.py_spy / "wake.txt" if opts.py_spy else None
        with harness.py_spy(hub.pid, spy):
            cpu = loadgen.process_cpu_seconds(hub.pid)
            generated = wake(tmp, hub.url + "/events", hub.key, hub.run, ids, "hub", opts)
            woken = await latency(http, rlocal, generated, timeout)
        # Read before the API is asked for the Completed (pages of instances cost CPU too):
        # the ingest, the correlation, the call, the commits after it (all but the last few).
        woken["hub_cpu_us_per_wake"] = _cpu_us(hub.pid, cpu, n)
        completed = await until_state(http, hub, "Completed", n, timeout=60)
        woken["completed"] = len(completed)
        woken["woke"] = woken["correlation"].get("woke", 0)
        out["wake"] = woken
        say(
            f"wake at {opts.rate:,}/s: p50 {woken['p50_ms'] or 0:.1f} ms, "
            f"p99 {woken['p99_ms'] or 0:.1f} ms, {woken['woke']:,} woke, "
            f"{woken['completed']:,} Completed"
        )
        out["run"] = hub.run
    return out


def _cpu_us(pid: int, before: float | None, n: int) -> float | None:
    """The hub's CPU (every thread) since ``before``, in µs for each of ``n``."""
    after = loadgen.process_cpu_seconds(pid)
    return None if before is None or after is None else (after - before) / n * 1e6


def _say(line: str) -> None:
    print(f"  {line}", file=sys.stderr, flush=True)


# -- report ------------------------------------------------------------------------------------


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} µs"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def markdown(r: dict[str, Any]) -> str:
    n, empty, waiting, again = r["instances"], r["empty"], r["waiting"], r["restart"]
    w, direct, relayed = r["wake"], r["ceilings"]["direct"], r["ceilings"]["relay"]

    def met(ok: bool) -> str:
        return "yes" if ok else "**no**"

    p99_ok = w["p99_ms"] is not None and w["p99_ms"] < TARGET_P99_MS and w["missing"] == 0
    lines = [
        f"| {n:,} instances, woken at {r['offered_per_s']:,} events/s | eventhub | "
        "ceiling / target | met |",
        "|---|---|---|---|",
        f"| start {n:,} instances (order.created, batches of {START_BATCH}) until all Waiting "
        f"| {waiting['waiting_seconds']:.1f} s: {waiting['instances_per_s']:,.0f} instances/s "
        f"(every first call in {waiting['called_seconds']:.1f} s); hub CPU "
        f"{_us(waiting.get('hub_cpu_us_per_instance'))} an instance | {CAMUNDA} | - |",
        f"| RSS: empty hub / {n:,} Waiting | {empty['rss_mb']:.0f} / {waiting['rss_mb']:.0f} MB: "
        f"**{r['rss_above_empty_mb']:.0f} MB** above empty | < {TARGET_RSS_MB:g} MB above "
        f"| {met(r['rss_above_empty_mb'] < TARGET_RSS_MB)} |",
        f"| RSS after a restart: empty / {n:,} Waiting | {empty['restarted_rss_mb']:.0f} / "
        f"{again['rss_mb']:.0f} MB | - | - |",
        f"| restart with {n:,} Waiting: to /readyz (to an API read) | "
        f"**{again['readyz_seconds']:.2f} s** ({again['api_read_seconds']:.2f} s); "
        f"stop {again['stop_seconds']:.2f} s | empty hub {empty['restart']['readyz_seconds']:.2f}"
        f" s ({empty['restart']['api_read_seconds']:.2f} s): x{r['restart_over_empty']:.1f}; "
        f"< {TARGET_RESTART_S:g} s | {met(again['readyz_seconds'] < TARGET_RESTART_S)} |",
        f"| wake-up: send → the next call at the receiver | p50 {_ms(w['p50_ms'])}, p90 "
        f"{_ms(w['p90_ms'])}, **p99 {_ms(w['p99_ms'])}**, max {_ms(w['max_ms'])} ms; p50 by "
        f"tenth of the run {', '.join(f'{v:g}' for v in w['p50_ms_by_tenth'])} | p99 < "
        f"{TARGET_P99_MS:g} ms | {met(p99_ok)} |",
        f"| the wake events | {w['achieved_per_s'] or 0:,.0f}/s achieved, {w['woke']:,} receipts "
        f"`woke`, {w['failures']} failed, {w['missing']} calls missing, {w['completed']:,} "
        f"Completed; hub CPU {_us(w.get('hub_cpu_us_per_wake'))} a wake-up | {n:,} | "
        f"{met(w['woke'] == n and w['completed'] == n)} |",
        f"| ceiling: the generator straight to the receiver | p50 {_ms(direct['p50_ms'])}, p99 "
        f"{_ms(direct['p99_ms'])} ms | eventhub x{r.get('p50_over_direct', 0):.1f} (p50), "
        f"x{r.get('p99_over_direct', 0):.1f} (p99) | - |",
        f"| ceiling: through a bare relay (answers, then forwards) | p50 "
        f"{_ms(relayed['p50_ms'])}, p99 {_ms(relayed['p99_ms'])} ms | eventhub "
        f"x{r.get('p50_over_relay', 0):.1f} (p50), x{r.get('p99_over_relay', 0):.1f} (p99) | - |",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command")
    gen = sub.add_parser("wake", help="(internal) the load generator")
    gen.add_argument("--url", required=True)
    gen.add_argument("--key", default="")
    gen.add_argument("--run", required=True)
    gen.add_argument("--ids", type=Path, required=True, help="a JSON list of instance ids")
    gen.add_argument("--mode", choices=["hub", "relay", "direct"], required=True)
    gen.add_argument("--rate", type=float, required=True)
    gen.add_argument("--concurrency", type=int, default=256)
    gen.add_argument("--out", type=Path, required=True)
    rel = sub.add_parser("relay", help="(internal) the bare relay of the ceiling")
    rel.add_argument("--port", type=int, required=True)
    rel.add_argument("--to", required=True)
    p.add_argument("--instances", type=int, default=10_000)
    p.add_argument("--rate", type=int, default=1000, help="wake events a second")
    p.add_argument("--concurrency", type=int, default=256, help="wake requests in flight, most")
    p.add_argument("--out", type=Path)
    p.add_argument("--py-spy", type=Path, metavar="DIR", help="profile the hub during the wake")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if opts.command == "wake":
        result = uvloop.run(generate(opts))
        opts.out.write_bytes(orjson.dumps(result))
        return 0
    if opts.command == "relay":
        relay(opts)
        return 0
    began = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="eventhub-processes-") as folder:
        result = run(Path(folder), opts)
    result["benchmark"] = "processes"
    result["started"] = began.isoformat()
    result["markdown"] = markdown(result)
    harness.write_report(result, "processes", opts.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
