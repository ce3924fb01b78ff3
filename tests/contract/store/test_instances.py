"""Process definitions and instances through the ``Instances`` port (no engine): every change
is compare-and-set, a start page is taken once, an appended event naming an instance wakes
it, is buffered (consumed oldest first) or is unrouted, expiry times out and unroutes once,
and all of it survives reopening the store. The hooks (``on_instances``, ``on_emitted``) may
come after the call that committed returns: ``Heard`` waits for them.

What the engine does with these answers (calls, retries, the API) is ``tests/e2e/
test_process*.py``'s; the pure rules (``correlate``) are ``tests/unit/test_process_rules.py``'s."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from eventhub.events import NewEvent
from eventhub.log.base import Hooks, Store
from eventhub.processes import lifecycle
from eventhub.processes.definitions import Call, Definition, Start, Step, Stored, Wait
from eventhub.processes.instances import Entry, Instance, State, Then, Woken
from tests.conftest import ManualClock
from tests.contract.store.conftest import Backend, Heard
from tests.contract.store.samples import event

T0 = 1_800_000_000.0
BUFFER = 30.0
TIMEOUT = 60.0

DEFINITION = Definition(
    "order",
    "Order",
    Start(km="km", trigger="created"),
    (
        Step("charge", Call("http://127.0.0.1:9/charge", {"Authorization": "secret"})),
        Step("paid", Wait("paid", TIMEOUT)),
        Step("shipped", Wait("shipped", None)),
    ),
    buffer_seconds=BUFFER,
)


def names(definition_id: str, version: int, index: int) -> str | None:
    return DEFINITION.step_id(index)


@dataclass
class Procs:
    """A store with the process hooks, and what they heard."""

    backend: Backend
    database: str
    clock: ManualClock
    store: Store = field(init=False)
    heard: Heard = field(default_factory=Heard)
    woken: list[Woken] = field(default_factory=list)
    expiries: list[float] = field(default_factory=list)
    emitted: list[NewEvent] = field(default_factory=list)

    def hooks(self) -> Hooks:
        def on_instances(woken: list[Woken], earliest: float | None) -> None:
            self.woken += woken
            if earliest is not None:
                self.expiries.append(earliest)
            self.heard.called()

        def on_emitted(events: list[NewEvent]) -> None:
            self.emitted += events
            self.heard.called()

        return Hooks(step_names=names, on_instances=on_instances, on_emitted=on_emitted)

    async def reopen(self) -> None:
        await self.store.close()
        self.store = self.backend.store(self.database, self.clock, self.hooks())
        await self.store.open()

    def moves(self, instance_id: str) -> list[str]:
        """The lifecycle events heard for ``instance_id``, by move."""
        return [
            e.type.removeprefix(lifecycle.TYPE_PREFIX)
            for e in self.emitted
            if e.attributes.get("subject") == instance_id
        ]


@pytest.fixture
async def procs(backend: Backend) -> AsyncIterator[Procs]:
    clock = ManualClock(T0)
    database = backend.database()
    made = Procs(backend, database, clock)
    made.store = backend.store(database, clock, made.hooks())
    await made.store.open()
    yield made
    await made.store.close()


def instance(instance_id: str, offset: int) -> Instance:
    return Instance(
        id=instance_id,
        definition_id="order",
        version=1,
        state=State.RUNNING,
        step=0,
        variables={"n": offset},
        buffer_for=BUFFER,
        started_by={"source": "/s", "id": f"e{offset}", "offset": offset},
        last_offset=offset,
        created_at="2027-01-15T08:00:00Z",
        updated_at="2027-01-15T08:00:00Z",
    )


def naming(id_: str, instance_id: str, type_: str, data: bytes = b'{"paid": 1}') -> NewEvent:
    """An event naming an instance (``cxpinstanceid``)."""
    e = event(id_, data, type_=type_)
    e.attributes["cxpinstanceid"] = instance_id
    return e


async def defined(store: Store) -> int:
    """The definition saved, on its start trigger; returns the trigger's number."""
    tid = await store.ensure_trigger("km", "created")
    await store.save_definition(Stored(DEFINITION, "k1", "whsec_x", tid, 0, "c", "u"))
    return tid


async def started(store: Store, *ids: str) -> list[int]:
    """The definition, one start event per id, and an instance of each at step 0 (Running,
    about to call); returns the start events' offsets."""
    await defined(store)
    appended = await store.append([event(f"start-{i}", type_="created") for i in ids])
    offsets = [a.offset for a in appended]
    got = await store.start_instances(
        "order",
        offsets[-1],
        [(instance(i, o), "charge") for i, o in zip(ids, offsets, strict=True)],
    )
    assert got == list(ids)
    return offsets


