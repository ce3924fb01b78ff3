"""Traces: the pure rules (trace time, variables), and the store's incremental membership
against a brute-force recomputation from the log (Hypothesis)."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventhub import traces
from eventhub.codec import jsontext
from eventhub.events import DataKind, NewEvent, digest_of
from eventhub.log.sqlite import SqliteStore
from eventhub.traces import TraceMember, TraceSummary
from eventhub.vault import Vault
from tests.conftest import ManualClock


def test_time_key_sorts_by_instant() -> None:
    same = ["2020-01-01T10:00:00Z", "2020-01-01T11:00:00+01:00", "2020-01-01t09:30:00.000-00:30"]
    assert len({traces.time_key(s) for s in same}) == 1
    assert traces.time_key("2020-01-01T10:00:00.5Z") > traces.time_key("2020-01-01T10:00:00Z")
    assert traces.time_key("2020-01-01T10:00:00.000000001Z") > traces.time_key(
        "2020-01-01T10:00:00Z"
    )
    assert traces.time_key("2016-12-31T23:59:60Z") < traces.time_key("2017-01-01T00:00:00Z")
    assert traces.time_key("1999-12-31T23:00:00-02:00") == "2000-01-01T01:00:00.000000000Z"


def _member(data: bytes | None, kind: DataKind = DataKind.JSON) -> TraceMember:
    return TraceMember(1, "s", "i", "t", "2020-01-01T00:00:00Z", None, 1, data, kind)


def test_variables_are_flat_properties_later_ones_winning() -> None:
    members = [
        _member(b'{"reviewSuccessful": true, "amount": 10.5, "customerId": "lovelyCustomer1"}'),
        _member(b'{"customer": {"firstName": "John", "lasTName": "Doe"}, "list": [1]}'),
        _member(b'{"amount": 12, "none": null, "big": 1180591620717411303424}'),
        _member(b'"a string"'),
        _member(b"[1, 2]"),
        _member(b'{"x": 1}', DataKind.TEXT),
        _member(b"\x00\x01", DataKind.BINARY),
        _member(None, DataKind.NONE),
    ]
    assert traces.variables(members) == {
        "reviewSuccessful": True,
        "amount": 12,
        "customerId": "lovelyCustomer1",
        "none": None,
        "big": 2**70,
    }


# -- the store against a brute force ---------------------------------------------------------

STAMPS = [
    None,  # no time: the time the hub received it
    "2020-01-01T10:00:00Z",
    "2020-01-01T11:00:00+01:00",  # the same instant as the one before
    "2020-01-01T10:00:00.5Z",
    "2019-12-31T23:00:00Z",
]
DATA = [None, {"x": 1}, {"x": {"nested": 1}}, {"y": True, "x": "two"}, [1, 2], {"z": None}]

event_strategy = st.tuples(
    st.sampled_from(["s1", "s2"]),
    st.sampled_from(["a", "b", "c", "d"]),
    st.sampled_from([None, "t1", "t2", "t3", ""]),
    st.sampled_from(STAMPS),
    st.sampled_from(range(len(DATA))),
)


def new_event(source: str, id_: str, trace: str | None, stamp: str | None, data: int) -> NewEvent:
    attributes: dict[str, Any] = {"specversion": "1.0", "id": id_, "source": source, "type": "t"}
    if trace is not None:
        attributes["traceid"] = trace
    if stamp is not None:
        attributes["time"] = stamp
    value = DATA[data]
    body = None if value is None else orjson.dumps(value)
    kind = DataKind.NONE if body is None else DataKind.JSON
    return NewEvent(attributes, body, kind, digest_of(attributes, body, kind))


async def _expected_and_actual(path: Path, batches: list[list[tuple[Any, ...]]]) -> tuple[Any, Any]:
    clock = ManualClock()
    store = SqliteStore(path, clock, vault=Vault(b"k" * 32))
    await store.open()
    try:
        for batch in batches:
            # Several appends at once: they share one flush, as concurrent requests do.
            await asyncio.gather(
                *(store.append([new_event(*e) for e in part]) for part in _split(batch))
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
    batches: list[list[tuple[Any, ...]]],
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        expected, actual = asyncio.run(_expected_and_actual(Path(folder) / "log.db", batches))
    assert actual == expected


async def test_an_upgrade_traces_the_events_already_in_the_log(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    store = SqliteStore(path, ManualClock(), vault=Vault(b"k" * 32))
    await store.open()
    await store.append([new_event("s1", "a", "t", STAMPS[1], 1)])
    await store.append(
        [new_event("s1", "a", "t", STAMPS[3], 3), new_event("s1", "b", "t", None, 5)]
    )
    await store.append([new_event("s2", "c", "u", STAMPS[4], 0)])
    before = await store.list_traces(0, 10)
    members = await store.get_trace("t")
    await store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TABLE trace_members")  # as schema 4 left it
    conn.execute("DROP TABLE traces")
    for table in ("process_definitions", "process_versions", "instances", "instance_history"):
        conn.execute(f"DROP TABLE {table}")  # schema 6's
    conn.execute("DROP TABLE correlations")
    conn.execute("PRAGMA user_version = 4")
    conn.close()
    store = SqliteStore(path, ManualClock(), vault=Vault(b"k" * 32))
    await store.open()
    try:
        assert await store.list_traces(0, 10) == before
        assert await store.get_trace("t") == members
        assert [(m.id, m.revision) for m in members] == [("a", 2), ("b", 1)]
    finally:
        await store.close()
