"""Traces: the pure rules (trace time, variables), and SQLite's upgrade to schema 5. The
store's membership against a brute-force recomputation is in the store contract
(tests/contract/store/test_traces.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from eventhub import traces
from eventhub.events import DataKind
from eventhub.log.sqlite import SqliteStore
from eventhub.traces import TraceMember
from eventhub.vault import Vault
from tests.conftest import ManualClock
from tests.contract.store.samples import STAMPS, traced


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


async def test_an_upgrade_traces_the_events_already_in_the_log(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    store = SqliteStore(path, ManualClock(), vault=Vault(b"k" * 32))
    await store.open()
    await store.append([traced("s1", "a", "t", STAMPS[1], 1)])
    await store.append([traced("s1", "a", "t", STAMPS[3], 3), traced("s1", "b", "t", None, 5)])
    await store.append([traced("s2", "c", "u", STAMPS[4], 0)])
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