async def waiting(store: Store, instance_id: str, type_: str = "paid") -> None:
    """``instance_id``'s call done and its wait for ``type_`` open, in one commit."""
    done = await store.advance_instance(
        instance_id, 0, {"charged": True}, [], Then(wait_type=type_, timeout=TIMEOUT)
    )
    assert done.moved and done.opened is not None and done.opened.offset is None


# -- definitions ---------------------------------------------------------------------------------


async def test_definitions_get_new_versions_and_keep_their_start_cursor(procs: Procs) -> None:
    store = procs.store
    tid = await store.ensure_trigger("km", "created")
    assert await store.ensure_trigger("km", "created") == tid
    assert await store.save_definition(Stored(DEFINITION, "k1", "whsec_x", tid, 5, "c", "u")) == (
        1,
        5,
    )
    # A stale caller (it read cursor 0) never moves the start cursor back on the same trigger.
    assert await store.save_definition(Stored(DEFINITION, "k2", "whsec_x", tid, 0, "c", "u")) == (
        2,
        5,
    )
    current, versions = await store.load_definitions()
    assert [(s.definition.id, s.definition.version, s.owner, s.cursor) for s in current] == [
        ("order", 2, "k2", 5)
    ]
    assert current[0].secret == "whsec_x" and current[0].start_tid == tid
    assert await store.definition_starts() == {"order": (2, tid)}
    assert sorted((v.id, v.version) for v in versions) == [("order", 1), ("order", 2)]
    assert all(v.steps == DEFINITION.steps for v in versions)  # header values opened again
    await store.delete_definition("order")
    current, versions = await store.load_definitions()
    assert current == [] and len(versions) == 2  # old instances still read their version
    assert await store.definition_starts() == {}
    # Made again: a version no old instance names.
    assert (await store.save_definition(Stored(DEFINITION, "k1", "w", tid, 0, "c", "u")))[0] == 3


# -- starting ------------------------------------------------------------------------------------


async def test_a_start_page_is_taken_once(procs: Procs) -> None:
    store = procs.store
    await defined(store)
    offsets = [
        a.offset for a in await store.append([event(f"e{i}", type_="created") for i in range(4)])
    ]
    page = [(instance(f"i{n}", o), "charge") for n, o in enumerate(offsets)]
    # Two starters with the same page at once (a retried write, a second process).
    one, two = await asyncio.gather(
        store.start_instances("order", offsets[1], page[:2]),
        store.start_instances("order", offsets[1], page[:2]),
    )
    assert sorted(one + two) == ["i0", "i1"]
    # The next page overlaps the first: only what is past the stored cursor starts.
    assert await store.start_instances("order", offsets[3], page) == ["i2", "i3"]
    assert await store.start_instances("order", offsets[3], page) == []
    current, _ = await store.load_definitions()
    assert current[0].cursor == offsets[3]
    assert sorted(i.id for i in await store.running_instances()) == ["i0", "i1", "i2", "i3"]
    await procs.heard.until(lambda: all(procs.moves(f"i{n}") == ["started"] for n in range(4)))
    # A definition deleted meanwhile starts nothing.
    await store.delete_definition("order")
    assert await store.start_instances("order", 99, [(instance("late", 99), "charge")]) == []
    assert await store.load_instance("late") is None


# -- compare-and-set -----------------------------------------------------------------------------


