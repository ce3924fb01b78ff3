"""Two eventhub processes on one PostgreSQL against one (issue 12): delivery throughput,
end-to-end latency, the scaling ratio two/one, and fail-over after SIGKILL.

A fresh database of a throwaway PostgreSQL (``pg.py``) and hub processes on it: ``eventhub
serve``, the same ``EVENTHUB_SECRET_KEY`` and ``EVENTHUB_DATABASE``, a port each, a small
``EVENTHUB_LEASE_SECONDS`` (3 s; 1 s at ``--size tiny``). One process first, with the run's
models published on it (as a deployment would; one published later reaches the others too);
its figures; then a second process joins, and the same scenarios again. Each scenario's subscriptions are created on the first process
and spread by the leases (the run waits until every process holds its fair share), and are
deleted afterwards, so the next scenario's spread alone; producers send to the processes in
turn (round robin).

    throughput  S subscriptions (one event a delivery), a backlog of E events: deliveries/s
    latency     10 subscriptions, one event a request, open loop at R events/s: the
                producer's send -> the receiver has it (one machine, one clock)
    failover    two processes only: F subscriptions, a steady stream; SIGKILL the second
                process; for each subscription it held, the kill -> its first delivery by the
                survivor, and the kill -> caught up (its first delivery again of an event sent
                after the kill, under 250 ms end to end)

    .venv/bin/python bench/pg_scale.py --size quick
    .venv/bin/python bench/pg_scale.py --size full --rate 500 --lease-seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import harness
import pg

SIZES: dict[str, dict[str, float]] = {
    "tiny": {
        "subscriptions": 3,
        "backlog": 10,
        "rate": 40,
        "seconds": 0.5,
        "failover_subscriptions": 4,
        "failover_rate": 20,
        "lease": 1,
    },
    "quick": {
        "subscriptions": 20,
        "backlog": 100,
        "rate": 1000,
        "seconds": 3,
        "failover_subscriptions": 20,
        "failover_rate": 50,
        "lease": 3,
    },
    "full": {
        "subscriptions": 100,
        "backlog": 300,
        "rate": 1000,
        "seconds": 10,
        "failover_subscriptions": 100,
        "failover_rate": 100,
        "lease": 3,
    },
}
LATENCY_SUBSCRIPTIONS = 10
CAUGHT_UP_MS = 250.0  # a delivery this fresh again: the survivor delivers live
E2E_P99_MS = 50.0  # the target: e2e p99 at 1,000 events/s across two processes
E2E_RATE = 1000
FAILOVER_SLACK_S = 2.0  # the target: fail-over < lease_seconds + 2 s
GRACE_S = 0.05  # a request the victim had written before it died may land just after


# -- the processes -----------------------------------------------------------------------------


async def _nodes(dsn: str) -> set[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return {
            str(r[0]) for r in await conn.fetch("SELECT id FROM nodes WHERE seen_until > now()")
        }
    finally:
        await conn.close()


async def _until_nodes(dsn: str, n: int, timeout: float = 30.0) -> set[str]:
    deadline = time.perf_counter() + timeout
    while len(found := await _nodes(dsn)) != n:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{len(found)} live processes in nodes, not {n}")
        await asyncio.sleep(0.05)
    return found


async def _publish(hub: harness.Hub, runs: list[str]) -> None:
    async with aiohttp.ClientSession() as http:
        for run in runs:
            await harness.setup_trigger(http, dataclasses.replace(hub, run=run))


@dataclasses.dataclass
class Cluster:
    """Hub processes on one database; ``nodes[i]`` is process i's id in ``nodes``."""

    dsn: str
    tmp: Path
    env: dict[str, str]
    run: str
    hubs: list[harness.Hub] = dataclasses.field(default_factory=list)
    nodes: list[str] = dataclasses.field(default_factory=list)

    def add(self) -> harness.Hub:
        """One more process, returned once it answers and heartbeats in ``nodes`` (so each
        process's id is told apart: the new one in ``nodes``)."""
        i = len(self.hubs)
        hub = harness.start_local(self.tmp, self.tmp / f"p{i}.db", self.run, self.dsn, self.env)
        self.hubs.append(hub)
        asyncio.run(harness.wait_http(hub.url + "/readyz", 60))
        (node,) = asyncio.run(_until_nodes(self.dsn, i + 1)) - set(self.nodes)
        self.nodes.append(node)
        return hub

    def view(self, run: str) -> list[harness.Hub]:
        """The processes as a scenario of run ``run`` sees them (its model, its events)."""
        return [dataclasses.replace(h, run=run, created=[]) for h in self.hubs]


