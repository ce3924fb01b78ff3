"""Process instances on one PostgreSQL shared by several processes: what the store contract
(``tests/contract/store/test_instances.py``, both backends) cannot show with one store. Two
stores race to start the same page and to finish the same instances: row locks let exactly
one win each."""

from __future__ import annotations

import asyncio

from eventhub.log.base import Hooks
from eventhub.log.postgres import PostgresStore
from eventhub.processes.definitions import Stored
from eventhub.processes.instances import State
from tests.conftest import ManualClock
from tests.contract.store.conftest import VAULT
from tests.contract.store.samples import event
from tests.contract.store.test_instances import DEFINITION, T0, instance, names


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
