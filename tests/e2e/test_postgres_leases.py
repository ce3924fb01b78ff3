"""Several ``eventhub serve`` processes on one PostgreSQL (SPEC §9): subscriptions leased to
one process at a time, shared fairly, taken over after a SIGKILL within ``lease_seconds`` and
a few seconds, handed back at once on a graceful stop; an action on a process that does not
deliver the subscription reaches the one that does; reads on either show the same state.
Real processes, the session's PostgreSQL (tests/postgres.py), one real receiver."""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import orjson
from aiohttp import web

from tests.conftest import TEST_SECRET_KEY
from tests.e2e.delivery_helpers import KM, SUBS
from tests.e2e.helpers import ServerProcess, bearer
from tests.e2e.loopback import LoopbackReceiver

LEASE = 2.0  # seconds: small, so a takeover is quick


class Calls(LoopbackReceiver):
    """A receiver on 127.0.0.1 recording, per subscription (the path), the offsets of every
    request in the order they arrived."""

    def __init__(self) -> None:
        self.offsets: dict[str, list[int]] = defaultdict(list)
        super().__init__()

    async def handle(self, request: web.Request) -> web.Response:
        envelope = orjson.loads(await request.read())
        self.offsets[request.match_info["name"]].extend(int(e["offset"]) for e in envelope)
        return web.Response(status=200)


def hub_process(tmp_path: Path, name: str, dsn: str, lease: float = LEASE) -> ServerProcess:
    return ServerProcess(
        tmp_path / f"{name}.db",  # unused on PostgreSQL
        tmp_path / f"{name}.log",
        {
            "EVENTHUB_DATABASE": dsn,
            "EVENTHUB_SECRET_KEY": TEST_SECRET_KEY,
            "EVENTHUB_LEASE_SECONDS": str(lease),
        },
    )


@asynccontextmanager
async def running(*hubs: ServerProcess) -> AsyncIterator[aiohttp.ClientSession]:
    async with AsyncExitStack() as stack:
        for hub in hubs:
            stack.callback(hub.close)
        http = await stack.enter_async_context(aiohttp.ClientSession())
        await asyncio.gather(*(hub.ready(http) for hub in hubs))
        yield http


async def call(
    http: aiohttp.ClientSession, method: str, url: str, json: Any = None
) -> tuple[int, Any]:
    async with http.request(method, url, json=json, headers=bearer()) as r:
        return r.status, (await r.json() if r.content_type == "application/json" else None)


async def publish(http: aiohttp.ClientSession, hub: ServerProcess) -> None:
    base = f"{hub.url}{KM}/orders"
    assert (await call(http, "PUT", base, {"name": "orders"}))[0] == 200
    trigger = {"name": "created", "filters": [{"exact": {"type": "order.created"}}]}
    assert (await call(http, "PUT", f"{base}/triggers/created", trigger))[0] == 200
    assert (await call(http, "POST", f"{base}/publish"))[0] == 200


async def subscribe(http: aiohttp.ClientSession, hub: ServerProcess, uri: str) -> str:
    body = {"name": "t", "callbackInfo": {"uri": uri, "headers": {}}, "batchSize": 5}
    code, created = await call(
        http, "POST", f"{hub.url}{KM}/orders/triggers/created/subscriptions", body
    )
    assert code == 201, created
    return str(created["id"])


_ids = itertools.count()


async def produce(http: aiohttp.ClientSession, hub: ServerProcess, n: int) -> None:
    for _ in range(n):
        headers = {
            **bearer(),
            "ce-specversion": "1.0",
            "ce-id": f"e-{next(_ids)}",
            "ce-source": "/shop",
            "ce-type": "order.created",
            "content-type": "application/json",
        }
        async with http.post(f"{hub.url}/events", data=b"{}", headers=headers) as r:
            assert r.status == 200, await r.text()


