"""µs an event of ``parse.parse_batch`` alone (parse, validate, digest): the codec's share of
batch ingest, in this process, without HTTP, SQLite or a load generator sharing the cores.

The bodies are the ones wrk sends in ``ingest.py``'s ``batch`` scenario: 100 events of the
payload pool (``payloads.py``) a request, in the CloudEvents JSON batch format. Prints the
median and the minimum over ``--repeat`` passes; to compare two revisions, alternate:

    PYTHONPATH=. .venv/bin/python bench/parse_batch.py
    PYTHONPATH=/path/to/base-worktree .venv/bin/python bench/parse_batch.py
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import payloads

# The eventhub measured is the first on the path: set PYTHONPATH to the tree to measure.
from eventhub.codec import parse


def bodies(count: int, batch: int) -> list[bytes]:
    """``count`` batch bodies as bench/ingest.lua writes them: a unique id an event."""
    pool = payloads.build_pool()
    out = []
    for n in range(count):
        parts = []
        for i in range(batch):
            type_, source, stamp, data = pool[(n * batch + i) % len(pool)]
            head = (
                f'{{"specversion":"1.0","id":"w-{n}-{i}","source":"{source}","type":"{type_}",'
                f'"time":"{stamp}","datacontenttype":"application/json","data":'
            )
            parts.append(head.encode() + data + b"}")
        out.append(b"[" + b",".join(parts) + b"]")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=100, help="events a body")
    parser.add_argument("--bodies", type=int, default=50, help="distinct bodies a pass")
    parser.add_argument("--passes", type=int, default=4, help="times each body is parsed a pass")
    parser.add_argument("--repeat", type=int, default=7, help="passes; median and minimum")
    args = parser.parse_args()
    sample = bodies(args.bodies, args.batch)
    per_event = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        for _ in range(args.passes):
            for body in sample:
                parse.parse_batch(body, args.batch)
        elapsed = time.perf_counter() - started
        per_event.append(elapsed / (args.passes * len(sample) * args.batch) * 1e6)
    print(
        f"parse_batch: {statistics.median(per_event):.2f} µs an event (median), "
        f"{min(per_event):.2f} (min); {args.batch} events, {len(sample[0]):,} B a body; "
        f"eventhub from {Path(parse.__file__).parents[2]}"
    )


if __name__ == "__main__":
    main()