@contextlib.contextmanager
def cluster(tmp: Path, uri: str, lease: float, runs: list[str]) -> Iterator[Cluster]:
    """One hub process on a fresh database, with every run's model published on it (before
    the others join, as a deployment would)."""
    made = Cluster(
        pg.fresh_database(uri, "scale"), tmp, {"EVENTHUB_LEASE_SECONDS": f"{lease:g}"}, runs[0]
    )
    try:
        first = made.add()
        pg.check_migrated(made.dsn)
        asyncio.run(_publish(first, runs))
        yield made
    finally:
        for hub in made.hubs:
            assert hub.proc is not None
            hub.proc.stop()


async def _shares(dsn: str) -> tuple[int, dict[str, set[str]]]:
    """(subscriptions, live lease holder -> the subscriptions it holds)."""
    conn = await asyncpg.connect(dsn)
    try:
        total = int(await conn.fetchval("SELECT count(*) FROM subscriptions"))
        rows = await conn.fetch(
            "SELECT l.owner, l.id FROM leases l JOIN subscriptions s ON s.id = l.id"
            " WHERE l.kind = 'subscription' AND l.expires_at > now()"
        )
    finally:
        await conn.close()
    held: dict[str, set[str]] = {}
    for row in rows:
        held.setdefault(str(row["owner"]), set()).add(str(row["id"]))
    return total, held


async def spread(c: Cluster, lease: float) -> tuple[float, dict[str, set[str]]]:
    """Waits until every subscription is held and every process holds its fair share
    (floor or ceil of subscriptions / processes); the seconds it took, and who holds what."""
    started = time.perf_counter()
    n = len(c.hubs)
    while True:
        total, held = await _shares(c.dsn)
        sizes = sorted(len(v) for v in held.values())
        fair = len(held) == min(n, total) and sizes[-1:] <= [math.ceil(total / n)]
        if sum(sizes) == total and fair:
            return time.perf_counter() - started, held
        if time.perf_counter() - started > 4 * lease + 20:
            raise RuntimeError(f"the leases did not spread {total} subscriptions: {sizes}")
        await asyncio.sleep(0.05)


async def _delete(http: aiohttp.ClientSession, hub: harness.Hub) -> None:
    for sid in hub.created:
        async with http.delete(f"{hub.url}{harness.SUBS}/{sid}", headers=hub.auth) as r:
            if r.status not in (200, 204):
                raise RuntimeError(f"delete subscription {sid}: {r.status}")


# -- scenarios ---------------------------------------------------------------------------------