async def test_every_change_refuses_a_stale_move(procs: Procs) -> None:
    store = procs.store
    await started(store, "i1", "i2")
    # Two callers finish the same call at once: one moves it.
    results = await asyncio.gather(
        store.advance_instance("i1", 0, {"a": 1}, []),
        store.advance_instance("i1", 0, {"a": 2}, []),
    )
    assert sorted(r.moved for r in results) == [False, True]
    assert not (await store.advance_instance("i1", 0, {}, [])).moved  # step 0 is done
    loaded = await store.load_instance("i1")
    assert loaded is not None and loaded.step == 1 and loaded.variables["a"] in (1, 2)
    assert await store.open_wait("i1", 0, "paid", TIMEOUT) is None  # not at step 0 any more
    assert await store.open_wait("i1", 1, "paid", TIMEOUT) is not None
    assert await store.open_wait("i1", 1, "paid", TIMEOUT) is None  # Waiting, not Running
    assert not (await store.advance_instance("i1", 1, {}, [])).moved  # Waiting: no call done
    # finish: only from the states expected, only at the step given.
    assert await store.finish_instance("i1", [State.RUNNING], State.FAILED) is None
    assert await store.finish_instance("i1", [State.WAITING], State.CANCELLED, step=0) is None
    ended = await store.finish_instance("i1", [State.WAITING], State.CANCELLED, "stop", step=1)
    assert ended is not None and ended.state is State.CANCELLED
    assert await store.finish_instance("i1", [State.WAITING], State.CANCELLED) is None
    assert await store.finish_instance("nope", [State.RUNNING], State.CANCELLED) is None
    # Two finishing one instance at once: one wins.
    both = await asyncio.gather(
        store.finish_instance("i2", [State.RUNNING], State.COMPLETED, step=0),
        store.finish_instance("i2", [State.RUNNING], State.FAILED, "boom", step=0),
    )
    assert sum(r is not None for r in both) == 1
    i1, i2 = await store.get_instance("i1"), await store.get_instance("i2")
    assert i1 is not None and i1.state is State.CANCELLED and i1.error == "stop"
    assert i1.waiting_for is None and i1.due is None
    assert i2 is not None and i2.state in (State.COMPLETED, State.FAILED)
    assert await store.running_instances() == []
    assert await store.live_instances("order") == []
    await procs.heard.until(lambda: procs.moves("i1")[-1:] == ["cancelled"])
    assert procs.moves("i1") == ["started", "waiting", "cancelled"]


async def test_a_call_then_its_end_or_wait_is_one_commit(procs: Procs) -> None:
    store = procs.store
    await started(store, "i1", "i2")
    called = Entry("2027-01-15T08:00:01Z", "charge", "called", None, "200")
    done = await store.advance_instance("i1", 0, {"ok": True}, [called], Then(complete=True))
    assert done.moved and done.completed and done.opened is None
    await waiting(store, "i2")
    i1, i2 = await store.get_instance("i1"), await store.get_instance("i2")
    assert i1 is not None and (i1.state, i1.step, i1.variables) == (
        State.COMPLETED,
        1,
        {"ok": True},
    )
    assert [(h.step, h.what, h.detail) for h in i1.history] == [
        ("charge", "started", None),
        ("charge", "called", "200"),
        ("paid", "completed", None),
    ]
    assert i2 is not None and (i2.state, i2.step, i2.waiting_for) == (State.WAITING, 1, "paid")
    assert i2.due == T0 + TIMEOUT and await store.next_due() == T0 + TIMEOUT
    await store.note_instance("i2", [Entry("2027-01-15T08:00:02Z", "paid", "retrying", None, "x")])
    i2 = await store.get_instance("i2")
    assert i2 is not None and [h.what for h in i2.history] == ["started", "waiting", "retrying"]
    loaded = await store.load_instance("i2")
    assert loaded is not None and loaded.history == []  # without its history


# -- correlation of appended events ----------------------------------------------------------------


async def test_a_wait_is_woken_by_an_appended_event_once(procs: Procs) -> None:
    store = procs.store
    await started(store, "i1")
    await waiting(store, "i1")
    (woke,) = await store.append([naming("p1", "i1", "paid", b'{"amount": 5}')])
    assert woke.correlation == "woke"
    await procs.heard.until(lambda: bool(procs.woken))
    (heard,) = procs.woken
    assert heard.cause.offset == woke.offset and heard.cause.attributes["type"] == "paid"
    assert (heard.instance.id, heard.instance.state, heard.instance.step) == (
        "i1",
        State.RUNNING,
        2,
    )
    assert heard.instance.variables == {"charged": True, "amount": 5}
    assert heard.instance.last_offset == woke.offset
    # A resend is a duplicate: the same receipt, no second wake. An event the instance does
    # not wait for is buffered: its hook call comes after any the resend made.
    (again,) = await store.append([naming("p1", "i1", "paid", b'{"amount": 5}')])
    assert again.duplicate and again.correlation == "woke"
    (kept,) = await store.append([naming("s1", "i1", "other")])
    assert kept.correlation == "buffered"
    await procs.heard.until(lambda: bool(procs.expiries))
    assert len(procs.woken) == 1 and procs.expiries == [T0 + BUFFER]
    loaded = await store.get_instance("i1")
    assert loaded is not None
    assert (loaded.state, loaded.step, loaded.variables, loaded.last_offset) == (
        State.RUNNING,
        2,
        heard.instance.variables,
        woke.offset,
    )
    assert [(h.what, h.offset) for h in loaded.history] == [
        ("started", 1),
        ("waiting", None),
        ("resumed", woke.offset),
        ("buffered", kept.offset),
    ]
    await procs.heard.until(lambda: procs.moves("i1") == ["started", "waiting", "resumed"])


