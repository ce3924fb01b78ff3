"""The PostgreSQL ceiling: raw ``asyncpg`` appends of the rows an ingest writes (``events``
and ``event_ids``, in eventhub's own schema: its migrations) on a throwaway server
(``pg.py``: pgserver, a Unix socket), with no HTTP, parsing or validation. What eventhub's
ingest on PostgreSQL is compared with.

Each method runs with 100-row commits over one connection, and with single-row commits over
one connection and over ``--connections`` at once (16: concurrent producers, whose commits
the server's WAL flushes group, as eventhub's own group commit does for single-event
requests; that is the ceiling single-event ingest is compared with):

    copy        ``copy_records_to_table`` into each table (COPY, binary)
    executemany ``executemany`` of a parameterised INSERT into each table
    unnest      one INSERT ... SELECT FROM unnest(arrays) into each table (PostgresStore's way)

    .venv/bin/python bench/pg_ceiling.py --seconds 3
    .venv/bin/python bench/pg_ceiling.py --dsn postgresql://...   # a server of yours (its
                                                                  # database is migrated)
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import pg

from eventhub.log.postgres.schema import migrate

METHODS = ("copy", "executemany", "unnest")
EVENT_COLUMNS = (
    "event_offset",
    "source",
    "id",
    "revision",
    "type",
    "attributes",
    "data",
    "data_kind",
    "received_at",
)
ID_COLUMNS = ("source", "id", "latest_offset", "revision", "digest")
_INSERT_EVENT = (
    "INSERT INTO events (event_offset, source, id, revision, type, attributes, data, data_kind,"
    " received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
)
_INSERT_ID = (
    "INSERT INTO event_ids (source, id, latest_offset, revision, digest)"
    " VALUES ($1, $2, $3, $4, $5)"
)
_UNNEST_EVENTS = (
    "INSERT INTO events (event_offset, source, id, revision, type, attributes, data,"
    " data_kind, received_at) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[],"
    " $4::integer[], $5::text[], $6::bytea[], $7::bytea[], $8::integer[], $9::text[])"
)
_UNNEST_IDS = (
    "INSERT INTO event_ids (source, id, latest_offset, revision, digest)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::integer[], $5::bytea[])"
)

Rows = list[tuple[Any, ...]]
Writer = Callable[[Any, Rows, Rows], Awaitable[None]]


async def _copy(conn: Any, events: Rows, ids: Rows) -> None:
    await conn.copy_records_to_table("events", records=events, columns=EVENT_COLUMNS)
    await conn.copy_records_to_table("event_ids", records=ids, columns=ID_COLUMNS)


async def _executemany(conn: Any, events: Rows, ids: Rows) -> None:
    await conn.executemany(_INSERT_EVENT, events)
    await conn.executemany(_INSERT_ID, ids)


async def _unnest(conn: Any, events: Rows, ids: Rows) -> None:
    await conn.execute(_UNNEST_EVENTS, *(list(c) for c in zip(*events, strict=True)))
    await conn.execute(_UNNEST_IDS, *(list(c) for c in zip(*ids, strict=True)))


WRITERS: dict[str, Writer] = {"copy": _copy, "executemany": _executemany, "unnest": _unnest}


async def measure_one(
    dsn: str,
    method: str,
    batch: int,
    seconds: float,
    body: bytes,
    first: int,
    connections: int = 1,
) -> dict[str, Any]:
    """Appends ``batch`` rows a commit with ``method`` for ``seconds``, from ``connections``
    connections at once; offsets from ``first`` (each measurement its own range, so one
    database serves them all)."""
    write = WRITERS[method]
    attributes = orjson.dumps({"specversion": "1.0", "source": "/bench", "type": "job.created"})
    offsets = itertools.count(first + 1)  # shared: one event loop, so no lock needed
    counts = {"rows": 0, "commits": 0}
    conns = [await asyncpg.connect(dsn) for _ in range(connections)]

    async def worker(conn: Any, deadline: float) -> None:
        while time.perf_counter() < deadline and counts["commits"] < 10_000_000:
            events: Rows = []
            ids: Rows = []
            for _ in range(batch):
                offset = next(offsets)
                key = f"e{offset}"
                events.append((offset, "/bench", key, 1, "job.created", attributes, body, 1, "t"))
                digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
                ids.append(("/bench", key, offset, 1, digest))
            async with conn.transaction():
                await write(conn, events, ids)
            counts["rows"] += batch
            counts["commits"] += 1

    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker(c, started + seconds) for c in conns))
        elapsed = time.perf_counter() - started
    finally:
        for conn in conns:
            await conn.close()
    rows, commits = counts["rows"], counts["commits"]
    return {
        "method": method,
        "batch": batch,
        "connections": connections,
        "rows": rows,
        "last_offset": next(offsets),
        "seconds": elapsed,
        "rows_per_s": rows / elapsed,
        "commit_ms": elapsed / commits * 1e3 * connections if commits else None,
    }


async def _prepare(dsn: str) -> dict[str, str]:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        return await pg.settings(conn)
    finally:
        await conn.close()


def measure(
    dsn: str, seconds: float, body: bytes, batch: int = 100, connections: int = 16
) -> dict[str, Any]:
    """Every method on the database ``dsn``: ``batch``-row commits over one connection,
    single-row commits over one and over ``connections``. The ceilings are the best method
    of each: ``rows_per_s`` (batches), ``single_rows_per_s`` (single rows, concurrent)."""
    server = asyncio.run(_prepare(dsn))
    results: list[dict[str, Any]] = []
    last = 0
    for size, width in ((batch, 1), (1, 1), (1, connections)):
        for method in METHODS:
            one = asyncio.run(measure_one(dsn, method, size, seconds, body, last, width))
            last = one["last_offset"]
            results.append(one)
            print(
                f"  pg {method:>11} x{size:<4} {width:>3} conn {one['rows_per_s']:>10,.0f} rows/s",
                file=sys.stderr,
                flush=True,
            )

    def best(size: int, width: int) -> float:
        return max(
            r["rows_per_s"] for r in results if (r["batch"], r["connections"]) == (size, width)
        )

    return {
        "results": results,
        "rows_per_s": best(batch, 1),
        "single_rows_per_s": best(1, connections),
        "single_rows_one_connection_per_s": best(1, 1),
        "batch": batch,
        "connections": connections,
        "row_bytes": len(body),
        "server": server,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per method and batch size")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--body-bytes", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=16, help="for single-row commits")
    parser.add_argument("--dsn", help="a PostgreSQL of yours instead of a throwaway one")
    args = parser.parse_args()
    body = b"x" * args.body_bytes
    if args.dsn:
        result = measure(args.dsn, args.seconds, body, args.batch, args.connections)
    else:
        with pg.server() as uri:
            dsn = pg.fresh_database(uri, "ceiling")
            result = measure(dsn, args.seconds, body, args.batch, args.connections)
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
