"""Process instances across restarts and ``kill -9`` (SPEC §6.2: "Everything is in the same
database and survives restarts and kill -9").

- A Waiting instance, its buffered events and its timeout survive a clean restart: the right
  event still wakes it, the buffer is still consumed, the timeout still fires (the same
  ``ManualClock`` across the restart).
- A call in flight when the hub dies (SIGKILL) or stops (graceful shutdown) is sent again
  after the restart with the same ``ce-id`` and ``webhook-id``, and the instance goes on.
- Under a load of start and wake events, a SIGKILL loses nothing that was acknowledged: each
  acknowledged start event started exactly one instance, and each acknowledged wake is where
  its receipt said (woke: resumed at its offset; buffered: still buffered or consumed;
  unrouted: in ``/api/unrouted``). ``-m long`` kills it 20 times in one run.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import signal
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import standardwebhooks
from aiohttp import web

from eventhub.settings import Settings
from tests.conftest import ManualClock, Running, settings_for
from tests.e2e.delivery_helpers import request, until_sleeping
from tests.e2e.helpers import BATCH, ServerProcess, bearer, serving
from tests.e2e.process_helpers import define, emit, instance, until_state
from tests.e2e.receiver import Receiver, Seen


def two_calls(uri: str) -> dict[str, Any]:
    """Two calls: the first is the one in flight at the crash, the second shows the instance
    went on."""
    return {
        "name": "Two calls",
        "start": {"filters": [{"exact": {"type": "order.created"}}]},
        "steps": [
            {"id": "notify", "call": {"uri": uri}},
            {"id": "confirm", "call": {"uri": uri}},
        ],
    }


def two_waits(**wait: Any) -> dict[str, Any]:
    """Waits only: approved, then shipped (``wait`` adds to the first wait)."""
    return {
        "name": "Two waits",
        "start": {"filters": [{"exact": {"type": "order.created"}}]},
        "steps": [
            {"id": "approval", "wait": {"type": "order.approved", **wait}},
            {"id": "shipping", "wait": {"type": "order.shipped"}},
        ],
    }


class HeldReceiver(Receiver):
    """A receiver that holds the first ``hold`` requests unanswered until it stops: a call in
    flight for as long as the test needs (a sleeping stall would also keep the receiver's own
    shutdown waiting). Every request is recorded on arrival in ``arrivals``."""

    def __init__(self, hold: int = 1) -> None:
        super().__init__()
        self.hold = hold
        self.arrivals: list[Seen] = []
        self.released = asyncio.Event()
        self._came = asyncio.Event()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.arrivals.append(Seen(dict(request.headers), await request.read()))
        self._came.set()
        if len(self.arrivals) <= self.hold:
            await self.released.wait()
        return await super()._handle(request)

    async def until_arrived(self, n: int, timeout: float = 15.0) -> list[Seen]:
        async with asyncio.timeout(timeout):
            while len(self.arrivals) < n:
                self._came.clear()
                await self._came.wait()
        return self.arrivals

    async def stop(self) -> None:
        self.released.set()
        await super().stop()


@contextlib.asynccontextmanager
async def hub_on(settings: Settings, clock: ManualClock) -> AsyncIterator[Running]:
    """An in-process hub on ``settings`` (its database) and ``clock``, stopped cleanly (the
    graceful shutdown of ``eventhub serve``) on leaving."""
    async with serving(settings, clock) as server:
        yield server


@contextlib.asynccontextmanager
async def held_receiver(hold: int = 1) -> AsyncIterator[HeldReceiver]:
    receiver = HeldReceiver(hold)
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


async def _only_instance(hub: Running, instance_id: str) -> None:
    """The start event started one instance, also across the restart (its start cursor was
    committed with it)."""
    status, body = await request(hub, "GET", "/api/instances")
    assert status == 200, body
    assert [i["id"] for i in body["instances"]] == [instance_id]


def _whats(found: dict[str, Any]) -> list[str]:
    return [h["what"] for h in found["history"]]


# -- 1. a clean restart while Waiting -----------------------------------------------------------


async def test_a_waiting_instance_and_its_buffer_survive_a_restart(tmp_path: Path) -> None:
    settings, clock = settings_for(tmp_path), ManualClock()
    async with hub_on(settings, clock) as hub:
        await define(hub, "orders", two_waits())
        started = await emit(hub, "order.created", "o-1", {"orderId": "o-1"})
        (only,) = (await request(hub, "GET", "/api/instances"))[1]["instances"]
        instance_id = only["id"]
        await until_state(hub, instance_id, "Waiting")
        early = await emit(hub, "order.shipped", "s-1", {"carrier": "ups"}, instance=instance_id)
        assert early["correlation"] == "buffered"

    async with hub_on(settings, clock) as hub:
        waiting = await instance(hub, instance_id)
        assert waiting["state"] == "Waiting" and waiting["waitingFor"] == "order.approved"
        assert waiting["startedBy"]["offset"] == started["offset"]
        woke = await emit(hub, "order.approved", "a-1", {"approvedBy": "ann"}, instance=instance_id)
        assert woke["correlation"] == "woke"
        done = await until_state(hub, instance_id, "Completed")
        await _only_instance(hub, instance_id)
    assert done["variables"] == {"orderId": "o-1", "approvedBy": "ann", "carrier": "ups"}
    resumed = [(h["step"], h["offset"]) for h in done["history"] if h["what"] == "resumed"]
    assert resumed == [("approval", woke["offset"]), ("shipping", early["offset"])]
    assert _whats(done).count("started") == 1


async def test_a_timeout_and_a_buffer_expiry_still_fire_after_a_restart(tmp_path: Path) -> None:
    settings, clock = settings_for(tmp_path), ManualClock()
    async with hub_on(settings, clock) as hub:
        await define(hub, "orders", {**two_waits(timeoutSeconds=30), "bufferSeconds": 20})
        await emit(hub, "order.created", "o-1")
        (only,) = (await request(hub, "GET", "/api/instances"))[1]["instances"]
        instance_id = only["id"]
        await until_state(hub, instance_id, "Waiting")
        early = await emit(hub, "order.shipped", "s-1", instance=instance_id)
        assert early["correlation"] == "buffered"
        clock.advance(10)  # a third of the timeout, half the buffer, before the restart

    async with hub_on(settings, clock) as hub:
        await until_sleeping(clock)  # the timer, asleep until what the database says is due
        assert (await instance(hub, instance_id))["state"] == "Waiting"
        clock.advance(10.5)  # the buffer ran out (20 s), the timeout (30 s) not yet
        await _until_unrouted(hub, early["offset"])
        assert (await instance(hub, instance_id))["state"] == "Waiting"
        await until_sleeping(clock)  # asleep until the timeout: it sees the next advance
        clock.advance(10)
        ended = await until_state(hub, instance_id, "TimedOut")
    assert _whats(ended)[-1] == "timedout"
    assert "resumed" not in _whats(ended)


async def _until_unrouted(hub: Running, offset: int, timeout: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            status, body = await request(hub, "GET", "/api/unrouted?limit=1000")
            assert status == 200, body
            for entry in body["events"]:
                if entry["offset"] == offset:
                    return dict(entry)
            await asyncio.sleep(0.01)


# -- 2. and 5. a call in flight at a crash or a stop --------------------------------------------


def _check_repeat(receiver: HeldReceiver, secret: str) -> str:
    """The call in flight and its repeat after the restart are one message: same ``ce-id``,
    same ``webhook-id``, both signed; then the next step's call. Returns the instance id."""
    first, again, confirm = receiver.arrivals[:3]
    instance_id = first.headers["ce-cxpinstanceid"]
    for seen in (first, again, confirm):
        standardwebhooks.Webhook(secret).verify(seen.body, seen.headers)
    assert first.headers["ce-id"] == f"call_{instance_id}_0"
    assert again.headers["ce-id"] == first.headers["ce-id"]
    assert again.headers["webhook-id"] == first.headers["webhook-id"] == first.headers["ce-id"]
    assert orjson.loads(again.body)["step"] == "notify"
    assert orjson.loads(again.body)["variables"] == orjson.loads(first.body)["variables"]
    assert confirm.headers["ce-id"] == f"call_{instance_id}_1"
    assert orjson.loads(confirm.body)["step"] == "confirm"
    return instance_id