async def throughput(
    c: Cluster, run: str, receiver: tuple[str, str], pool: harness.Pool, size: dict[str, float]
) -> dict[str, Any]:
    """A backlog of events, round robin over the processes, each to every subscription."""
    hubs, (rlocal, rhub) = c.view(run), receiver
    subs, events, lease = int(size["subscriptions"]), int(size["backlog"]), size["lease"]
    per_request = max(1, min(100, events // 4))
    async with aiohttp.ClientSession() as http:
        await harness.subscribe(http, hubs[0], rhub + "/hook", subs, batch_size=1)
        spread_s, held = await spread(c, lease)
        await http.post(rlocal + "/reset")
        started = time.perf_counter()
        for k, first in enumerate(range(0, events, per_request)):
            hub = hubs[k % len(hubs)]
            n = min(per_request, events - first)
            await harness.post_batch(http, hub, harness.event_batch(pool, run, first, n))
        await harness.until_received(http, rlocal, subs * events, timeout=600, poll=0.02)
        elapsed = time.perf_counter() - started
        await _delete(http, hubs[0])
    return {
        "subscriptions": subs,
        "backlog_events": events,
        "held_by_process": sorted(len(v) for v in held.values()),
        "spread_seconds": spread_s,
        "deliveries": subs * events,
        "seconds": elapsed,
        "deliveries_per_s": subs * events / elapsed,
    }


async def _single(
    http: aiohttp.ClientSession, hub: harness.Hub, pool: harness.Pool, i: int, tag: str
) -> float | None:
    """Event ``i`` of the run, one a request (binary mode), stamped with its send time; ms
    until the hub acknowledged it (None: it did not)."""
    type_, source, _, body = pool[i % len(pool)]
    headers = harness.binary_headers(hub, type_, source, f"{tag}{i}")
    sent = time.time()
    data = harness.timed(body, sent)
    try:
        async with http.post(
            hub.url + "/events", data=data, headers=headers, timeout=aiohttp.ClientTimeout(total=5)
        ) as r:
            return (time.time() - sent) * 1000 if r.status == 200 else None
    except (aiohttp.ClientError, TimeoutError):
        return None


async def latency(
    c: Cluster, run: str, receiver: tuple[str, str], pool: harness.Pool, size: dict[str, float]
) -> dict[str, Any]:
    """Open loop: one event a request at ``rate``/s, round robin over the processes."""
    hubs, (rlocal, rhub) = c.view(run), receiver
    rate, seconds, subs = int(size["rate"]), size["seconds"], LATENCY_SUBSCRIPTIONS
    async with aiohttp.ClientSession() as http:
        await harness.subscribe(http, hubs[0], rhub + "/hook", subs)
        _, held = await spread(c, size["lease"])
        await http.post(rlocal + "/reset")
        total = int(rate * seconds)
        tasks = []
        started = time.perf_counter()
        for i in range(total):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_single(http, hubs[i % len(hubs)], pool, i, "l")))
        acks = await asyncio.gather(*tasks)
        acked = [ms for ms in acks if ms is not None]
        sent_for = time.perf_counter() - started
        with contextlib.suppress(RuntimeError):
            await harness.until_received(
                http, rlocal, total * subs, timeout=60, poll=0.05, count="events"
            )
        lat = (await harness.receiver_stats(http, rlocal))["latencies_ms"]
        await _delete(http, hubs[0])
    return {
        "offered_per_s": rate,
        "achieved_per_s": total / sent_for,
        "events": total,
        "subscriptions": subs,
        "held_by_process": sorted(len(v) for v in held.values()),
        "deliveries": len(lat),
        "missing": total * subs - len(lat),
        "ingest_failures": len(acks) - len(acked),
        "ack_p50_ms": harness.percentile(acked, 0.50),
        "ack_p99_ms": harness.percentile(acked, 0.99),
        "p50_ms": harness.percentile(lat, 0.50),
        "p90_ms": harness.percentile(lat, 0.90),
        "p99_ms": harness.percentile(lat, 0.99),
        "p999_ms": harness.percentile(lat, 0.999),
        "max_ms": max(lat) if lat else None,
    }


def _taken_over(arrivals: list[list[float]], killed_at: float) -> tuple[float | None, float | None]:
    """(the kill -> the first delivery after it, the kill -> the first fresh one again) of one
    subscription, from its (arrival, latency ms) pairs; None: not (yet)."""
    first = fresh = None
    for arrival, ms in arrivals:
        if arrival <= killed_at + GRACE_S:
            continue
        first = arrival - killed_at if first is None else first
        if ms < CAUGHT_UP_MS and arrival - ms / 1000 > killed_at:
            fresh = arrival - killed_at
            break
    return first, fresh


