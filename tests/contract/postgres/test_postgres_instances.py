"""Process definitions and instances on PostgreSQL: one scenario (start, call steps, waits,
buffering, correlation of ingested events, timeouts, cancel, retention's needs) run against
SqliteStore and PostgresStore with the same clock; every answer must be the same, and the
answers that matter are checked outright too."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from eventhub.events import NewEvent
from eventhub.log.base import Hooks
from eventhub.log.postgres import PostgresStore
from eventhub.log.sqlite import SqliteStore
from eventhub.processes.definitions import Call, Definition, Start, Step, Stored, Wait
from eventhub.processes.instances import Entry, Instance, State, Then, Woken
from eventhub.vault import Vault
from tests.conftest import ManualClock
from tests.contract.postgres.test_postgres_store import event

VAULT = Vault(b"k" * 32)
T0 = 1_800_000_000.0

DEFINITION = Definition(
    "order",
    "Order",
    Start(km="km", trigger="created"),
    (
        Step("charge", Call("http://127.0.0.1:9/charge", {"Authorization": "secret"})),
        Step("paid", Wait("paid", 60.0)),
        Step("ship", Call("http://127.0.0.1:9/ship", {})),
    ),
    buffer_seconds=30.0,
)


def names(definition_id: str, version: int, index: int) -> str | None:
    return DEFINITION.step_id(index)


def instance(instance_id: str, offset: int) -> Instance:
    return Instance(
        id=instance_id,
        definition_id="order",
        version=1,
        state=State.RUNNING,
        step=0,
        variables={"n": offset},
        buffer_for=30.0,
        started_by={"source": "/s", "id": f"e{offset}", "offset": offset},
        last_offset=offset,
        created_at="2027-01-15T08:00:00Z",
        updated_at="2027-01-15T08:00:00Z",
    )


def named(id_: str, instance_id: str, type_: str, data: bytes = b'{"paid": 1}') -> NewEvent:
    e = event(id_, data, type_=type_)
    e.attributes["cxpinstanceid"] = instance_id
    return e


def without_times(value: Any) -> Any:
    """Instances and woken records as comparable values (their seq is each store's own)."""
    if isinstance(value, Instance):
        return (
            value.id,
            value.state,
            value.step,
            value.variables,
            value.waiting_for,
            value.due,
            value.last_offset,
            value.error,
            [(h.step, h.what, h.offset, h.detail) for h in value.history],
        )
    if isinstance(value, Woken):
        return (without_times(value.instance), value.cause.offset)
    if isinstance(value, list | tuple):
        return [without_times(v) for v in value]
    return value


class Heard:
    """What a store's hooks heard: instances woken (with the earliest expiry) and events
    emitted."""

    def __init__(self) -> None:
        self.woke: list[Any] = []
        self.emitted: list[str] = []

    def hooks(self) -> Hooks:
        return Hooks(
            step_names=names,
            on_instances=lambda woken, earliest: self.woke.append((woken, earliest)),
            on_emitted=lambda events: self.emitted.extend(e.type for e in events),
        )


async def scenario(store: Any, clock: ManualClock, heard: Heard) -> list[Any]:
    """Everything the engine asks of a store, in the order it would; returns the answers."""
    out: list[Any] = []
    woke, emitted = heard.woke, heard.emitted
    tid = await store.ensure_trigger("km", "created")
    out.append(await store.save_definition(Stored(DEFINITION, "k1", "whsec_x", tid, 0, "c", "u")))
    out.append(await store.save_definition(Stored(DEFINITION, "k1", "whsec_x", tid, 0, "c", "u")))
    current, versions = await store.load_definitions()
    out.append([(s.definition.id, s.definition.version, s.secret, s.cursor) for s in current])
    out.append(sorted((v.id, v.version, v.steps) for v in versions))
    await store.append([event(f"e{i}", type_="created") for i in range(1, 4)])  # 1..3
    started = [(instance(f"i{n}", n), "charge") for n in (1, 2, 3)]
    out.append(await store.start_instances("order", 2, started[:2]))
    out.append(await store.start_instances("order", 3, started))  # 1 and 2 are not again
    out.append([without_times(i) for i in await store.running_instances()])
    # i1: a call, then its wait opens in the same commit: nothing buffered, so it sleeps.
    then = Then(wait_type="paid", timeout=60.0)
    entry = Entry("2027-01-15T08:00:01Z", "charge", "called", None, "200")
    out.append(await store.advance_instance("i1", 0, {"n": 1, "ok": True}, [entry], then))
    out.append(await store.advance_instance("i1", 0, {}, [], then))  # moved on: nothing
    # i2: an event for it arrives before it waits: buffered; its wait then takes it.
    out.append(await store.append([named("p2", "i2", "paid", b'{"amount": 5}')]))
    out.append(await store.advance_instance("i2", 0, {"n": 2}, [], None))
    out.append(await store.open_wait("i2", 1, "paid", 60.0))
    # i1 is woken by an event naming it; one for nobody is unrouted.
    out.append(await store.append([named("p1", "i1", "paid"), named("px", "nobody", "paid")]))
    await store.append([named("p1", "i1", "paid")])  # a resend: a duplicate, same receipt
    # i3: waits, and times out.
    out.append(await store.advance_instance("i3", 0, {"n": 3}, [], then))
    out.append(await store.next_due())
    await store.note_instance("i3", [Entry("2027-01-15T08:00:02Z", "paid", "note", None, "x")])
    clock.advance(61)
    out.append(await store.expire_instances(10))
    out.append(await store.finish_instance("i1", [State.RUNNING], State.COMPLETED, step=2))
    out.append(await store.finish_instance("i1", [State.RUNNING], State.CANCELLED))
    out.append(await store.finish_instance("i2", [State.RUNNING], State.CANCELLED, "stop"))
    for i in ("i1", "i2", "i3", "nope"):
        out.append(without_times(await store.get_instance(i)))
    out.append(without_times(await store.load_instance("i1")))
    out.append(await store.list_unrouted(0, 10))
    out.append([i.id for i in await store.list_instances(None, None, 0, 10)])
    out.append([i.id for i in await store.list_instances("order", State.COMPLETED, 0, 10)])
    first = (await store.list_instances(None, None, 0, 1))[0]
    out.append([i.id for i in await store.list_instances(None, None, first.seq, 10)])
    out.append(sorted(await store.live_instances("order")))
    out.append((await store.read_figures([])).instances)
    out.append(without_times([w for w, _ in woke]))
    out.append([earliest for _, earliest in woke])
    out.append(emitted)
    await store.delete_definition("order")
    out.append((await store.load_definitions())[0])
    return out


async def test_instances_behave_as_on_sqlite(pg_dsn: str, tmp_path: Path) -> None:
    sqlite_clock, pg_clock = ManualClock(T0), ManualClock(T0)
    sqlite_heard, pg_heard = Heard(), Heard()
    sqlite = SqliteStore(tmp_path / "log.db", sqlite_clock, vault=VAULT, hooks=sqlite_heard.hooks())
    postgres = PostgresStore(pg_dsn, pg_clock, vault=VAULT, hooks=pg_heard.hooks())
    await sqlite.open()
    await postgres.open()
    try:
        expected = await scenario(sqlite, sqlite_clock, sqlite_heard)
        got = await scenario(postgres, pg_clock, pg_heard)
    finally:
        await sqlite.close()
        await postgres.close()
    for n, (want, have) in enumerate(zip(expected, got, strict=True)):
        assert have == want, f"answer {n}"
    # What matters, outright (the comparison alone would pass two stores wrong alike):
    assert got[0] == (1, 0) and got[1] == (2, 0)
    assert got[4] == ["i1", "i2"] and got[5] == ["i3"]
    assert [a.correlation for a in got[9]] == ["buffered"]
    assert got[11] is not None and got[11].offset == got[9][0].offset  # the buffered one
    assert got[11].variables["amount"] == 5
    assert [a.correlation for a in got[12]] == ["woke", "unrouted"]
    assert got[15] == 1  # i3 timed out
    assert got[16] is not None and got[17] is None  # completed once, then not cancelled
    i1, i2, i3 = got[19][1], got[20][1], got[21][1]
    assert (i1, i2, i3) == (State.COMPLETED, State.CANCELLED, State.TIMED_OUT)
    assert got[22] is None
    assert [u["cxpinstanceid"] for u in got[24]] == ["nobody"]
    assert got[28] == []  # none live
    assert got[-1] == []


async def test_a_wait_is_taken_once_when_two_processes_race(pg_dsn: str) -> None:
    """Two processes finishing one instance at once: exactly one wins (row locks)."""
    one = PostgresStore(pg_dsn, ManualClock(T0), vault=VAULT, hooks=Hooks(step_names=names))
    two = PostgresStore(pg_dsn, ManualClock(T0), vault=VAULT, hooks=Hooks(step_names=names))
    await one.open()
    await two.open()
    try:
        tid = await one.ensure_trigger("km", "created")
        await one.save_definition(Stored(DEFINITION, "k1", "whsec_x", tid, 0, "c", "u"))
        await one.append([event(f"e{i}", type_="created") for i in range(20)])
        started = [(instance(f"i{n}", n), "charge") for n in range(1, 21)]
        both = await asyncio.gather(
            one.start_instances("order", 20, started), two.start_instances("order", 20, started)
        )
        assert sorted(both[0] + both[1]) == sorted(f"i{n}" for n in range(1, 21))
        results = await asyncio.gather(
            *(
                s.finish_instance(f"i{n}", [State.RUNNING], State.CANCELLED)
                for n in range(1, 21)
                for s in (one, two)
            )
        )
        assert sum(r is not None for r in results) == 20
    finally:
        await one.close()
        await two.close()


class Nudged:
    """What reached a store by ``NOTIFY eventhub_instance`` / ``eventhub_process``."""

    def __init__(self) -> None:
        self.ids: list[set[str]] = []
        self.dues: list[float] = []
        self.definitions: list[str | None] = []

    def hooks(self) -> Hooks:
        return Hooks(
            step_names=names,
            on_instance_ids=self._instances,
            on_definition=self.definitions.append,
        )

    def _instances(self, ids: set[str], due: float | None) -> None:
        if ids:
            self.ids.append(ids)
        if due is not None:
            self.dues.append(due)


async def heard(check: Any) -> None:
    async with asyncio.timeout(5):
        while not check():
            await asyncio.sleep(0.01)


async def test_commits_reach_the_other_processes_by_notify(pg_dsn: str) -> None:
    """Starts, wakes and due times committed on one process reach the others (where the
    holders of the instances' partitions drive them); saved and deleted definitions too.
    The committing process hears none of its own: it has the results at hand."""
    mine, theirs = Nudged(), Nudged()
    one = PostgresStore(pg_dsn, ManualClock(T0), vault=VAULT, hooks=mine.hooks())
    two = PostgresStore(pg_dsn, ManualClock(T0), vault=VAULT, hooks=theirs.hooks())
    await one.open()
    await two.open()
    try:
        tid = await one.ensure_trigger("km", "created")
        await one.save_definition(Stored(DEFINITION, "k1", "whsec_x", tid, 0, "c", "u"))
        await heard(lambda: theirs.definitions == ["order"])
        await one.append([event(f"e{i}", type_="created") for i in range(1, 3)])
        started = [(instance(f"i{n}", n), "charge") for n in (1, 2)]
        await one.start_instances("order", 2, started)
        await heard(lambda: theirs.ids == [{"i1", "i2"}])
        # i1 waits with a timeout: its due goes to the timer's holder.
        then = Then(wait_type="paid", timeout=60.0)
        await one.advance_instance("i1", 0, {"n": 1}, [], then)
        await heard(lambda: theirs.dues == [T0 + 60.0])
        # An event wakes i1 (Running again), one for i2 is buffered until T0 + 30.
        await one.append([named("p1", "i1", "paid"), named("p2", "i2", "paid")])
        await heard(lambda: theirs.ids[1:] == [{"i1"}] and theirs.dues[1:] == [T0 + 30.0])
        await one.delete_definition("order")
        await heard(lambda: theirs.definitions == ["order", "order"])
        assert (mine.ids, mine.dues, mine.definitions) == ([], [], [])
    finally:
        await one.close()
        await two.close()