async def test_sigkill_during_a_call_repeats_it_and_the_instance_goes_on(tmp_path: Path) -> None:
    data = tmp_path / "eventhub.db"
    first = ServerProcess(data, tmp_path / "first.log")
    second: ServerProcess | None = None
    try:
        async with held_receiver() as receiver, aiohttp.ClientSession() as http:
            await first.ready(http)
            hub = Running(first.url, None, http, bearer())  # type: ignore[arg-type]
            secret = (await define(hub, "orders", two_calls(receiver.url)))["secret"]
            started = await emit(hub, "order.created", "o-1", {"orderId": "o-1"})
            await receiver.until_arrived(1)  # held: the call is in flight
            first.signal(signal.SIGKILL)
            assert await first.exited() == -signal.SIGKILL
            assert len(receiver.arrivals) == 1

            second = ServerProcess(data, tmp_path / "second.log")
            await second.ready(http)
            hub = Running(second.url, None, http, bearer())  # type: ignore[arg-type]
            await receiver.until_arrived(3)
            instance_id = _check_repeat(receiver, secret)
            done = await until_state(hub, instance_id, "Completed")
            await _only_instance(hub, instance_id)
    finally:
        first.close()
        if second is not None:
            second.close()
    assert done["startedBy"]["offset"] == started["offset"]
    assert done["variables"] == {"orderId": "o-1"}
    assert _whats(done) == ["started", "called", "called", "completed"]


