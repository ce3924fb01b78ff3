"""Context attribute rules of CloudEvents 1.0.2 (spec.md sections 2-3), as pure functions.

``check`` returns the attributes normalised (``null`` means absent) and the problems found; it
never raises, so a batch can report every bad event at once.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

from eventhub.errors import Problem

REQUIRED = ("specversion", "id", "source", "type")
_STRING_OPTIONAL = ("datacontenttype", "dataschema", "subject")
RESERVED = frozenset({"data", "data_base64"})
_STRING_ATTRIBUTES = frozenset(REQUIRED + _STRING_OPTIONAL)

_NAME = re.compile(r"[a-z0-9]+\Z")
# spec.md §3.1.1: control characters are not allowed in any String.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))\Z"
)
# A subset of _RFC3339 whose every match is valid, so ``valid_time`` needs no arithmetic for
# nearly every timestamp: the ranges are in the pattern, and days 01-28 exist in every month.
# The 29th-31st, a leap second, and anything else go through the full check.
_RFC3339_QUICK = re.compile(
    r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])[Tt](?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d"
    r"(?:\.\d+)?(?:[Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)\Z"
)
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@functools.lru_cache(maxsize=4096)
def valid_name(name: str) -> bool:
    # Cached: the same few extension names arrive with every event of a producer.
    return _NAME.match(name) is not None


def valid_time(value: str) -> bool:
    """RFC 3339 date-time, with the calendar and clock ranges checked."""
    return _RFC3339_QUICK.match(value) is not None or _valid_time_full(value)


def _valid_time_full(value: str) -> bool:
    m = _RFC3339.match(value)
    if m is None:
        return False
    year, month, day, hour, minute, second = map(int, m.group(1, 2, 3, 4, 5, 6))
    if not (1 <= month <= 12 and 1 <= day <= _DAYS[month - 1]):
        return False
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if month == 2 and day == 29 and not leap:
        return False
    if hour > 23 or minute > 59 or second > 60:
        return False
    offset_ok = m.group(9) is None or (int(m.group(9)) <= 23 and int(m.group(10)) <= 59)
    return offset_ok


def _string_problem(name: str, value: Any, index: int | None) -> Problem | None:
    if not isinstance(value, str):
        return Problem("must be a string", name, index)
    if not value:
        return Problem("must not be empty", name, index)
    if _CONTROL.search(value):
        return Problem("must not contain control characters", name, index)
    return None


def check(
    attributes: Mapping[str, Any], index: int | None = None
) -> tuple[dict[str, Any], list[Problem]]:
    """Validate context attributes; return them without ``null`` members, and the problems.

    This runs for every ingested event, and nearly every event is valid: ``_accept`` decides
    that in one pass, and only an event it refuses goes through ``_problems``, which names
    each problem in order."""
    accepted = _accept(attributes)
    if accepted is not None:
        return accepted, []
    return _problems(attributes, index)


_Plan = tuple[Callable[[dict[str, Any]], tuple[Any, ...]], bool, tuple[str, ...]]
# Plans by tuple of names. Bounded in entries and in what one entry may hold, so that events
# with many or long made-up names cannot make it grow: those are planned every time.
_PLANS: dict[tuple[str, ...], _Plan | None] = {}
_PLANS_MAX, _PLAN_NAMES_MAX, _PLAN_NAME_CHARS_MAX = 1024, 32, 64


def _plan(names: tuple[str, ...]) -> _Plan | None:
    """What ``_accept`` checks of an event with exactly these attribute names (none null):
    a getter of its spec string attributes (the required four among them), whether it has a
    ``time``, and its extensions' names; None when the names alone make it invalid. Cached:
    a producer sends the same names in the same order event after event."""
    try:
        return _PLANS[names]
    except KeyError:
        pass
    plan = _make_plan(names)
    if len(names) <= _PLAN_NAMES_MAX and max(map(len, names), default=0) <= _PLAN_NAME_CHARS_MAX:
        if len(_PLANS) >= _PLANS_MAX:
            _PLANS.clear()
        _PLANS[names] = plan
    return plan


def _make_plan(names: tuple[str, ...]) -> _Plan | None:
    if not set(REQUIRED) <= set(names):
        return None
    strings = [name for name in names if name in _STRING_ATTRIBUTES]
    others = [name for name in names if name not in _STRING_ATTRIBUTES]
    if not all(_NAME.match(name) for name in others):
        return None
    extensions = tuple(name for name in others if name != "time")
    return operator.itemgetter(*strings), "time" in others, extensions


def accept(attributes: Mapping[str, Any]) -> dict[str, Any] | None:
    """``check``'s attributes when it would find no problem, else None (no problems named)."""
    return _accept(attributes)


def _accept(attributes: Mapping[str, Any]) -> dict[str, Any] | None:
    """The attributes without ``null`` members if ``_problems`` would find none, else None.
    Strings are checked for control characters all at once: joined, they contain one if and
    only if one of them does. The per-name work is ``_plan``'s, once per set of names."""
    if None in attributes.values():
        out = {name: value for name, value in attributes.items() if value is not None}
    else:
        out = dict(attributes)
    plan = _plan(tuple(out))
    if plan is None:
        return None
    strings, has_time, extensions = plan
    texts = strings(out)  # at least the required four: a tuple
    # Every one a non-empty string: join refuses anything else, all() an empty one.
    try:
        joined = "".join(texts)
    except TypeError:
        return None
    if not all(texts) or out["specversion"] != "1.0":
        return None
    if has_time:
        time = out["time"]
        if not isinstance(time, str) or not valid_time(time):
            return None
    if extensions:
        parts = [joined]
        for name in extensions:
            value = out[name]
            if isinstance(value, str):
                parts.append(value)
            elif isinstance(value, bool):
                continue
            elif isinstance(value, int):
                if not _INT_MIN <= value <= _INT_MAX:
                    return None
            else:
                return None
        joined = "".join(parts)
    if _CONTROL.search(joined):
        return None
    return out


def _problems(
    attributes: Mapping[str, Any], index: int | None
) -> tuple[dict[str, Any], list[Problem]]:
    out: dict[str, Any] = {}
    problems: list[Problem] = []
    for name, value in attributes.items():
        if value is None:
            continue
        if name not in _STRING_ATTRIBUTES and not valid_name(name):
            problems.append(
                Problem(
                    "attribute names must be lower-case letters a-z and digits 0-9", name, index
                )
            )
            continue
        out[name] = value
        if name in _STRING_ATTRIBUTES:
            problem = _string_problem(name, value, index)
            if problem is not None:
                problems.append(problem)
        elif name == "time":
            if not isinstance(value, str) or not valid_time(value):
                problems.append(Problem("must be an RFC 3339 timestamp", "time", index))
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int):
            if not _INT_MIN <= value <= _INT_MAX:
                problems.append(Problem("integer outside the 32-bit range", name, index))
        elif isinstance(value, str):
            if _CONTROL.search(value):
                problems.append(Problem("must not contain control characters", name, index))
        else:
            problems.append(
                Problem("extension values must be strings, booleans or integers", name, index)
            )
    for name in REQUIRED:
        if name not in out:
            problems.append(Problem("required attribute is missing", name, index))
    version = out.get("specversion")
    if isinstance(version, str) and version and version != "1.0":
        problems.append(Problem("only specversion 1.0 is supported", "specversion", index))
    return out, problems
