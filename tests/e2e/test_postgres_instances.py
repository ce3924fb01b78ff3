"""Process instances on several ``eventhub serve`` processes sharing one PostgreSQL (SPEC §9,
``processes/partitions.py``): instances are driven by the holder of their partition only,
definitions made on one process reach the other, wakes and timeouts reach the holder by
``NOTIFY``, and after a SIGKILL the survivor takes the dead process's partitions over and
finishes its instances, repeating (with the same ``ce-id``) only calls that were in flight;
a process that joins is handed idle partitions (no call repeated), and a cancel made on the
non-holder stops the holder's call at once.
Real processes, the session's PostgreSQL (tests/postgres.py), one real receiver."""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]
from aiohttp import web

from eventhub.processes import lifecycle, partitions
from tests.conftest import TEST_SECRET_KEY
from tests.e2e.helpers import ServerProcess, bearer
from tests.e2e.loopback import LoopbackReceiver
from tests.e2e.test_postgres_leases import LEASE, hub_process, running, until

DEFINITION = "orders"


class Calls(LoopbackReceiver):
    """A receiver on 127.0.0.1 for call steps: every request's ``ce-id`` and when it came,
    answered after ``delay`` seconds (so that calls are in flight for a while)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.arrivals: dict[str, list[float]] = defaultdict(list)  # ce-id -> arrival times
        super().__init__()

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.arrivals[request.headers["ce-id"]].append(time.monotonic())
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.json_response({})


class Held(Calls):
    """A receiver that answers nothing until ``go`` is set: its calls stay in flight."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        super().__init__()

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.arrivals[request.headers["ce-id"]].append(time.monotonic())
        await asyncio.wait_for(self.go.wait(), 20)
        return web.json_response({})


