"""Traces (SPEC §6.1): the events that carry the same ``traceid`` extension, as Camunda
Optimize correlates them into one process instance (seed 004).

The log keeps the membership as events are appended (``log/migrations/0005_traces.sql``): one
row per ``(source, id)``, so a new revision replaces the old one in its trace, or moves it
to another trace, or takes it out when it no longer has a ``traceid``. This module holds the
pure parts: which trace an event joins, how its time sorts, and the variables of a trace.

Definitions the API and the store share:

- An event's trace time is its ``time`` attribute, or, when it has none, the time the hub
  received it. Members are ordered by that instant (in UTC), then by log offset.
- A trace's *activity* is the highest log offset among its members' current revisions. Each
  revision is in one trace at most, so activities never tie: the list is ordered by activity,
  descending ("most recently active first"), and ``after=N`` continues with the traces whose
  activity is below ``N`` (``0``: from the most recent).
- Variables are the flat properties (string, number, boolean, null) of each member's JSON
  object ``data``, later members (in trace order) overriding earlier ones. Nested objects and
  arrays are not variables and do not hide an earlier flat value of the same name; data that
  is not a JSON object (text, binary, an array, a number) contributes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from eventhub.codec import jsontext
from eventhub.events import DataKind

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:[Zz]|([+-])(\d{2}):(\d{2}))\Z"
)


@dataclass(frozen=True, slots=True)
class TraceSummary:
    """One entry of ``GET /api/traces``; ``activity`` is the paging key."""

    trace_id: str
    events: int
    first_time: str
    last_time: str
    activity: int


@dataclass(frozen=True, slots=True)
class TraceMember:
    """The current revision of one event of a trace, with its data for the variables."""

    offset: int
    source: str
    id: str
    type: str
    time: str
    group: str | None
    revision: int
    data: bytes | None
    kind: DataKind


def trace_of(attributes: Mapping[str, Any]) -> str | None:
    """The trace an event belongs to: a non-empty string ``traceid``, else none."""
    trace = attributes.get("traceid")
    return trace if isinstance(trace, str) and trace else None


def time_key(stamp: str) -> str:
    """A key that sorts RFC 3339 timestamps by the instant they name: UTC, fixed width,
    nanoseconds (``2020-01-01T11:00:00+01:00`` and ``2020-01-01T10:00:00.000Z`` share one).
    A leap second sorts at the end of its minute's 59th second; a stamp this cannot read
    (the ingest validates them, so none should come) sorts as its own text."""
    m = _RFC3339.match(stamp)
    if m is None:
        return stamp
    fraction = (m.group(7) or "")[:9].ljust(9, "0")
    second = m.group(6)
    if second == "60":
        second, fraction = "59", "999999999"
    if m.group(8) is None or m.group(9) == m.group(10) == "00":
        # Already UTC (nearly every producer): the digits as they are, no datetime (4 us).
        return (
            f"{m.group(1)}-{m.group(2)}-{m.group(3)}T{m.group(4)}:{m.group(5)}:{second}.{fraction}Z"
        )
    year, month, day, hour, minute = map(int, m.group(1, 2, 3, 4, 5))
    try:
        moment = datetime(year, month, day, hour, minute, int(second), tzinfo=UTC)
        shift = timedelta(hours=int(m.group(9)), minutes=int(m.group(10)))
        moment = moment - shift if m.group(8) == "+" else moment + shift
    except (ValueError, OverflowError):
        return stamp
    return f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}.{fraction}Z"


def flat_properties(kind: DataKind, data: bytes | None) -> dict[str, Any]:
    """The variables one event's data gives: the scalar members of a JSON object, integers
    exact (``codec/jsontext.py``)."""
    if kind is not DataKind.JSON or data is None:
        return {}
    value = jsontext.exact(data)
    if not isinstance(value, dict):
        return {}
    return {name: member for name, member in value.items() if not isinstance(member, (dict, list))}


def variables(members: Iterable[TraceMember]) -> dict[str, Any]:
    """The variables of a trace whose ``members`` come in trace order."""
    out: dict[str, Any] = {}
    for member in members:
        out.update(flat_properties(member.kind, member.data))
    return out
