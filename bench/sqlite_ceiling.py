"""The SQLite ceiling: raw ``sqlite3`` batched appends into eventhub's own schema (its
migrations, WAL, the same synchronous setting), with no HTTP, parsing or validation. What
eventhub's batch ingest is compared with.

    .venv/bin/python bench/sqlite_ceiling.py --seconds 3
"""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from eventhub.log.sqlite import migrate


def measure(seconds: float, batch: int, synchronous: str, body: bytes) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="eventhub-sqlite-") as folder:
        conn = sqlite3.connect(Path(folder) / "ceiling.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        migrate(conn)
        attributes = orjson.dumps({"specversion": "1.0", "source": "/bench", "type": "job.created"})
        rows, offset = 0, 0
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()
        while time.perf_counter() < deadline:
            events, ids = [], []
            for _ in range(batch):
                offset += 1
                key = f"e{offset}"
                events.append((offset, "/bench", key, 1, "job.created", attributes, body, 1, "t"))
                ids.append(
                    (
                        "/bench",
                        key,
                        offset,
                        1,
                        hashlib.blake2b(key.encode(), digest_size=16).digest(),
                    )
                )
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO events (event_offset, source, id, revision, type, attributes, data,"
                " data_kind, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                events,
            )
            conn.executemany(
                "INSERT INTO event_ids (source, id, latest_offset, revision, digest)"
                " VALUES (?, ?, ?, ?, ?)",
                ids,
            )
            conn.execute("COMMIT")
            rows += batch
        elapsed = time.perf_counter() - started
        conn.close()
    return {
        "rows": rows,
        "seconds": elapsed,
        "rows_per_s": rows / elapsed,
        "batch": batch,
        "synchronous": synchronous,
        "row_bytes": len(body),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--synchronous", default="full", choices=["full", "normal"])
    parser.add_argument("--body-bytes", type=int, default=1000)
    args = parser.parse_args()
    result = measure(args.seconds, args.batch, args.synchronous, b"x" * args.body_bytes)
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
