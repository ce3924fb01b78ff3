"""Batch ingest in one process, without HTTP or a load generator: ``--producers`` tasks each
parse a 100-event batch body (``parse.parse_batch``, as the hub does) and append it
(``SqliteStore.append``, the group commit, ``synchronous=full``), for ``--seconds``. Prints
events/s and the process CPU an event: whether a flush's SQLite work overlaps the loop's
parsing of the next bodies (issue 13) shows as events/s above 1e6 / (CPU an event).

The bodies are ``parse_batch.py``'s (wrk's in ``ingest.py``). To compare two revisions,
alternate:

    PYTHONPATH=. .venv/bin/python bench/flush_overlap.py
    PYTHONPATH=/path/to/base-worktree .venv/bin/python bench/flush_overlap.py
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from parse_batch import bodies

# The eventhub measured is the first on the path: set PYTHONPATH to the tree to measure.
from eventhub.clock import SystemClock
from eventhub.codec import parse
from eventhub.log.sqlite.store import SqliteStore
from eventhub.vault import Vault


async def one_run(
    directory: Path, producers: int, seconds: float, batch: int
) -> tuple[float, float, float]:
    """(events/s, process CPU µs an event, the loop thread's CPU µs an event) of one run on a
    fresh database."""
    store = SqliteStore(directory / "log.db", SystemClock(), vault=Vault(b"k" * 32))
    await store.open()
    sample = bodies(200, batch)
    count = 0
    prefix = 0
    stop = False

    async def produce(n: int) -> None:
        nonlocal count
        i = n
        while not stop:
            # Unique ids a pass: a repeated body would be deduplicated, not written.
            body = sample[i % len(sample)].replace(b'"w-', f'"{prefix}-{i}-'.encode())
            i += producers
            events = parse.parse_batch(body, batch)
            await store.append(events)
            count += len(events)

    try:
        tasks = [asyncio.create_task(produce(n)) for n in range(producers)]
        await asyncio.sleep(1.0)  # warm-up
        start_count, started = count, time.perf_counter()
        cpu, loop_cpu = time.process_time(), time.thread_time()
        await asyncio.sleep(seconds)
        events = count - start_count
        elapsed, used = time.perf_counter() - started, time.process_time() - cpu
        loop_used = time.thread_time() - loop_cpu
        stop = True
        await asyncio.gather(*tasks)
    finally:
        await store.close()
    return events / elapsed, used / events * 1e6, loop_used / events * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--producers", type=int, default=64, help="concurrent batch requests")
    parser.add_argument("--seconds", type=float, default=4.0, help="measured a run")
    parser.add_argument("--batch", type=int, default=100, help="events a body")
    parser.add_argument("--repeat", type=int, default=3, help="runs; medians")
    args = parser.parse_args()
    rates, costs, loops = [], [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as directory:
            rate, cost, loop = asyncio.run(
                one_run(Path(directory), args.producers, args.seconds, args.batch)
            )
        rates.append(rate)
        costs.append(cost)
        loops.append(loop)
    print(
        f"{statistics.median(rates):,.0f} events/s, {statistics.median(costs):.1f} µs CPU an "
        f"event, {statistics.median(loops):.1f} µs of it on the loop thread (medians of "
        f"{args.repeat}: {[round(r) for r in rates]}, loop {[round(c, 1) for c in loops]}); "
        f"eventhub from {Path(parse.__file__).parents[2]}"
    )


if __name__ == "__main__":
    main()