async def test_a_graceful_stop_during_a_call_repeats_it_after_the_restart(tmp_path: Path) -> None:
    settings, clock = settings_for(tmp_path), ManualClock()
    async with held_receiver() as receiver:
        async with hub_on(settings, clock) as hub:
            secret = (await define(hub, "orders", two_calls(receiver.url)))["secret"]
            await emit(hub, "order.created", "o-1", {"orderId": "o-1"})
            await receiver.until_arrived(1)  # held: the stop comes while the call is in flight
        assert len(receiver.arrivals) == 1

        async with hub_on(settings, clock) as hub:
            await receiver.until_arrived(3)
            instance_id = _check_repeat(receiver, secret)
            done = await until_state(hub, instance_id, "Completed")
            await _only_instance(hub, instance_id)
    # The abandoned attempt left no trace: it was neither a failure nor a retry.
    assert _whats(done) == ["started", "called", "called", "completed"]


# -- 3. kill -9 under a load of starts and wakes ------------------------------------------------

STARTERS = 3  # producers of start events
WAKERS = 3  # producers of events that name an instance
REQUESTS = 60  # per producer
START_BATCH = 10  # start events per request
KILL_AFTER = 400  # acknowledged events before the kill: well inside the load
FIRST_INSTANCES = 20  # started (and Waiting) before the load
WAIT_OF = {"order.approved": "approval", "order.shipped": "shipping"}  # two_waits' steps


@dataclass(frozen=True)
class Acked:
    """An event the hub acknowledged (2xx), with its receipt."""

    type: str
    id: str
    offset: int
    instance: str | None  # the cxpinstanceid it carried
    correlation: str | None


