"""Traces: the store's incremental membership (written in the append transaction) against a
brute-force recomputation from the log (Hypothesis)."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventhub import traces
from eventhub.codec import jsontext
from eventhub.traces import TraceSummary
from tests.conftest import ManualClock
from tests.contract.store.conftest import Backend
from tests.contract.store.samples import DATA, STAMPS, traced

event_strategy = st.tuples(
    st.sampled_from(["s1", "s2"]),
    st.sampled_from(["a", "b", "c", "d"]),
    st.sampled_from([None, "t1", "t2", "t3", ""]),
    st.sampled_from(STAMPS),
    st.sampled_from(range(len(DATA))),
)


async def _expected_and_actual(
    backend: Backend, batches: list[list[tuple[Any, ...]]]
) -> tuple[Any, Any]:
    clock = ManualClock()
    store = backend.store(backend.database(), clock)
    await store.open()
    try:
        for batch in batches:
            # Several appends at once: they share one flush, as concurrent requests do.
            await asyncio.gather(
                *(store.append([traced(*e) for e in part]) for part in _split(batch))
            )
            clock.advance(1)
        log = await store.read_after(0, 10_000)
        actual_list = await store.list_traces(0, 1000)
        actual = {t.trace_id: (t, await store.get_trace(t.trace_id)) for t in actual_list}
        paged: list[TraceSummary] = []
        after = 0
        while page := await store.list_traces(after, 2):
            paged += page
            after = page[-1].activity
    finally:
        await store.close()
    assert paged == actual_list, "paging by activity visits every trace once, in order"
    latest = {}
    for event in log:  # in offset order: the last revision of each (source, id) wins
        latest[(event.source, event.id)] = event
    members: dict[str, list[Any]] = {}
    for event in latest.values():
        trace = event.attributes.get("traceid")
        if isinstance(trace, str) and trace:
            time = event.attributes.get("time", event.received_at)
            members.setdefault(trace, []).append((traces.time_key(time), event.offset, event))
    expected = {}
    for trace, found in members.items():
        found.sort(key=lambda m: (m[0], m[1]))
        summary = TraceSummary(
            trace,
            len(found),
            found[0][2].attributes.get("time", found[0][2].received_at),
            found[-1][2].attributes.get("time", found[-1][2].received_at),
            max(m[1] for m in found),
        )
        expected[trace] = (summary, [(m[1], m[2].source, m[2].id, m[2].revision) for m in found])
    got = {
        trace: (summary, [(m.offset, m.source, m.id, m.revision) for m in ms])
        for trace, (summary, ms) in actual.items()
    }
    order = [t.trace_id for t in actual_list]
    assert order == sorted(expected, key=lambda t: -expected[t][0].activity)
    expected_vars = {
        trace: _brute_variables([m[2].data for m in found]) for trace, found in members.items()
    }
    got_vars = {trace: traces.variables(ms) for trace, (_, ms) in actual.items()}
    return (expected, expected_vars), (got, got_vars)


def _brute_variables(datas: list[bytes | None]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for data in datas:
        value = None if data is None else jsontext.exact(data)
        if isinstance(value, dict):
            for name, member in value.items():
                if not isinstance(member, (dict, list)):
                    out[name] = member
    return out


def _split(batch: list[tuple[Any, ...]]) -> list[list[tuple[Any, ...]]]:
    return [batch[i : i + 3] for i in range(0, len(batch), 3)] or [[]]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(event_strategy, min_size=1, max_size=7), min_size=1, max_size=6))
def test_store_traces_equal_a_recomputation_from_the_log(
    backend: Backend, batches: list[list[tuple[Any, ...]]]
) -> None:
    try:
        expected, actual = asyncio.run(_expected_and_actual(backend, batches))
    finally:
        backend.forget()  # each example's database goes with it, not at the test's end
    assert actual == expected