async def test_an_event_for_no_live_instance_is_unrouted_and_listed_once(procs: Procs) -> None:
    store = procs.store
    await started(store, "done")
    assert await store.finish_instance("done", [State.RUNNING], State.COMPLETED) is not None
    out = await store.append(
        [naming("x1", "nobody", "paid"), naming("x2", "done", "paid"), event("plain")]
    )
    assert [a.correlation for a in out] == ["unrouted", "unrouted", None]
    unrouted = await store.list_unrouted(0, 10)
    assert [(u["offset"], u["cxpinstanceid"], u["type"]) for u in unrouted] == [
        (out[0].offset, "nobody", "paid"),
        (out[1].offset, "done", "paid"),
    ]
    assert unrouted[0]["reason"] == "no such instance" and "Completed" in unrouted[1]["reason"]
    assert await store.list_unrouted(out[0].offset, 10) == unrouted[1:]
    done = await store.get_instance("done")
    assert done is not None and [h.what for h in done.history][-1] == "unrouted"


async def test_buffered_events_are_consumed_oldest_first(procs: Procs) -> None:
    store = procs.store
    await started(store, "i1")
    # The instance is still calling: events for it wait in its buffer.
    first, other, second, shipped = await store.append(
        [
            naming("p1", "i1", "paid", b'{"amount": 1, "first": true}'),
            naming("o1", "i1", "other"),
            naming("p2", "i1", "paid", b'{"amount": 2}'),
            naming("s1", "i1", "shipped", b'{"carrier": "x"}'),
        ]
    )
    assert {a.correlation for a in (first, other, second, shipped)} == {"buffered"}
    await procs.heard.until(lambda: bool(procs.expiries))
    assert procs.expiries == [T0 + BUFFER] and procs.woken == []
    assert await store.next_due() == T0 + BUFFER
    # Its wait takes the oldest of its type, in the commit that opens it.
    done = await store.advance_instance("i1", 0, {}, [], Then(wait_type="paid", timeout=TIMEOUT))
    assert done.moved and done.opened is not None and done.opened.offset == first.offset
    assert done.opened.variables == {"amount": 1, "first": True}
    # The next wait, of another type, takes that type's; the second "paid" stays buffered.
    opened = await store.open_wait("i1", 2, "shipped", None)
    assert opened is not None and opened.offset == shipped.offset
    assert opened.variables == {"amount": 1, "first": True, "carrier": "x"}
    # A resend of a consumed event reads "woke": it did wake the instance.
    (again,) = await store.append([naming("p1", "i1", "paid", b'{"amount": 1, "first": true}')])
    assert again.duplicate and again.correlation == "woke"
    # The end unroutes what is still buffered, oldest first, each once.
    assert await store.finish_instance("i1", [State.RUNNING], State.COMPLETED) is not None
    unrouted = await store.list_unrouted(0, 10)
    assert [u["offset"] for u in unrouted] == [other.offset, second.offset]
    assert await store.next_due() is None
    assert await store.expire_instances(10) == 0
    i1 = await store.get_instance("i1")
    assert i1 is not None
    assert [(h.what, h.offset) for h in i1.history] == [
        ("started", 1),
        ("buffered", first.offset),
        ("buffered", other.offset),
        ("buffered", second.offset),
        ("buffered", shipped.offset),
        ("resumed", first.offset),
        ("resumed", shipped.offset),
        ("unrouted", other.offset),
        ("unrouted", second.offset),
        ("completed", None),
    ]
    await procs.heard.until(lambda: procs.moves("i1")[-1:] == ["completed"])
    assert procs.moves("i1") == ["started", "resumed", "resumed", "completed"]


