"""Process instances on one PostgreSQL shared by several processes: what the store contract
(``tests/contract/store/test_instances.py``, both backends) cannot show with one store. Two
stores race to start the same page and to finish the same instances: row locks let exactly
one win each."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from eventhub.log.base import Hooks
from eventhub.log.postgres import PostgresStore
from eventhub.processes.definitions import Stored
from eventhub.processes.instances import State, Then
from tests.conftest import ManualClock
from tests.contract.store.conftest import VAULT
from tests.contract.store.samples import event
from tests.contract.store.test_instances import DEFINITION, T0, instance, names, naming


async def test_a_wait_is_taken_once_when_two_processes_race(pg_dsn: str) -> None:
    """Two processes starting one page, then finishing each instance, at once: exactly one
    wins each (row locks)."""
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


async def heard(check: Callable[[], bool]) -> None:
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
        await one.append([naming("p1", "i1", "paid"), naming("p2", "i2", "paid")])
        await heard(lambda: theirs.ids[1:] == [{"i1"}] and theirs.dues[1:] == [T0 + 30.0])
        await one.delete_definition("order")
        await heard(lambda: theirs.definitions == ["order", "order"])
        assert (mine.ids, mine.dues, mine.definitions) == ([], [], [])
    finally:
        await one.close()
        await two.close()
