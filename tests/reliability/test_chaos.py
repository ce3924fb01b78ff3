"""Chaos: ``python -m eventhub serve`` is SIGKILLed at random points, again and again, while
producers post in every ingest mode and 50 subscriptions deliver to receivers that fail at
random (5xx, resets, answers slower than the delivery timeout). Each time it restarts on the
same database, and the test checks what SPEC promises across a crash:

- every acknowledged event (a 2xx answer) is in the log with its content;
- no subscription's committed cursor moves backwards from one kill to the next (read in the
  killed hub's database), and the restarted hub's ``offset`` starts from it;
- at the end, once the receivers stop failing, every subscription is Active and caught up
  (a subscription is stuck if no delivery arrives for 10 s), and each receiver answered 2xx
  for every matching event of the log, the first 2xx of each in offset order with none
  skipped (repeats allowed: delivery is at-least-once).

The ``offset`` the API shows may run ahead of the committed cursor (the cursor is committed
without waiting, by design: a crash re-delivers), so it can be lower after a kill than just
before it; the run prints by how much it was ahead.

The short form runs in the default suite; ``-m long`` runs the long form. The seed is printed
at the start (pytest shows it on failure); ``CHAOS_SEED=n`` replays one run's choices (the
timing of a kill still varies).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.conftest import ADMIN_KEY, Running
from tests.e2e.delivery_helpers import publish_trigger, sub_state, subscribe
from tests.e2e.helpers import BATCH, STRUCTURED, ServerProcess, bearer, read_log
from tests.e2e.receiver import OK, Act, Receiver, Seen, reset, status

SUBSCRIPTIONS = 50
STALLED = 10.0  # seconds without a single delivery: a subscription is stuck
# Short retries, so Failed and recovery happen within the run; few retries, so they do.
SETTINGS = {
    "EVENTHUB_DELIVERY_INITIAL_DELAY": "0.02",
    "EVENTHUB_DELIVERY_MAX_DELAY": "0.2",
    "EVENTHUB_DELIVERY_MAX_RETRIES": "3",
    "EVENTHUB_RECOVERY_INITIAL_DELAY": "0.05",
    "EVENTHUB_RECOVERY_MAX_DELAY": "0.2",
    "EVENTHUB_DELIVERY_TIMEOUT": "0.3",
    "EVENTHUB_DELIVERY_CONNECT_TIMEOUT": "0.5",
    "EVENTHUB_ALLOWED_CALLBACK_NETWORKS": "127.0.0.0/8",
    "EVENTHUB_CALLBACK_NETWORKS_ONLY": "true",
}
TRIGGERS = {
    "orders": [{"exact": {"type": "chaos.order"}}],
    "everything": [{"prefix": {"type": "chaos."}}],
}


def _matches(trigger: str, event: dict[str, Any]) -> bool:
    kind = str(event["type"])
    return kind == "chaos.order" if trigger == "orders" else kind.startswith("chaos.")


# -- receivers that fail at random ---------------------------------------------------------------


@dataclass
class Flaky:
    """One subscription's receiver, failing at random while ``failing`` is set. It records,
    in arrival order, the offsets of every request (``arrivals``) and of those it answered 2xx
    (``delivered``): an event only counts as delivered once a 2xx answer was given for it.

    Slow answers are either a short stall then 200 (a success, unless the loaded hub timed
    out first: then it re-sends, a repeat) or a stall past the delivery timeout then 503 (a
    failure whether the hub waits for it or not), so that the test never counts as delivered
    a request the hub counted as failed and moved past."""

    receiver: Receiver
    rng: random.Random
    failing: bool = True
    arrivals: list[int] = field(default_factory=list)
    delivered: list[int] = field(default_factory=list)

    def decide(self, seen: Seen) -> Act:
        offsets = [e["offset"] for e in orjson.loads(seen.body)]
        self.arrivals.extend(offsets)
        act = self._act()
        if not act.reset and 200 <= act.status < 300:
            self.delivered.extend(offsets)
        return act

    def _act(self) -> Act:
        if not self.failing:
            return OK
        roll = self.rng.random()
        if roll < 0.12:
            return status(self.rng.choice((500, 502, 503)))
        if roll < 0.17:
            return reset()
        if roll < 0.22:
            return Act(stall=self.rng.uniform(0.01, 0.1))
        if roll < 0.25:
            return Act(status=503, stall=self.rng.uniform(0.35, 0.6))
        return OK

    def first_deliveries(self) -> list[int]:
        """Offsets in the order of their first 2xx answer."""
        return list(dict.fromkeys(self.delivered))


@contextlib.asynccontextmanager
async def flaky_receivers(n: int, rng: random.Random) -> AsyncIterator[list[Flaky]]:
    flaky: list[Flaky] = []
    try:
        for _ in range(n):
            receiver = await Receiver().start()
            one = Flaky(receiver, random.Random(rng.random()))
            receiver.decide = one.decide
            flaky.append(one)
        yield flaky
    finally:
        for one in flaky:
            await one.receiver.stop()


# -- producers in every ingest mode --------------------------------------------------------------


@dataclass
class Ledger:
    """What producers were told: (source, id) -> the data sent, for every 2xx answer."""

    acked: dict[tuple[str, str], Any] = field(default_factory=dict)
    offsets: dict[tuple[str, str], int] = field(default_factory=dict)
    requests: int = 0
    modes: set[str] = field(default_factory=set)


def _event(source: str, id_: str, kind: str, data: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": id_, "source": source, "type": kind, "data": data}


Request = tuple[str, str, dict[str, str], bytes, list[tuple[str, str, Any]]]


def _request(mode: str, tag: str, rng: random.Random) -> Request:
    """(mode, path, headers, body, [(source, id, data) it carries]) for one request."""

    def kind() -> str:
        return rng.choice(("chaos.order", "chaos.order", "chaos.other"))

    data = {"tag": tag, "n": rng.randrange(10**6)}
    if mode == "binary":
        headers = {
            "ce-specversion": "1.0",
            "ce-id": tag,
            "ce-source": "/chaos/binary",
            "ce-type": kind(),
            "content-type": "application/json",
        }
        return mode, "/events", headers, orjson.dumps(data), [("/chaos/binary", tag, data)]
    if mode == "structured":
        body = orjson.dumps(_event("/chaos/structured", tag, kind(), data))
        return (
            mode,
            "/events",
            {"content-type": STRUCTURED},
            body,
            [("/chaos/structured", tag, data)],
        )
    if mode in ("batch", "camunda"):
        source = f"/chaos/{mode}"
        events = [
            _event(source, f"{tag}.{j}", kind(), {**data, "j": j}) for j in range(rng.randint(1, 5))
        ]
        carried = [(source, e["id"], e["data"]) for e in events]
        if mode == "batch":
            return mode, "/events", {"content-type": BATCH}, orjson.dumps(events), carried
        for e in events:
            e["traceid"] = tag
        headers = {"content-type": "application/json"}
        return mode, "/api/ingestion/event/batch", headers, orjson.dumps(events), carried
    assert mode == "uipath"
    payload = {
        "Type": kind(),
        "EventId": tag,
        "Timestamp": "2026-01-01T00:00:00Z",
        "Job": data,
    }
    path = "/api/ingestion/uipath/%2Fchaos%2Fuipath"
    return mode, path, {}, orjson.dumps(payload), [("/chaos/uipath", tag, payload)]


MODES = ("binary", "structured", "batch", "camunda", "uipath")


async def _produce(
    url: str,
    http: aiohttp.ClientSession,
    worker: int,
    cycle: int,
    rng: random.Random,
    ledger: Ledger,
) -> None:
    """Post until the server is gone; record what a 2xx acknowledged."""
    n = 0
    while True:
        n += 1
        mode, path, headers, body, carried = _request(
            rng.choice(MODES), f"c{cycle}-w{worker}-{n}", rng
        )
        try:
            async with http.post(url + path, data=body, headers={**headers, **bearer()}) as r:
                answer = await r.read()
        except (aiohttp.ClientError, TimeoutError):
            return  # killed mid-request: not acknowledged, may or may not be stored
        ledger.requests += 1
        assert r.status in (200, 204), (mode, r.status, answer)
        ledger.modes.add(mode)
        for source, id_, data in carried:
            ledger.acked[(source, id_)] = data
        if r.status == 200:
            for e in orjson.loads(answer)["events"]:
                ledger.offsets[(e["source"], e["id"])] = e["offset"]
        await asyncio.sleep(rng.uniform(0, 0.01))


# -- the run -------------------------------------------------------------------------------------


@dataclass
class Sub:
    id: str
    trigger: str
    start: int  # the cursor at creation: only later events are due
    flaky: Flaky


def _running(process: ServerProcess, http: aiohttp.ClientSession) -> Running:
    # The delivery helpers take a Running; a child process has no Hub object to give.
    return Running(process.url, None, http, bearer(ADMIN_KEY))  # type: ignore[arg-type]


async def _cursors(
    server: Running, subs: list[Sub], statuses: set[str] | None = None
) -> dict[str, int]:
    states = await asyncio.gather(*(sub_state(server, s.id) for s in subs))
    if statuses is not None:
        statuses.update(state["status"] for state in states)
    return {s.id: int(state["offset"]) for s, state in zip(subs, states, strict=True)}


def _durable_cursors(data: Path) -> dict[str, int]:
    """Each subscription's committed cursor, read from the database of a killed hub (read-only,
    so the restarted hub recovers the WAL itself)."""
    with contextlib.closing(sqlite3.connect(f"file:{data}?mode=ro", uri=True)) as db:
        return {row[0]: row[1] for row in db.execute("SELECT id, cursor FROM subscriptions")}


def _check_acknowledged(ledger: Ledger, log: list[dict[str, Any]], seed: int) -> None:
    stored = {(e["event"]["source"], e["event"]["id"]): e for e in log}
    for key, data in ledger.acked.items():
        entry = stored.get(key)
        assert entry is not None, f"seed {seed}: acknowledged {key} is not in the log"
        assert entry["event"]["data"] == data, (seed, key, entry)
        if key in ledger.offsets:
            assert entry["offset"] == ledger.offsets[key], (seed, key, entry)


async def run_chaos(tmp_path: Path, seed: int, kills: int, producers: int) -> None:
    print(f"chaos seed {seed} (CHAOS_SEED={seed} to replay), {kills} kills")
    rng = random.Random(seed)
    data = tmp_path / "chaos.db"
    processes: list[ServerProcess] = []
    ledger = Ledger()
    timeout = aiohttp.ClientTimeout(total=20)

    def start(n: int) -> ServerProcess:
        process = ServerProcess(data, tmp_path / f"run-{n}.log", SETTINGS)
        processes.append(process)
        return process

    async with (
        flaky_receivers(SUBSCRIPTIONS, rng) as flaky,
        aiohttp.ClientSession(timeout=timeout) as http,
    ):
        try:
            process = start(0)
            await process.ready(http)
            server = _running(process, http)
            for trigger, filters in TRIGGERS.items():
                await publish_trigger(server, "chaos", trigger, filters)
            subs = []
            for i, one in enumerate(flaky):
                trigger = "orders" if i % 2 else "everything"
                created = await subscribe(
                    server, one.receiver.url, "chaos", trigger, batchSize=rng.randint(1, 5)
                )
                subs.append(Sub(created["id"], trigger, created["offset"], one))
            shown = await _cursors(server, subs)  # the highest the API showed
            committed = dict.fromkeys(shown, 0)  # what the database held at the last kill
            statuses: set[str] = set()  # every status seen under load
            unsaved = 0  # how far the API's offset ran ahead of the database at a kill

            for cycle in range(1, kills + 1):
                stop = asyncio.Event()

                async def kill_later(
                    process: ServerProcess = process, stop: asyncio.Event = stop
                ) -> None:
                    await asyncio.sleep(rng.uniform(0.3, 1.0))
                    process.signal(signal.SIGKILL)
                    stop.set()

                async with asyncio.TaskGroup() as group:
                    for w in range(producers):
                        worker_rng = random.Random(rng.random())
                        group.create_task(_produce(process.url, http, w, cycle, worker_rng, ledger))
                    group.create_task(kill_later())
                    # Cursors read under load, as close to the kill as the test can get.
                    while not stop.is_set():
                        with contextlib.suppress(aiohttp.ClientError, AssertionError):
                            seen = await _cursors(server, subs, statuses)
                            shown = {k: max(v, seen[k]) for k, v in shown.items()}
                assert await process.exited() == -signal.SIGKILL

                # What the restarted hub will start from: the cursors in the file it left.
                durable = _durable_cursors(data)
                back = {k: (committed[k], v) for k, v in durable.items() if v < committed[k]}
                assert not back, f"seed {seed}, kill {cycle}: committed cursors moved back: {back}"
                committed = durable
                ahead = max(shown[k] - durable[k] for k in durable)
                unsaved = max(unsaved, ahead)

                process = start(cycle)
                await process.ready(http)
                server = _running(process, http)
                after = await _cursors(server, subs)
                lost = {k: (committed[k], v) for k, v in after.items() if v < committed[k]}
                assert not lost, f"seed {seed}, kill {cycle}: restart lost cursors: {lost}"
                shown = after
                _check_acknowledged(ledger, await read_log(http, process.url), seed)

            assert ledger.requests > 10 * kills, f"too little load: {ledger.requests}"
            assert ledger.modes == set(MODES), ledger.modes

            assert "Failed" in statuses or kills < 20, f"seed {seed}: never Failed: {statuses}"

            # The receivers heal: every subscription must catch up by itself.
            for one in flaky:
                one.failing = False
            log = await read_log(http, process.url)
            await _caught_up(server, subs, log, seed)
            _check_acknowledged(ledger, log, seed)
            process.signal(signal.SIGTERM)
            assert await process.exited() == 0
            arrivals = sum(len(one.arrivals) for one in flaky)
            print(
                f"{ledger.requests} requests, {len(ledger.acked)} events acknowledged,"
                f" {len(log)} in the log, {arrivals} event deliveries, statuses {sorted(statuses)}; at a kill the API's"
                f" offset was up to {unsaved} ahead of the committed cursor"
            )
        except BaseException:
            for process in processes[-2:]:
                print(f"--- {process.log_path.name}\n{process.output()}")
            raise
        finally:
            for process in processes:
                process.close()


async def _caught_up(
    server: Running, subs: list[Sub], log: list[dict[str, Any]], seed: int
) -> None:
    due: dict[str, list[int]] = {
        s.id: [
            e["offset"] for e in log if e["offset"] > s.start and _matches(s.trigger, e["event"])
        ]
        for s in subs
    }

    empty = [s.id for s in subs if not due[s.id]]
    assert not empty, f"seed {seed}: no event due for {empty}; the test proves nothing"

    def settled(state: dict[str, Any], sub: Sub) -> bool:
        # The cursor moves only after a 2xx, which the receiver recorded before answering.
        at_end = state["offset"] == due[sub.id][-1]
        return bool(state["status"] == "Active" and state["lag"] == 0 and at_end)

    # Stuck means no progress at all for STALLED seconds, not slow: a long run's backlog of
    # hundreds of thousands of deliveries takes a while on two cores.
    progress, moved = -1, time.monotonic()
    while True:
        states = await asyncio.gather(*(sub_state(server, s.id) for s in subs))
        if all(settled(state, sub) for state, sub in zip(states, subs, strict=True)):
            break
        now = sum(len(s.flaky.arrivals) for s in subs)
        if now != progress:
            progress, moved = now, time.monotonic()
        elif time.monotonic() - moved > STALLED:
            stuck = [
                (s.id, state["status"], state["lag"], len(s.flaky.first_deliveries()),
                 len(due[s.id]))
                for state, s in zip(states, subs, strict=True)
                if not settled(state, s)
            ]  # fmt: skip
            raise AssertionError(f"seed {seed}: subscriptions stuck: {stuck}")
        await asyncio.sleep(0.1)
    for sub in subs:
        firsts = sub.flaky.first_deliveries()
        assert firsts == due[sub.id], (
            f"seed {seed}: {sub.id} ({sub.trigger}) got first deliveries out of order or with"
            f" gaps: missing {sorted(set(due[sub.id]) - set(firsts))[:10]},"
            f" unexpected {sorted(set(firsts) - set(due[sub.id]))[:10]}"
        )


def _seed() -> int:
    return int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(2**32))


async def test_chaos_sigkill_under_mixed_load(tmp_path: Path) -> None:
    await run_chaos(tmp_path, _seed(), kills=5, producers=5)


@pytest.mark.long
@pytest.mark.timeout(1200)
async def test_chaos_sigkill_under_mixed_load_long(tmp_path: Path) -> None:
    await run_chaos(tmp_path, _seed(), kills=50, producers=12)