async def test_expiry_times_out_and_unroutes_once(procs: Procs) -> None:
    store = procs.store
    clock = procs.clock
    await started(store, "sleeper", "caller")
    await waiting(store, "sleeper")  # due at T0 + 60
    (early,) = await store.append([naming("p1", "caller", "paid")])  # buffered until T0 + 30
    assert early.correlation == "buffered"
    assert await store.next_due() == T0 + BUFFER
    clock.advance(BUFFER - 1)
    assert await store.expire_instances(10) == 0  # nothing due yet
    clock.advance(1)
    assert await store.expire_instances(10) == 1  # the buffered event ran out
    assert await store.expire_instances(10) == 0  # once
    assert [u["offset"] for u in await store.list_unrouted(0, 10)] == [early.offset]
    assert await store.next_due() == T0 + TIMEOUT
    # The caller's wait finds its buffer empty now: it sleeps.
    assert await store.open_wait("caller", 0, "paid", None) is not None  # step 0: Running
    clock.advance(TIMEOUT - BUFFER)
    assert await store.expire_instances(10) == 1  # the sleeper timed out
    assert await store.expire_instances(10) == 0
    sleeper = await store.get_instance("sleeper")
    assert sleeper is not None and sleeper.state is State.TIMED_OUT and sleeper.due is None
    assert sleeper.error == "no awaited event came before the timeout"
    caller = await store.get_instance("caller")
    assert caller is not None and caller.state is State.WAITING and caller.due is None
    assert await store.next_due() is None  # the caller waits for ever
    # An event for the timed-out one comes too late: unrouted.
    (late,) = await store.append([naming("p2", "sleeper", "paid")])
    assert late.correlation == "unrouted"
    await procs.heard.until(lambda: procs.moves("sleeper")[-1:] == ["timedout"])


async def test_a_limit_bounds_each_expiry_round(procs: Procs) -> None:
    store = procs.store
    ids = [f"i{n}" for n in range(5)]
    await started(store, *ids)
    for i in ids:
        await waiting(store, i)
    procs.clock.advance(TIMEOUT)
    assert await store.expire_instances(2) == 2
    assert await store.expire_instances(2) == 2
    assert await store.expire_instances(2) == 1
    assert await store.expire_instances(2) == 0
    timed_out = await store.list_instances("order", State.TIMED_OUT, 0, 10)
    assert sorted(i.id for i in timed_out) == ids


# -- reads ---------------------------------------------------------------------------------------


async def test_instances_list_by_definition_and_state_and_page_by_seq(procs: Procs) -> None:
    store = procs.store
    await started(store, "a", "b", "c")
    assert await store.finish_instance("b", [State.RUNNING], State.CANCELLED) is not None
    every = await store.list_instances(None, None, 0, 10)
    assert [i.id for i in every] == ["a", "b", "c"]
    assert [i.seq for i in every] == sorted({i.seq for i in every})
    assert [i.id for i in await store.list_instances(None, None, every[0].seq, 10)] == ["b", "c"]
    assert [i.id for i in await store.list_instances(None, None, 0, 1)] == ["a"]
    assert [i.id for i in await store.list_instances("order", State.RUNNING, 0, 10)] == ["a", "c"]
    assert await store.list_instances("other", None, 0, 10) == []
    assert sorted(await store.live_instances("order")) == ["a", "c"]
    assert [i.id for i in await store.running_instances()] == ["a", "c"]
    assert (await store.read_figures([])).instances == {"Running": 2, "Cancelled": 1}
    start = await store.read_event(1)
    assert start is not None and start.id == "start-a"
    assert await store.read_event(999) is None


# -- durability ----------------------------------------------------------------------------------


async def test_instances_survive_reopening_the_store(procs: Procs) -> None:
    await started(procs.store, "sleeper", "caller", "done")
    await waiting(procs.store, "sleeper")
    (kept,) = await procs.store.append([naming("p1", "caller", "paid", b'{"kept": 1}')])
    await procs.store.finish_instance("done", [State.RUNNING], State.COMPLETED)
    (lost,) = await procs.store.append([naming("x", "nobody", "paid")])
    before = {i: await procs.store.get_instance(i) for i in ("sleeper", "caller", "done")}
    definitions_before = await procs.store.load_definitions()
    await procs.reopen()
    store = procs.store
    assert {i: await store.get_instance(i) for i in before} == before
    assert await store.load_definitions() == definitions_before
    assert [i.id for i in await store.running_instances()] == ["caller"]
    assert await store.next_due() == T0 + BUFFER
    assert [u["offset"] for u in await store.list_unrouted(0, 10)] == [lost.offset]
    # Carried on by the reopened store: the buffer is there, a wait is woken.
    opened = await store.open_wait("caller", 0, "paid", None)
    assert opened is not None and opened.offset == kept.offset
    (woke,) = await store.append([naming("p2", "sleeper", "paid")])
    assert woke.correlation == "woke"
    await procs.heard.until(lambda: [w.instance.id for w in procs.woken] == ["sleeper"])
    # The start cursor too: the same page starts nothing again.
    again = [(instance(i, n), "charge") for n, i in enumerate(before, 1)]
    assert await store.start_instances("order", 3, again) == []
