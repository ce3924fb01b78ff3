"""Scale: eventhub with a 1-million-event log and 10,000 subscriptions.

One hub process on a fresh database, one receiver, this process as the producer:

1. fill the log with ``--events`` UiPath-shaped events (batches of ``--batch``, two requests in
   flight), through the ingest API, with the bench trigger already defined so the trigger
   index grows as it would in production; records events/s for each tenth of the fill, so a
   log that slows down as it grows shows;
2. create ``--subscriptions`` subscriptions (at the head: the backlog is not theirs);
3. measure the hub's RSS and the database's size, stop it (SIGTERM), restart it, and time
   until ``/readyz``; RSS right then and after it settles;
4. fan one new event out to every subscription: seconds until the receiver has them all;
5. read a page of the log from its middle (``GET /events?after=N&limit=100``), ten times.

    .venv/bin/python bench/scale.py                      # 1,000,000 events, 10,000 subs
    .venv/bin/python bench/scale.py --events 100000 --subscriptions 1000
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import harness
import payloads

TARGET_RSS_MB = 300
TARGET_RESTART_S = 3.0


async def fill(
    http: aiohttp.ClientSession, hub: harness.Hub, pool: harness.Pool, n: int, batch: int
) -> dict[str, Any]:
    """``n`` events through ``POST /events``; events/s overall and for each tenth."""
    starts = list(range(0, n, batch))
    tenth = max(1, len(starts) // 10)
    marks: list[tuple[int, float]] = [(0, time.perf_counter())]
    done = 0

    async def poster() -> None:
        nonlocal done
        while starts:
            start = starts.pop(0)
            size = min(batch, n - start)
            await harness.post_batch(http, hub, harness.event_batch(pool, hub.run, start, size))
            done += size
            if (done // batch) % tenth == 0:
                marks.append((done, time.perf_counter()))

    began = time.perf_counter()
    await asyncio.gather(poster(), poster())
    seconds = time.perf_counter() - began
    marks.append((done, time.perf_counter()))
    steps = [(b[0] - a[0]) / (b[1] - a[1]) for a, b in itertools.pairwise(marks) if b[0] > a[0]]
    return {
        "events": done,
        "seconds": seconds,
        "events_per_s": done / seconds,
        "events_per_s_by_tenth": [round(s) for s in steps],
    }


def db_bytes(data: Path) -> int:
    return sum(p.stat().st_size for p in data.parent.glob(data.name + "*"))


def run(tmp: Path, opts: argparse.Namespace) -> dict[str, Any]:
    pool = payloads.build_pool()
    data = tmp / "scale.db"
    result: dict[str, Any] = {"events": opts.events, "subscriptions": opts.subscriptions}
    with harness.receiver(tmp, harness.Network()) as (rlocal, rhub):
        with harness.served(tmp, data, None) as hub:

            async def build() -> None:
                async with aiohttp.ClientSession() as http:
                    await harness.wait_http(hub.url + "/readyz")
                    await harness.setup_trigger(http, hub)
                    result["fill"] = await fill(http, hub, pool, opts.events, opts.batch)
                    print(
                        f"  filled {opts.events:,} events at "
                        f"{result['fill']['events_per_s']:,.0f}/s",
                        file=sys.stderr,
                        flush=True,
                    )
                    result["create_seconds"] = await harness.subscribe(
                        http, hub, rhub + "/hook", opts.subscriptions, concurrency=32
                    )

            asyncio.run(build())
            time.sleep(1.0)
            result["loaded_rss_mb"] = harness.rss_mb(hub.pid)
            assert hub.proc is not None
            stopping = time.perf_counter()
            hub.proc.stop()
            result["stop_seconds"] = time.perf_counter() - stopping
        result["database_mb"] = db_bytes(data) / 2**20

        again = harness.start_local(tmp, data, hub.run)
        try:
            result["restart_seconds"] = asyncio.run(
                harness.wait_http(again.url + "/readyz", timeout=300)
            )
            result["restart_rss_mb"] = harness.rss_mb(again.pid)
            time.sleep(2.0)
            result["idle_rss_mb"] = harness.rss_mb(again.pid)
            result.update(asyncio.run(after_restart(again, pool, rlocal, opts)))
            result["after_fanout_rss_mb"] = harness.rss_mb(again.pid)
        finally:
            assert again.proc is not None
            again.proc.stop()
    result["targets"] = {"idle_rss_mb": TARGET_RSS_MB, "restart_seconds": TARGET_RESTART_S}
    result["target_met"] = (
        result["idle_rss_mb"] < TARGET_RSS_MB and result["restart_seconds"] < TARGET_RESTART_S
    )
    return result


async def after_restart(
    hub: harness.Hub, pool: harness.Pool, receiver: str, opts: argparse.Namespace
) -> dict[str, Any]:
    """A fan-out to every subscription, then reads of a page from the log's middle."""
    async with aiohttp.ClientSession() as http:
        await http.post(receiver + "/reset")
        started = time.perf_counter()
        await harness.post_batch(http, hub, harness.event_batch(pool, hub.run, opts.events, 1))
        await harness.until_received(http, receiver, opts.subscriptions, timeout=300, poll=0.01)
        fanout = time.perf_counter() - started
        reads = []
        for _ in range(10):
            began = time.perf_counter()
            async with http.get(
                f"{hub.url}/events?after={opts.events // 2}&limit=100", headers=hub.auth
            ) as r:
                if r.status != 200:
                    raise RuntimeError(f"GET /events: {r.status} {await r.text()}")
                await r.read()
            reads.append((time.perf_counter() - began) * 1000)
    return {"fanout_seconds": fanout, "read_page_ms": statistics.median(reads)}


def markdown(r: dict[str, Any]) -> str:
    fill = r["fill"]
    tenths = ", ".join(f"{v:,}" for v in fill["events_per_s_by_tenth"])
    met = "yes" if r["target_met"] else "no"
    return "\n".join(
        [
            f"| {r['events']:,}-event log, {r['subscriptions']:,} subscriptions | figure |",
            "|---|---|",
            f"| fill through batch ingest | {fill['events_per_s']:,.0f} events/s "
            f"(by tenth: {tenths}) |",
            f"| database on disk | {r['database_mb']:,.0f} MB |",
            f"| RSS loaded, before restart | {r['loaded_rss_mb']:.0f} MB |",
            f"| restart to /readyz | {r['restart_seconds']:.2f} s (target < {TARGET_RESTART_S:g} s) |",
            f"| RSS at ready / settled / after a fan-out | {r['restart_rss_mb']:.0f} / "
            f"{r['idle_rss_mb']:.0f} / {r['after_fanout_rss_mb']:.0f} MB "
            f"(target < {TARGET_RSS_MB} MB) |",
            f"| fan-out of one event after the restart | {r['fanout_seconds']:.2f} s |",
            f"| a page of 100 from the log's middle | {r['read_page_ms']:.1f} ms |",
            f"| targets met | {met} |",
        ]
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--subscriptions", type=int, default=10_000)
    p.add_argument("--batch", type=int, default=1000, help="events a fill request")
    p.add_argument("--out", type=Path)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="eventhub-scale-") as folder:
        result = run(Path(folder), opts)
    result["benchmark"] = "scale"
    result["started"] = datetime.now(UTC).isoformat()
    result["markdown"] = markdown(result)
    harness.write_report(result, "scale", opts.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
