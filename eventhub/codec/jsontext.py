"""JSON read exactly, and fast when it can be.

orjson is the hot path's parser, but it loses two things a producer sent: an integer beyond 64
bits becomes a float (``2**70`` would be stored as ``1.1805916207174113e+21``), and of a member
name given twice in one object only the last survives. Both are rare, so ``loads`` parses with
orjson, then asks one cheap question of the result, "could anything have been lost?", and
parses again with the standard library (exact integers, every repeated name recorded) only
when the answer is yes. orjson's compact re-serialisation of what it parsed answers it:

- equal to the body (most producers send compact JSON): nothing was lost. A dropped member or
  a big integer (now written as a float) would make them differ. One memcmp.
- otherwise, a repeated member was dropped exactly when the body holds more ``:`` than the
  re-serialisation (each member has one; strings keep theirs as they are), unless a colon was
  escaped (``\\u003a``), which sends the body to the exact parser too; and an integer orjson
  could not hold became a float of magnitude at least 2**63, which orjson writes with ``e+``
  (a string containing ``e+`` costs only the slower parse).

Measured (issue 8; 100-event, 100 KB batch of bench/payloads.py): parsing, validating and
authorising it went from 1.10 to 1.22 ms with a compact body (one re-serialisation and a
memcmp) and to 1.32 ms with a spaced one (the colon counts too), against about 5 ms of hub CPU
per such request; the exact parse itself costs about 0.8 ms, paid only when needed.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from eventhub import errors


class Members(dict[str, Any]):
    """A JSON object in which some member names were given more than once (the last value
    kept, as everywhere); ``duplicates`` names them in order."""

    duplicates: tuple[str, ...] = ()


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    seen: set[str] = set()
    repeated: list[str] = []
    for name, _ in pairs:
        if name in seen and name not in repeated:
            repeated.append(name)
        seen.add(name)
    out = Members(obj)
    out.duplicates = tuple(repeated)
    return out


_EXACT = json.JSONDecoder(object_pairs_hook=_pairs)


def loads(body: bytes) -> Any:
    """``body`` parsed, with integers exact and repeated member names kept in ``duplicates``;
    400 ``invalid_json`` when it is not JSON (orjson's rules: UTF-8, no NaN, no lone
    surrogates)."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise errors.InvalidJson(f"request body is not valid JSON: {exc}") from None
    compact = orjson.dumps(value)
    if compact == body:
        return value
    if body.count(b":") != compact.count(b":") or _big_number(compact) or _escaped_colon(body):
        return exact(body)
    return value


def canonical_of(data: bytes) -> bytes:
    """``canonical`` of JSON ``data`` already known to be valid, integers exact. Repeated
    names inside data are the producer's business and are not looked for."""
    value = orjson.loads(data)
    out = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return canonical(exact(data)) if _big_number(out) else out


# Each test first looks for one byte (memchr), which is rare, before the pair, which CPython
# searches slowly when its last byte is common.
def _big_number(compact: bytes) -> bool:
    return b"+" in compact and b"e+" in compact


def _escaped_colon(body: bytes) -> bool:
    return b"\\" in body and b"\\u003" in body


def exact(body: bytes) -> Any:
    """The standard library's parse of JSON orjson has accepted: exact integers, and
    ``Members`` for objects with repeated names."""
    return _EXACT.decode(body.decode("utf-8"))


def duplicates(obj: Any) -> tuple[str, ...]:
    """The member names ``obj`` was given more than once, if it is an object from ``loads``."""
    return obj.duplicates if type(obj) is Members else ()


def dumps(value: Any) -> bytes:
    """Compact JSON; integers beyond 64 bits (orjson refuses them) through the standard
    library, digit for digit."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def canonical(value: Any) -> bytes:
    """JSON data compared by value, not by spacing or key order."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        return text.encode("utf-8")