class HungUp(Calls):
    """A receiver that holds every call until its caller hangs up (recorded in ``hung_up``)
    or ``go`` is set, then answers 500 (so that the caller retries)."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.hung_up: list[str] = []
        super().__init__()

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        ce_id = request.headers["ce-id"]
        self.arrivals[ce_id].append(time.monotonic())
        deadline = time.monotonic() + 20
        while not self.go.is_set() and time.monotonic() < deadline:
            if request.protocol.transport is None:  # the connection was closed by the caller
                self.hung_up.append(ce_id)
                break
            await asyncio.sleep(0.02)
        return web.Response(status=500)


def definition(calls: Calls, timeout: float | None = None) -> dict[str, Any]:
    wait: dict[str, Any] = {"type": "order.approved"}
    if timeout is not None:
        wait["timeoutSeconds"] = timeout
    return {
        "name": "Order approval",
        "start": {"filters": [{"exact": {"type": "order.created"}}]},
        "steps": [
            {"id": "notify", "call": {"uri": f"{calls.url}/notify"}},
            {"id": "approval", "wait": wait},
            {"id": "ship", "call": {"uri": f"{calls.url}/ship"}},
        ],
    }


_ids = itertools.count()


async def send(
    http: aiohttp.ClientSession, hub: ServerProcess, type_: str, instance: str | None = None
) -> None:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"e-{next(_ids)}",
        "source": "/shop",
        "type": type_,
        "data": {"n": 1},
    }
    if instance is not None:
        event["cxpinstanceid"] = instance
    headers = {**bearer(), "content-type": "application/cloudevents+json"}
    async with http.post(f"{hub.url}/events", json=event, headers=headers) as r:
        assert r.status == 200, await r.text()


async def define(http: aiohttp.ClientSession, hub: ServerProcess, body: dict[str, Any]) -> None:
    url = f"{hub.url}/api/processes/{DEFINITION}"
    async with http.put(url, json=body, headers=bearer()) as r:
        assert r.status == 201, await r.text()


async def knows_definition(http: aiohttp.ClientSession, hub: ServerProcess) -> bool:
    async with http.get(f"{hub.url}/api/processes/{DEFINITION}", headers=bearer()) as r:
        return r.status == 200


async def query(dsn: str, sql: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def partition_owners(dsn: str) -> dict[str, set[int]]:
    """Live partition leases: holder -> partitions."""
    out: dict[str, set[int]] = defaultdict(set)
    for row in await query(
        dsn, "SELECT owner, id FROM leases WHERE kind = 'partition' AND expires_at > now()"
    ):
        out[row["owner"]].add(int(row["id"]))
    return out


def shared(dsn: str, sizes: list[int]) -> Callable[[], Any]:
    async def check() -> bool:
        found = await partition_owners(dsn)
        return sorted(len(v) for v in found.values()) == sizes

    return check


async def states(dsn: str) -> dict[str, str]:
    return {r["id"]: r["state"] for r in await query(dsn, "SELECT id, state FROM instances")}


def all_in(dsn: str, n: int, wanted: set[str]) -> Callable[[], Any]:
    async def check() -> bool:
        found = await states(dsn)
        return len(found) == n and set(found.values()) <= wanted

    return check


async def test_two_processes_drive_each_instance_once(tmp_path: Path, pg_dsn: str) -> None:
    calls = Calls()
    await calls.start()
    a, b = hub_process(tmp_path, "a", pg_dsn), None
    try:
        async with running(a) as http:
            # b after a: two first starts on one empty database race to create the
            # built-in model (the catalogue's business, not this test's).
            b = hub_process(tmp_path, "b", pg_dsn)
            await b.ready(http)
            await until("the partitions shared", shared(pg_dsn, [16, 16]), 3 * LEASE + 5)
            timeout = 3.0
            await define(http, a, definition(calls, timeout))
            # b hears of the definition by NOTIFY: from then on its appends start instances.
            await until("b knows the definition", lambda: knows_definition(http, b), 5)
            n = 16
            await asyncio.gather(*(send(http, (a, b)[i % 2], "order.created") for i in range(n)))
            await until("every instance waiting", all_in(pg_dsn, n, {"Waiting"}), 10)
            ids = sorted(await states(pg_dsn))
            # One is left to time out: one the timer's holder does not drive (the wait was
            # opened elsewhere; that its due travels by NOTIFY is checked in
            # tests/contract/postgres/test_postgres_instances.py: here the holder's own
            # waits, due as early, may wake the timer first).
            owners = await partition_owners(pg_dsn)
            timer = next(o for o, held in owners.items() if partitions.TIMER_PARTITION in held)
            late = next(i for i in ids if partitions.partition_of(i) not in owners[timer])
            woken = [i for i in ids if i != late]
            await asyncio.gather(
                *(send(http, (a, b)[k % 2], "order.approved", i) for k, i in enumerate(woken))
            )
            await until("every instance finished", all_in(pg_dsn, n, {"Completed", "TimedOut"}), 10)
            final = await states(pg_dsn)
            assert final[late] == "TimedOut"
            assert all(final[i] == "Completed" for i in woken)
            timed_out = await query(
                pg_dsn,
                "SELECT count(*) FROM instance_history WHERE instance_id = $1 AND what = $2",
                late,
                "timedout",
            )
            assert timed_out[0][0] == 1
            for hub in (a, b):
                hub.signal(signal.SIGTERM)
                assert await hub.exited() == 0
    finally:
        a.close()
        if b is not None:
            b.close()
        await calls.stop()
    # No crash: every call step was made exactly once, and in step order.
    for i in ids:
        first, second = lifecycle.call_id(i, 0), lifecycle.call_id(i, 2)
        assert len(calls.arrivals[first]) == 1, (i, calls.arrivals[first])
        if i == late:
            assert second not in calls.arrivals
        else:
            assert len(calls.arrivals[second]) == 1, (i, calls.arrivals[second])
            assert calls.arrivals[first][0] < calls.arrivals[second][0]
    assert len(calls.arrivals) == 2 * n - 1


async def test_a_survivor_finishes_the_instances_of_a_killed_process(
    tmp_path: Path, pg_dsn: str
) -> None:
    calls = Calls(delay=0.2)  # calls stay in flight long enough to be cut by the kill
    await calls.start()
    a, b = hub_process(tmp_path, "a", pg_dsn), None
    try:
        async with running(a) as http:
            # b after a: two first starts on one empty database race to create the
            # built-in model (the catalogue's business, not this test's).
            await until("a holds every partition", shared(pg_dsn, [partitions.PARTITIONS]), 5)
            (a_node,) = await partition_owners(pg_dsn)
            b = hub_process(tmp_path, "b", pg_dsn)
            await b.ready(http)
            await until("the partitions shared", shared(pg_dsn, [16, 16]), 3 * LEASE + 5)
            on_a = (await partition_owners(pg_dsn))[a_node]
            await define(http, a, definition(calls))
            await until("b knows the definition", lambda: knows_definition(http, b), 5)
            n = 24
            await asyncio.gather(
                *(send(http, (a, b)[i % 2], "order.created") for i in range(n - 8))
            )
            await asyncio.sleep(0.1)  # some notify calls are now in flight on a
            a.signal(signal.SIGKILL)
            killed = time.monotonic()
            await asyncio.gather(*(send(http, b, "order.created") for _ in range(8)))
            took = await until(
                "b holds every partition", shared(pg_dsn, [partitions.PARTITIONS]), LEASE + 5
            )
            assert time.monotonic() - killed <= LEASE + 4, took
            await until("every instance waiting", all_in(pg_dsn, n, {"Waiting"}), 15)
            ids = sorted(await states(pg_dsn))
            await asyncio.gather(*(send(http, b, "order.approved", i) for i in ids))
            await until("every instance completed", all_in(pg_dsn, n, {"Completed"}), 15)
            b.signal(signal.SIGTERM)
            assert await b.exited() == 0
    finally:
        a.close()
        if b is not None:
            b.close()
        await calls.stop()
    repeated = 0
    for i in ids:
        first, second = (
            calls.arrivals[lifecycle.call_id(i, 0)],
            calls.arrivals[lifecycle.call_id(i, 2)],
        )
        assert first and second, i
        assert max(first) < min(second), i  # the steps in order
        assert len(second) == 1, i  # after the takeover: once
        if len(first) > 1:
            # Repeated only what was in flight on a when it died: an instance a drove,
            # first sent before the kill, repeated once (by b, with the same ce-id).
            assert partitions.partition_of(i) in on_a, i
            assert min(first) < killed and len(first) == 2, (i, first)
            repeated += 1
    assert repeated <= n - 8


async def test_a_joining_process_takes_idle_partitions_and_repeats_no_call(
    tmp_path: Path, pg_dsn: str
) -> None:
    """a drives 8 instances whose first call is held in flight; b joins and gets 16 of the
    32 partitions: a releases idle ones, so none of those calls is abandoned and repeated.
    (Sorted order would release "0", "1", "10" ..: 8 busy partitions would rarely all miss.)"""
    calls = Held()
    await calls.start()
    a, b = hub_process(tmp_path, "a", pg_dsn), None
    n = 8
    try:
        async with running(a) as http:
            await until("a holds every partition", shared(pg_dsn, [partitions.PARTITIONS]), 5)
            (a_node,) = await partition_owners(pg_dsn)
            await define(http, a, definition(calls))
            await asyncio.gather(*(send(http, a, "order.created") for _ in range(n)))

            async def in_flight() -> bool:
                return len(calls.arrivals) == n

            await until("every first call in flight", in_flight, 10)
            ids = sorted(await states(pg_dsn))
            busy = {partitions.partition_of(i) for i in ids}
            b = hub_process(tmp_path, "b", pg_dsn)
            await b.ready(http)
            await until("the partitions shared", shared(pg_dsn, [16, 16]), 3 * LEASE + 5)
            assert busy <= (await partition_owners(pg_dsn))[a_node]
            calls.go.set()
            await until("every instance waiting", all_in(pg_dsn, n, {"Waiting"}), 10)
            for hub in (a, b):
                hub.signal(signal.SIGTERM)
                assert await hub.exited() == 0
    finally:
        calls.go.set()
        a.close()
        if b is not None:
            b.close()
        await calls.stop()
    for i in ids:
        assert len(calls.arrivals[lifecycle.call_id(i, 0)]) == 1, i
    assert len(calls.arrivals) == n


async def test_a_cancel_on_another_process_stops_the_holders_call(
    tmp_path: Path, pg_dsn: str
) -> None:
    """A cancel made on the process that does not hold the instance's partition reaches the
    holder (``NOTIFY eventhub_instance``, "stop"): it hangs up the call in flight at once and
    never retries it, while the other instances' calls, answered 500, are retried."""
    calls = HungUp()
    await calls.start()
    quick = {"EVENTHUB_DELIVERY_INITIAL_DELAY": "0.1"}  # retries come within 0.1 s

    def hub(name: str) -> ServerProcess:
        env = {
            "EVENTHUB_DATABASE": pg_dsn,
            "EVENTHUB_SECRET_KEY": TEST_SECRET_KEY,
            "EVENTHUB_LEASE_SECONDS": str(LEASE),
            **quick,
        }
        return ServerProcess(tmp_path / f"{name}.db", tmp_path / f"{name}.log", env)

    a, b = hub("a"), None
    n = 4
    try:
        async with running(a) as http:
            await until("a holds every partition", shared(pg_dsn, [partitions.PARTITIONS]), 5)
            (a_node,) = await partition_owners(pg_dsn)
            b = hub("b")
            await b.ready(http)
            await until("the partitions shared", shared(pg_dsn, [16, 16]), 3 * LEASE + 5)
            on_a = (await partition_owners(pg_dsn))[a_node]
            await define(http, a, definition(calls))
            await until("b knows the definition", lambda: knows_definition(http, b), 5)
            await asyncio.gather(*(send(http, a, "order.created") for _ in range(n)))

            async def in_flight() -> bool:
                return len(calls.arrivals) == n

            await until("every first call in flight", in_flight, 10)
            ids = sorted(await states(pg_dsn))
            target = ids[0]
            elsewhere = b if partitions.partition_of(target) in on_a else a
            url = f"{elsewhere.url}/api/instances/{target}/cancel"
            async with http.post(url, headers=bearer()) as r:
                assert r.status == 200, await r.text()
            call = lifecycle.call_id(target, 0)

            async def hung_up() -> bool:
                return call in calls.hung_up

            await until("the holder hung the cancelled call up", hung_up, 5)
            calls.go.set()
            others = [lifecycle.call_id(i, 0) for i in ids[1:]]

            async def retried_twice() -> bool:
                return all(len(calls.arrivals[c]) >= 3 for c in others)

            # The others' second retry comes after the first's delay and the second's: a
            # retry of the cancelled call (due a first retry's delay after the hang-up) would
            # have arrived by then.
            await until("the other calls retried twice", retried_twice, 10)
            assert len(calls.arrivals[call]) == 1
            assert (await states(pg_dsn))[target] == "Cancelled"
            for each in (a, b):
                each.signal(signal.SIGTERM)
                assert await each.exited() == 0
    finally:
        calls.go.set()
        a.close()
        if b is not None:
            b.close()
        await calls.stop()
