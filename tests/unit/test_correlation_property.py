"""Correlation, as a property (SPEC §6.2; ``eventhub/processes/instances.py``): for random
interleavings of start events, events naming instances (the awaited types, a type never
awaited, an unknown instance, several in one append), re-sent duplicates, cancels and clock
advances (buffer expiry, wait timeouts), against a real in-process ``Hub``:

- every event that names an instance ends in exactly one of: resumed in exactly one
  instance's history (the one it names) at its offset, still buffered there, or listed in
  ``/api/unrouted`` (``list_unrouted``): never lost, never consumed twice;
- the receipt's word was true when given (``woke``: that instance resumed at that offset; a
  duplicate's receipt is the fate of the stored original);
- the fates and the instances' states equal those of a small model of the rules (wait
  ``order.approved`` -> wait ``order.shipped`` with a timeout, buffers of 60 s);
- a straggler's write (a runner that outlived a cancel, a timeout or a crash) is refused by
  the store's compare-and-set and changes nothing.

After each step the test waits until the hub is quiet (no instance Running, nothing due not
yet handled), so the model's order of things is the hub's. The clock is a ``ManualClock`` on
whole seconds, so the model's sums of times are exactly the hub's.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventhub import auth, errors
from eventhub.events import DataKind, NewEvent, digest_of
from eventhub.hub import Hub
from eventhub.processes import definitions
from eventhub.processes.instances import Entry, State
from tests.conftest import ManualClock, settings_for

APPROVED, SHIPPED, NOTED = "order.approved", "order.shipped", "order.noted"
WAITS = (APPROVED, SHIPPED)
BUFFER = 60
TIMEOUT = 90  # of the second wait
PROCESS = {
    "name": "Two waits",
    "start": {"filters": [{"exact": {"type": "order.created"}}]},
    "steps": [
        {"id": "approval", "wait": {"type": APPROVED}},
        {"id": "shipping", "wait": {"type": SHIPPED, "timeoutSeconds": TIMEOUT}},
    ],
    "bufferSeconds": BUFFER,
}
ADMIN = auth.Principal("test", "admin", None)
QUIET = 10.0  # seconds the hub has to settle after a step

# -- the steps ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    pass


@dataclass(frozen=True)
class Send:
    """One append of events, each (index of a started instance, None: an unknown one; type)."""

    events: tuple[tuple[int | None, str], ...]


@dataclass(frozen=True)
class Resend:
    """An event sent before, again (the same id and content): a duplicate."""

    which: int


@dataclass(frozen=True)
class Advance:
    seconds: int


@dataclass(frozen=True)
class Cancel:
    which: int


@dataclass(frozen=True)
class Stale:
    """A straggler's writes (a runner that outlived a cancel, a timeout or a crash): open the
    wait, advance, complete, at the instance's step or ``back`` steps before it. At rest no
    instance is Running, so each must be refused and change nothing (compare-and-set)."""

    which: int
    back: int


Step = Start | Send | Resend | Advance | Cancel | Stale

# Mostly events naming started instances, with the awaited types: they wake, are buffered
# and consumed; sometimes a type never awaited or an unknown instance.
named_event = st.tuples(
    st.integers(-1, 7).map(lambda i: None if i < 0 else i),
    st.sampled_from([APPROVED, APPROVED, SHIPPED, SHIPPED, NOTED]),
)
# Weighted by repetition (sampled_from draws evenly; one_of leans to its first branch):
# mostly events, then time and new instances.
_KINDS: dict[str, st.SearchStrategy[Step]] = {
    "send": st.builds(Send, st.lists(named_event, min_size=1, max_size=3).map(tuple)),
    "advance": st.builds(Advance, st.sampled_from([15, 30, 45, 61, 95])),
    "start": st.just(Start()),
    "resend": st.builds(Resend, st.integers(0, 50)),
    "cancel": st.builds(Cancel, st.integers(0, 7)),
    "stale": st.builds(Stale, st.integers(0, 7), st.integers(0, 1)),
}
step = st.sampled_from(
    ["send"] * 6 + ["advance"] * 2 + ["start"] * 2 + ["resend", "cancel", "stale"]
).flatmap(_KINDS.__getitem__)
# A plan starts an instance or two first: without one, every event is unrouted.
steps = st.tuples(st.integers(1, 3), st.lists(step, min_size=6, max_size=30)).map(
    lambda p: [Start()] * p[0] + p[1]
)


# -- the model ----------------------------------------------------------------------------------


@dataclass
class Modelled:
    """An instance as the rules see it."""

    state: State = State.RUNNING
    step: int = 0
    due: float | None = None
    buffered: list[tuple[int, str, float]] = field(default_factory=list)  # offset, type, expiry


@dataclass
class Model:
    now: float
    instances: dict[str, Modelled] = field(default_factory=dict)
    fate: dict[int, str] = field(default_factory=dict)  # offset -> woke/buffered/consumed/unrouted

    def correlate(self, offset: int, instance_id: str, type_: str) -> str:
        """An appended event naming ``instance_id``; its receipt."""
        found = self.instances.get(instance_id)
        if found is None or found.state not in (State.RUNNING, State.WAITING):
            fate = "unrouted"
        elif found.state is State.WAITING and WAITS[found.step] == type_:
            found.state, found.step, found.due = State.RUNNING, found.step + 1, None
            fate = "woke"
        else:
            found.buffered.append((offset, type_, self.now + BUFFER))
            fate = "buffered"
        self.fate[offset] = fate
        return fate

    def run(self) -> None:
        """Every Running instance goes on until it sleeps or completes."""
        for found in self.instances.values():
            while found.state is State.RUNNING:
                if found.step == len(WAITS):
                    self._finish(found, State.COMPLETED)
                    break
                taken = [b for b in found.buffered if b[1] == WAITS[found.step] and b[2] > self.now]
                if not taken:
                    found.state = State.WAITING
                    found.due = self.now + TIMEOUT if found.step == 1 else None
                    break
                oldest = min(taken)
                found.buffered.remove(oldest)
                self.fate[oldest[0]] = "consumed"
                found.step += 1

    def advance(self, seconds: int) -> None:
        self.now += seconds
        for found in self.instances.values():
            if found.state is State.WAITING and found.due is not None and found.due <= self.now:
                self._finish(found, State.TIMED_OUT)
            for b in [b for b in found.buffered if b[2] <= self.now]:
                found.buffered.remove(b)
                self.fate[b[0]] = "unrouted"

    def cancel(self, instance_id: str) -> bool:
        found = self.instances[instance_id]
        if found.state not in (State.RUNNING, State.WAITING):
            return False
        self._finish(found, State.CANCELLED)
        return True

    def _finish(self, found: Modelled, state: State) -> None:
        found.state, found.due = state, None
        for offset, _, _ in found.buffered:
            self.fate[offset] = "unrouted"
        found.buffered.clear()


# -- the hub --------------------------------------------------------------------------------------


def _event(n: int, type_: str, instance_id: str | None) -> NewEvent:
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"e-{n}",
        "source": "shop",
        "type": type_,
        "datacontenttype": "application/json",
    }
    if instance_id is not None:
        attributes["cxpinstanceid"] = instance_id
    body = orjson.dumps({"n": n})
    return NewEvent(attributes, body, DataKind.JSON, digest_of(attributes, body, DataKind.JSON))


async def _until(check: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(QUIET):
        while not await check():
            await asyncio.sleep(0.001)


async def _quiet(hub: Hub, clock: ManualClock) -> None:
    """No instance Running, nothing due left undone, and the timer parked (asleep on the
    clock, or with nothing due): advancing the clock now is seen by the timer."""

    async def settled() -> bool:
        if await hub.store.list_instances("orders", State.RUNNING, 0, 1):
            return False
        due = await hub.store.next_due()
        return due is None or (due > clock.now() and clock.sleepers() > 0)

    await _until(settled)


@dataclass
class Sent:
    event: NewEvent
    offset: int
    instance_id: str
    receipt: str


async def _run(folder: Path, plan: list[Step]) -> None:
    clock = ManualClock(start=1_800_000_000.0)  # whole seconds: the model's sums are exact
    hub = Hub(settings_for(folder), clock)
    await hub.start()
    try:
        await hub.processes.put("orders", msgspec.convert(PROCESS, definitions.ProcessBody), ADMIN)
        model = Model(clock.now())
        started: list[str] = []
        sent: list[Sent] = []
        serial = itertools.count()
        for step in plan:
            if isinstance(step, Start):
                (appended,) = await hub.store.append([_event(next(serial), "order.created", None)])
                assert appended.correlation is None
                await _until(lambda: _started(hub, len(started) + 1))
                (new,) = (await hub.store.list_instances("orders", None, 0, 1000))[len(started) :]
                assert new.started_by["offset"] == appended.offset
                started.append(new.id)
                model.instances[new.id] = Modelled()
                model.run()
            elif isinstance(step, Send):
                named = [
                    f"ghost-{which}"
                    if which is None or not started
                    else started[which % len(started)]
                    for which, _ in step.events
                ]
                events = [
                    _event(next(serial), type_, instance_id)
                    for (_, type_), instance_id in zip(step.events, named, strict=True)
                ]
                receipts = await hub.store.append(events)
                for event, appended, instance_id in zip(events, receipts, named, strict=True):
                    assert not appended.duplicate
                    expected = model.correlate(appended.offset, instance_id, event.type)
                    assert appended.correlation == expected, (event.type, expected, appended)
                    sent.append(Sent(event, appended.offset, instance_id, expected))
                model.run()
            elif isinstance(step, Resend):
                if not sent:
                    continue
                original = sent[step.which % len(sent)]
                (again,) = await hub.store.append([original.event])
                assert again.duplicate and again.offset == original.offset
                now = model.fate[original.offset]
                assert again.correlation == ("woke" if now == "consumed" else now)
            elif isinstance(step, Advance):
                clock.advance(step.seconds)
                model.advance(step.seconds)
            elif isinstance(step, Stale):
                if started:
                    await _stale(hub, started[step.which % len(started)], model, step.back)
            else:
                if not started:
                    continue
                instance_id = started[step.which % len(started)]
                if model.cancel(instance_id):
                    await hub.processes.cancel(instance_id)
                else:
                    with pytest.raises(errors.Conflict):
                        await hub.processes.cancel(instance_id)
            await _quiet(hub, clock)
        await _check(hub, model, started, sent)
    finally:
        await hub.stop()


async def _stale(hub: Hub, instance_id: str, model: Model, back: int) -> None:
    store = hub.store
    at = max(model.instances[instance_id].step - back, 0)
    before, head = await store.get_instance(instance_id), await store.head()
    line = Entry("2027-01-01T00:00:00Z", None, "called", detail="a straggler")
    assert await store.open_wait(instance_id, at, WAITS[min(at, 1)], TIMEOUT) is None
    assert not (await store.advance_instance(instance_id, at, {"stale": True}, [line])).moved
    assert (
        await store.finish_instance(instance_id, (State.RUNNING,), State.COMPLETED, step=at)
    ) is None
    assert await store.get_instance(instance_id) == before, "a refused write changed it"
    assert await store.head() == head, "a refused write appended a lifecycle event"


async def _started(hub: Hub, n: int) -> bool:
    return len(await hub.store.list_instances("orders", None, 0, 1000)) >= n


async def _check(hub: Hub, model: Model, started: list[str], sent: list[Sent]) -> None:
    store = hub.store
    unrouted = [u["offset"] for u in await store.list_unrouted(0, 10_000)]
    assert len(unrouted) == len(set(unrouted)), "an event unrouted twice"
    resumed: dict[int, list[tuple[str, str | None]]] = {}
    buffered: dict[int, list[str]] = {}
    for instance_id in started:
        found = await store.get_instance(instance_id)
        assert found is not None
        assert found.state is model.instances[instance_id].state, instance_id
        for line in found.history:
            if line.what == "resumed" and line.offset is not None:
                resumed.setdefault(line.offset, []).append((instance_id, line.detail))
            if line.what == "buffered" and line.offset is not None:
                buffered.setdefault(line.offset, []).append(instance_id)
    for s in sent:
        ends = [
            s.offset in resumed,
            s.offset in unrouted,
            s.offset in buffered and s.offset not in resumed and s.offset not in unrouted,
        ]
        assert sum(ends) == 1, (s, ends)
        if s.offset in resumed:
            assert resumed[s.offset] == [(s.instance_id, resumed[s.offset][0][1])], (
                "consumed once, by the instance it names"
            )
        if s.offset in buffered:
            assert buffered[s.offset] == [s.instance_id]
        if s.receipt == "woke":  # true when given: resumed then, not from the buffer later
            assert resumed.get(s.offset) == [(s.instance_id, None)], s
        elif s.receipt == "buffered":
            assert s.offset in buffered, s
        else:
            assert s.offset in unrouted and s.offset not in buffered, s
        final = model.fate[s.offset]
        actual = (
            "unrouted"
            if s.offset in unrouted
            else "buffered"
            if s.offset not in resumed
            else "woke"
            if resumed[s.offset][0][1] is None
            else "consumed"
        )
        assert actual == final, (s, actual, final)
    named = {s.offset for s in sent}
    assert set(unrouted) <= named and set(resumed) <= named, "a fate for an event never sent"


def _check_plan(plan: list[Step]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(_run(Path(folder), plan))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_every_named_event_has_exactly_one_fate(plan: list[Step]) -> None:
    _check_plan(plan)


@pytest.mark.long
@pytest.mark.timeout(900)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_every_named_event_has_exactly_one_fate_long(plan: list[Step]) -> None:
    _check_plan(plan)