async def owners(dsn: str) -> dict[str, set[str]]:
    """Live leases: holder -> subscription ids."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT owner, id FROM leases WHERE kind = 'subscription' AND expires_at > now()"
        )
    finally:
        await conn.close()
    out: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        out[row["owner"]].add(row["id"])
    return out


async def until(what: str, check: Any, timeout: float) -> float:
    """Poll ``check`` (async, truthy when done) until it holds; the seconds it took."""
    started = time.monotonic()
    deadline = started + timeout
    while not await check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def event_offsets(dsn: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        return [
            int(r[0])
            for r in await conn.fetch(
                "SELECT event_offset FROM events WHERE type = 'order.created' ORDER BY 1"
            )
        ]
    finally:
        await conn.close()


async def test_two_processes_share_and_take_over_after_sigkill(tmp_path: Path, pg_dsn: str) -> None:
    calls = Calls()
    await calls.start()
    a = hub_process(tmp_path, "a", pg_dsn)
    b: ServerProcess | None = None
    try:
        async with running(a) as http:
            await publish(http, a)  # before b starts: b loads the catalogue at start
            subs = [await subscribe(http, a, f"{calls.url}/{i}") for i in range(200)]
            await until("a holds all 200", lambda: _holds_all(pg_dsn, 1, 200), 10)
            (a_node,) = (await owners(pg_dsn)).keys()
            b = hub_process(tmp_path, "b", pg_dsn)
            await b.ready(http)
            # b joins: a releases its surplus, b claims it; 100 each.
            await until("a fair share each", lambda: _shared(pg_dsn, [100, 100]), 3 * LEASE + 5)
            # Producers on both processes.
            await asyncio.gather(produce(http, a, 15), produce(http, b, 15))
            a_subs = (await owners(pg_dsn))[a_node]
            assert len(a_subs) == 100
            # SIGKILL a while events keep coming (to b).
            producing = asyncio.create_task(produce(http, b, 15))
            await asyncio.sleep(0.2)
            a.signal(signal.SIGKILL)
            killed = time.monotonic()
            await producing
            await produce(http, b, 10)
            took = await until("b holds all 200", lambda: _holds_all(pg_dsn, 1, 200), LEASE + 5)
            assert time.monotonic() - killed <= LEASE + 4, took
            expected = await event_offsets(pg_dsn)
            assert len(expected) == 55
            await until(
                "every event delivered to every subscription",
                lambda: _all_delivered(calls, expected),
                20,
            )
        assert b is not None
        b.signal(signal.SIGTERM)
        assert await b.exited() == 0
    finally:
        if b is not None:
            b.close()
        a.close()
        await calls.stop()
    duplicated = 0
    for i in range(200):
        got = calls.offsets[str(i)]
        assert set(got) == set(expected), i  # nothing lost, nothing foreign
        descents = sum(1 for x, y in itertools.pairwise(got) if y < x)
        extra = sum(c - 1 for c in Counter(got).values())
        if subs[i] in a_subs:
            # Taken over: b starts again from the committed cursor once, re-sending only
            # what a had in flight (its cursor write may not have committed).
            assert descents <= 1, (i, got)
            assert extra <= 15, (i, got)
        else:
            # Never moved after the load began: one deliverer, in order, exactly once.
            assert descents == 0 and extra == 0, (i, got)
        duplicated += extra
    assert duplicated < 200 * 15


async def _holds_all(dsn: str, nodes: int, count: int) -> bool:
    found = await owners(dsn)
    return len(found) == nodes and sum(len(v) for v in found.values()) == count


async def _shared(dsn: str, sizes: list[int]) -> bool:
    found = await owners(dsn)
    return sorted(len(v) for v in found.values()) == sizes


async def _all_delivered(calls: Calls, expected: list[int]) -> bool:
    want = set(expected)
    return all(want <= set(calls.offsets[str(i)]) for i in range(200))


async def state(http: aiohttp.ClientSession, hub: ServerProcess, sub_id: str) -> dict[str, Any]:
    code, body = await call(http, "GET", f"{hub.url}{SUBS}/{sub_id}")
    assert code == 200, body
    return dict(body)


async def test_actions_and_reads_reach_across_processes_and_a_stop_hands_back(
    tmp_path: Path, pg_dsn: str
) -> None:
    lease = 6.0  # long enough that a hand-back is told apart from an expiry
    calls = Calls()
    await calls.start()
    a = hub_process(tmp_path, "a", pg_dsn, lease)
    b: ServerProcess | None = None
    try:
        async with running(a) as http:
            await publish(http, a)
            subs = [await subscribe(http, a, f"{calls.url}/{i}") for i in range(4)]
            await until("a holds all", lambda: _holds_all(pg_dsn, 1, 4), 10)
            (a_node,) = (await owners(pg_dsn)).keys()
            b = hub_process(tmp_path, "b", pg_dsn, lease)
            await b.ready(http)
            await until("two each", lambda: _shared(pg_dsn, [2, 2]), 3 * lease)
            held = await owners(pg_dsn)
            on_a = [i for i, s in enumerate(subs) if s in held[a_node]]
            on_b = [i for i in range(4) if i not in on_a]
            paused, replayed = on_a

            # Pause, through b, one that a delivers: a stops it; both show it Paused.
            code, body = await call(http, "PATCH", f"{b.url}{SUBS}/{subs[paused]}/pause")
            assert code == 200 and body["status"] == "Paused", body
            # a hears of it by the notification, milliseconds after the commit.
            await until("Paused on a", lambda: _status(http, a, subs[paused], "Paused"), 5)
            await produce(http, b, 3)
            expected = await event_offsets(pg_dsn)
            others = [replayed, *on_b]
            await until(
                "the others delivered",
                lambda: _delivered(calls, others, expected),
                10,
            )
            # The holder's cursor, read on the other process (from the database): the holder
            # commits it just after the 2xx, so it shows there a moment later.
            for i in others:
                read_on = b if i in on_a else a

                async def caught_up(
                    read_on: ServerProcess = read_on, sub_id: str = subs[i]
                ) -> bool:
                    found = await state(http, read_on, sub_id)
                    return bool(found["lag"] == 0 and found["counts"]["delivered"] == 3)

                await until(f"subscription {i}'s cursor read on the other process", caught_up, 5)
            assert calls.offsets[str(paused)] == []
            # Resume through b: a delivers what waited.
            code, body = await call(http, "PATCH", f"{b.url}{SUBS}/{subs[paused]}/resume")
            assert code == 200 and body["status"] == "Active", body
            await until(
                "the paused one caught up", lambda: _delivered(calls, [paused], expected), 10
            )
            # Replay through b: a re-sends from the offset asked.
            code, body = await call(
                http, "PATCH", f"{b.url}{SUBS}/{subs[replayed]}/replay?fromOffset={expected[0]}"
            )
            assert code == 200, body
            await until(
                "replayed",
                lambda: _count(calls, replayed, 2 * len(expected)),
                10,
            )
            assert calls.offsets[str(replayed)] == expected + expected
            # Delete through b: gone on a too.
            code, _ = await call(http, "DELETE", f"{b.url}{SUBS}/{subs[replayed]}")
            assert code in (200, 204)
            await until("gone on a", lambda: _gone(http, a, subs[replayed]), 5)

            # A graceful stop hands a's lease back at once: b holds all three well before
            # a's lease would have expired.
            a.signal(signal.SIGTERM)
            stopped = time.monotonic()
            assert await a.exited() == 0
            await until("b holds all", lambda: _holds_all(pg_dsn, 1, 3), lease)
            assert time.monotonic() - stopped < lease
            await produce(http, b, 2)
            expected = await event_offsets(pg_dsn)
            await until("b delivers a's", lambda: _delivered(calls, [paused], expected), 10)
        b.signal(signal.SIGTERM)
        assert await b.exited() == 0
    finally:
        if b is not None:
            b.close()
        a.close()
        await calls.stop()


async def _delivered(calls: Calls, which: list[int], expected: list[int]) -> bool:
    return all(set(expected) <= set(calls.offsets[str(i)]) for i in which)


async def _count(calls: Calls, i: int, n: int) -> bool:
    return len(calls.offsets[str(i)]) >= n


async def _gone(http: aiohttp.ClientSession, hub: ServerProcess, sub_id: str) -> bool:
    code, _ = await call(http, "GET", f"{hub.url}{SUBS}/{sub_id}")
    return code == 404


async def _status(http: aiohttp.ClientSession, hub: ServerProcess, sub_id: str, want: str) -> bool:
    status: str = (await state(http, hub, sub_id))["status"]
    return status == want