async def failover(
    c: Cluster, run: str, receiver: tuple[str, str], pool: harness.Pool, size: dict[str, float]
) -> dict[str, Any]:
    """SIGKILL the second process under a steady stream; how soon the first takes over each
    of its subscriptions."""
    hubs, (rlocal, rhub) = c.view(run), receiver
    subs, rate, lease = int(size["failover_subscriptions"]), size["failover_rate"], size["lease"]
    survivor, victim = hubs[0], hubs[1]
    async with aiohttp.ClientSession() as http:
        names: dict[str, str] = {}
        for i in range(subs):  # one callback path a subscription: its arrivals apart
            await harness.subscribe(http, survivor, f"{rhub}/hook/f{i}", 1, concurrency=1)
            names[survivor.created[-1]] = f"f{i}"
        _, held = await spread(c, lease)
        victims = sorted(names[s] for s in held.get(c.nodes[1], set()))
        await http.post(rlocal + "/reset")
        alive = [survivor, victim]
        acked = 0
        stop = asyncio.Event()

        async def stream() -> None:
            nonlocal acked
            tasks = []
            started = time.perf_counter()
            for i in itertools.count():
                delay = started + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if stop.is_set():
                    break
                tasks.append(
                    asyncio.create_task(_single(http, alive[i % len(alive)], pool, i, "f"))
                )
            acked = sum(ms is not None for ms in await asyncio.gather(*tasks))

        producing = asyncio.create_task(stream())
        await asyncio.sleep(max(0.5, lease / 2))  # steady before the kill
        assert victim.proc is not None
        victim.proc.proc.kill()
        killed_at = time.time()
        alive.remove(victim)  # the producer sends to the survivor from now on
        victim.proc.proc.wait()
        deadline = time.perf_counter() + lease + 20
        taken: dict[str, tuple[float | None, float | None]] = {}
        while time.perf_counter() < deadline:
            await asyncio.sleep(min(0.25, lease / 10))
            async with http.get(rlocal + "/stats?detail=1") as r:
                paths = (await r.json())["paths"]
            taken = {name: _taken_over(paths.get(name, []), killed_at) for name in victims}
            if all(fresh is not None for _, fresh in taken.values()):
                break
        stop.set()
        await producing
        await _delete(http, survivor)
    firsts = [f for f, _ in taken.values() if f is not None]
    freshes = [f for _, f in taken.values() if f is not None]
    target = lease + FAILOVER_SLACK_S
    return {
        "subscriptions": subs,
        "offered_per_s": rate,
        "lease_seconds": lease,
        "events_acknowledged": acked,
        "victim_held": len(victims),
        "taken_over": len(firsts),
        "caught_up": len(freshes),
        "first_delivery_s": {"max": max(firsts, default=None), "median": _median(firsts)},
        "caught_up_s": {"max": max(freshes, default=None), "median": _median(freshes)},
        "target_s": target,
        "target_met": bool(firsts) and len(firsts) == len(victims) and max(firsts) < target,
    }


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


# -- the run -----------------------------------------------------------------------------------


def phase(
    c: Cluster,
    runs: list[str],
    receiver: tuple[str, str],
    size: dict[str, float],
    pool: harness.Pool,
) -> dict[str, Any]:
    """Throughput and latency on the cluster's processes (and, on two, fail-over last: it
    kills one); ``runs``: a run id for each scenario."""
    n = len(c.hubs)
    out: dict[str, Any] = {"processes": n}
    print(f"  {n} process(es): throughput ...", file=sys.stderr, flush=True)
    out["throughput"] = asyncio.run(throughput(c, runs[0], receiver, pool, size))
    print(f"  {n} process(es): latency ...", file=sys.stderr, flush=True)
    out["latency"] = asyncio.run(latency(c, runs[1], receiver, pool, size))
    if n == 2:
        print("  2 processes: fail-over after SIGKILL ...", file=sys.stderr, flush=True)
        out["failover"] = asyncio.run(failover(c, runs[2], receiver, pool, size))
    return out


def summarize(one: dict[str, Any], two: dict[str, Any]) -> dict[str, Any]:
    t1, t2 = one["throughput"]["deliveries_per_s"], two["throughput"]["deliveries_per_s"]
    l2, f = two["latency"], two["failover"]
    p99 = l2["p99_ms"]
    at_rate = l2["offered_per_s"] >= E2E_RATE
    return {
        "deliveries_per_s_one": t1,
        "deliveries_per_s_two": t2,
        "delivery_two_over_one": t2 / t1 if t1 else None,
        "e2e_p99_ms_one": one["latency"]["p99_ms"],
        "e2e_p99_ms_two": p99,
        "e2e_offered_per_s": l2["offered_per_s"],
        # Only at the target's rate: a tiny run's 40 events/s says nothing about it.
        "e2e_two_target_met": (p99 is not None and p99 < E2E_P99_MS and l2["missing"] == 0)
        if at_rate
        else None,
        "failover_first_max_s": f["first_delivery_s"]["max"],
        "failover_first_median_s": f["first_delivery_s"]["median"],
        "failover_caught_up_max_s": f["caught_up_s"]["max"],
        "failover_caught_up_median_s": f["caught_up_s"]["median"],
        "failover_target_s": f["target_s"],
        "failover_target_met": f["target_met"],
        "lease_seconds": f["lease_seconds"],
    }


def _f(value: Any, pattern: str = "{:,.0f}") -> str:
    return "-" if value is None else pattern.format(value)


def _met(value: bool | None) -> str:
    return "-" if value is None else "met" if value else "**missed**"