async def _produce(
    http: aiohttp.ClientSession,
    url: str,
    batches: list[list[dict[str, Any]]],
    acked: list[Acked],
    enough: asyncio.Event,
    kill_at: int,
) -> None:
    """Post ``batches`` one request each until the hub is gone; record every 2xx; set
    ``enough`` once ``kill_at`` events were acknowledged in all."""
    headers = {**bearer(), "Content-Type": BATCH}
    for batch in batches:
        try:
            async with http.post(url + "/events", data=orjson.dumps(batch), headers=headers) as r:
                if r.status != 200:
                    return
                receipts = (await r.json())["events"]
        except (TimeoutError, aiohttp.ClientError):
            return  # the hub died under this request: not acknowledged
        for event, receipt in zip(batch, receipts, strict=True):
            acked.append(
                Acked(
                    event["type"],
                    event["id"],
                    receipt["offset"],
                    event.get("cxpinstanceid"),
                    receipt.get("correlation"),
                )
            )
        if len(acked) >= kill_at:
            enough.set()


def _load(
    first_ids: list[str], rng: random.Random, serial: Iterator[int]
) -> list[list[list[dict[str, Any]]]]:
    """Per producer, its requests: batches of new orders (so the start consumers have pages
    to catch up on at the kill), or a few events naming the first instances (the awaited
    types in any order, so some wake and some are buffered) or no instance."""

    def event(type_: str, instance_id: str | None) -> dict[str, Any]:
        n = next(serial)
        out: dict[str, Any] = {
            "specversion": "1.0",
            "id": f"load-{n}",
            "source": "shop",
            "type": type_,
            "datacontenttype": "application/json",
            "data": {"n": n},
        }
        if instance_id is not None:
            out["cxpinstanceid"] = instance_id
        return out

    def named() -> dict[str, Any]:
        type_ = rng.choice(["order.approved", "order.shipped"])
        return event(type_, rng.choice([*first_ids, "no-such-instance"]))

    producers = [
        [[event("order.created", None) for _ in range(START_BATCH)] for _ in range(REQUESTS)]
        for _ in range(STARTERS)
    ]
    producers += [
        [[named() for _ in range(rng.randint(1, 3))] for _ in range(REQUESTS)]
        for _ in range(WAKERS)
    ]
    return producers


async def _all_instances(http: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        async with http.get(
            f"{url}/api/instances", params={"after": after, "limit": 1000}, headers=bearer()
        ) as r:
            assert r.status == 200, await r.text()
            body = await r.json()
        found.extend(body["instances"])
        if body["nextAfter"] is None:
            return found
        after = body["nextAfter"]


async def _unrouted(http: aiohttp.ClientSession, url: str) -> set[int]:
    offsets: set[int] = set()
    after = 0
    while True:
        async with http.get(
            f"{url}/api/unrouted", params={"after": after, "limit": 1000}, headers=bearer()
        ) as r:
            assert r.status == 200, await r.text()
            body = await r.json()
        offsets.update(e["offset"] for e in body["events"])
        if body["nextAfter"] is None:
            return offsets
        after = body["nextAfter"]


async def test_sigkill_under_starts_and_wakes_loses_nothing_acknowledged(tmp_path: Path) -> None:
    await _kills_under_load(tmp_path, kills=1, seed=9)


@pytest.mark.long
@pytest.mark.timeout(600)
async def test_sigkill_again_and_again_under_starts_and_wakes(tmp_path: Path) -> None:
    await _kills_under_load(tmp_path, kills=20, seed=10)


async def _kills_under_load(tmp_path: Path, kills: int, seed: int) -> None:
    """Start ``FIRST_INSTANCES`` instances, then ``kills`` times: a load of start and wake
    events, SIGKILL inside it, a restart on the same database. Then check every
    acknowledged event against the last hub."""
    rng = random.Random(seed)
    data = tmp_path / "eventhub.db"
    hubs = [ServerProcess(data, tmp_path / "hub-0.log")]
    acked: list[Acked] = []
    serial = itertools.count()
    try:
        async with aiohttp.ClientSession() as http:
            await hubs[0].ready(http)
            hub = Running(hubs[0].url, None, http, bearer())  # type: ignore[arg-type]
            # A last wait nothing in the load satisfies: every instance stays live, so a
            # buffered event is consumed or still buffered, never unrouted by a finish.
            process = two_waits()
            process["steps"].append({"id": "closing", "wait": {"type": "order.closed"}})
            await define(hub, "orders", process)
            before = [
                await emit(hub, "order.created", f"first-{i}") for i in range(FIRST_INSTANCES)
            ]
            async with asyncio.timeout(15):
                while True:
                    waiting = await _all_instances(http, hub.url)
                    if sum(i["state"] == "Waiting" for i in waiting) == FIRST_INSTANCES:
                        break
                    await asyncio.sleep(0.02)
            first_ids = [i["id"] for i in waiting]

            for n in range(1, kills + 1):
                enough, kill_at = asyncio.Event(), len(acked) + KILL_AFTER
                producers = [
                    asyncio.create_task(
                        _produce(http, hubs[-1].url, events, acked, enough, kill_at)
                    )
                    for events in _load(first_ids, rng, serial)
                ]
                async with asyncio.timeout(30):
                    await enough.wait()
                hubs[-1].signal(signal.SIGKILL)
                assert await hubs[-1].exited() == -signal.SIGKILL
                await asyncio.gather(*producers)
                assert len(acked) < kill_at + STARTERS * REQUESTS * START_BATCH - KILL_AFTER, (
                    "the kill should land mid-load"
                )
                hubs.append(ServerProcess(data, tmp_path / f"hub-{n}.log"))
                await hubs[-1].ready(http)

            url = hubs[-1].url
            acked_starts = {a.offset for a in acked if a.type == "order.created"}
            acked_starts |= {e["offset"] for e in before}
            async with asyncio.timeout(20):
                while True:
                    found = await _all_instances(http, url)
                    if acked_starts <= {i["startedBy"]["offset"] for i in found}:
                        break
                    await asyncio.sleep(0.05)
            unrouted = await _unrouted(http, url)
            histories = {
                i["id"]: (await instance(Running(url, None, http, bearer()), i["id"]))  # type: ignore[arg-type]
                for i in found
                if i["id"] in first_ids
            }
    finally:
        for server in hubs:
            server.close()

    # Every acknowledged start event started exactly one instance; no event started two.
    starts = Counter(i["startedBy"]["offset"] for i in found)
    assert max(starts.values()) == 1, [o for o, n in starts.items() if n > 1]
    assert acked_starts <= set(starts)
    by_offset = {i["startedBy"]["offset"]: i for i in found}
    for a in acked:
        if a.type == "order.created":
            assert by_offset[a.offset]["startedBy"]["id"] == a.id

    # Every acknowledged event that named an instance is where its receipt said.
    resumed_at: Counter[int] = Counter()
    buffered_at: dict[int, str] = {}
    types = {a.offset: a.type for a in acked}
    for instance_id, found_one in histories.items():
        for line in found_one["history"]:
            if line["what"] == "resumed":
                resumed_at[line["offset"]] += 1
                if line["offset"] in types:  # past the wait for its type, not another
                    assert line["step"] == WAIT_OF[types[line["offset"]]], line
            if line["what"] == "buffered":
                buffered_at[line["offset"]] = instance_id
    assert max(resumed_at.values(), default=1) == 1, "an event consumed twice"
    named = [a for a in acked if a.instance is not None]
    assert {a.correlation for a in named} == {"woke", "buffered", "unrouted"}, "a weak load"
    for a in named:
        if a.correlation == "woke":
            assert resumed_at[a.offset] == 1, a
            history = histories[a.instance]["history"]
            assert any(h["what"] == "resumed" and h["offset"] == a.offset for h in history), a
        elif a.correlation == "buffered":
            assert buffered_at.get(a.offset) == a.instance, a
            assert a.offset not in unrouted, a  # an hour's buffer, live instances
        else:
            assert a.correlation == "unrouted", a
            assert a.offset in unrouted, a
            assert resumed_at[a.offset] == 0, a