def markdown(report: dict[str, Any]) -> str:
    one, two, s = report["one"], report["two"], report["summary"]
    f = two["failover"]
    lines = [
        f"Two hub processes on one PostgreSQL (the second joins after the one-process figures); "
        f"`EVENTHUB_LEASE_SECONDS={s['lease_seconds']:g}`; producers round robin over the "
        "processes. One run, not medians: on a shared machine these are noisy.",
        "",
        "| | one process | two processes | two / one |",
        "|---|---:|---:|---:|",
        f"| {one['throughput']['subscriptions']} subscriptions, deliveries/s | "
        f"{_f(s['deliveries_per_s_one'])} | {_f(s['deliveries_per_s_two'])} | "
        f"{_f(s['delivery_two_over_one'], '{:.2f}')} |",
    ]
    l1, l2 = one["latency"], two["latency"]
    lines.append(
        f"| end-to-end at {l1['offered_per_s']:,}/s, {l1['subscriptions']} subscriptions: "
        f"p50 / p99 / p99.9 ms | {_f(l1['p50_ms'], '{:.1f}')} / {_f(l1['p99_ms'], '{:.1f}')} / "
        f"{_f(l1['p999_ms'], '{:.1f}')} | {_f(l2['p50_ms'], '{:.1f}')} / "
        f"{_f(l2['p99_ms'], '{:.1f}')} / {_f(l2['p999_ms'], '{:.1f}')} | |"
    )
    lines.append(
        "| of which the ingest (send → 200, its commit included): p50 / p99 ms | "
        f"{_f(l1['ack_p50_ms'], '{:.1f}')} / {_f(l1['ack_p99_ms'], '{:.1f}')} | "
        f"{_f(l2['ack_p50_ms'], '{:.1f}')} / {_f(l2['ack_p99_ms'], '{:.1f}')} | |"
    )
    lines += [
        "",
        f"Target: e2e p99 < {E2E_P99_MS:.0f} ms at {E2E_RATE:,} events/s across two processes: "
        f"{_f(s['e2e_p99_ms_two'], '{:.1f}')} ms at {s['e2e_offered_per_s']:,}/s "
        f"({l2['missing']} deliveries missing), {_met(s['e2e_two_target_met'])}.",
        "",
        f"Fail-over: {f['subscriptions']} subscriptions at {f['offered_per_s']:g} events/s, "
        f"SIGKILL of the process holding {f['victim_held']}; the survivor took over "
        f"{f['taken_over']} and caught up {f['caught_up']}. Kill → first delivery by the "
        f"survivor: median {_f(s['failover_first_median_s'], '{:.2f}')} s, max "
        f"{_f(s['failover_first_max_s'], '{:.2f}')} s; kill → caught up (a delivery under "
        f"{CAUGHT_UP_MS:.0f} ms end to end again): median "
        f"{_f(s['failover_caught_up_median_s'], '{:.2f}')} s, max "
        f"{_f(s['failover_caught_up_max_s'], '{:.2f}')} s. Target < lease_seconds + "
        f"{FAILOVER_SLACK_S:g} s = {s['failover_target_s']:g} s: "
        f"{_met(s['failover_target_met'])}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="quick")
    parser.add_argument("--rate", type=int, help="the latency scenario's events/s")
    parser.add_argument("--lease-seconds", type=float, help="EVENTHUB_LEASE_SECONDS")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    import payloads

    pool = payloads.build_pool()
    size = dict(SIZES[args.size])
    if args.rate:
        size["rate"] = args.rate
    if args.lease_seconds:
        size["lease"] = args.lease_seconds
    report: dict[str, Any] = {"benchmark": "pg_scale", "size": args.size, "sizes": size}
    runs = [harness.new_run_id() for _ in range(5)]
    with (
        tempfile.TemporaryDirectory(prefix="eventhub-bench-scale-") as folder,
        pg.server() as uri,
        harness.receiver(Path(folder), harness.Network(), latency=True) as receiver,
        cluster(Path(folder), uri, size["lease"], runs) as c,
    ):
        report["one"] = phase(c, runs[:2], receiver, size, pool)
        # The second process joins the first's database: the same log, the same server.
        c.add()
        report["two"] = phase(c, runs[2:], receiver, size, pool)
    report["summary"] = summarize(report["one"], report["two"])
    report["markdown"] = markdown(report)
    harness.write_report(report, "pg_scale", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
