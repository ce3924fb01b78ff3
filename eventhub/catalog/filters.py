"""Trigger filters in the CloudEvents Subscriptions API dialects (subscriptions-api.md
3.2.4.1): ``exact``, ``prefix``, ``suffix``, ``all``, ``any``, ``not``, and ``sql`` (CESQL,
``cesql.py``: true only when the expression is TRUE without errors). A list of filters is
ANDed; an empty list matches every event. Comparisons are case sensitive; an attribute the
event lacks never matches; non-string attributes compare by their canonical string form.

Filters compile once into plain closures. ``TriggerIndex`` keeps thousands of triggers cheap:
triggers that can only match certain ``type`` values are looked up by the event's type, and
only the rest are evaluated, once per distinct combination of the attribute values they read
(``reads``): events of one producer mostly share them, so a batch evaluates them once or twice.

``all``, ``any`` and ``not`` nest at most ``MAX_DEPTH`` levels, checked on the way down
before each recursion: deeper is a 400, never a RecursionError, and a stored draft stays far
below orjson's nesting limit (254; two JSON levels per filter level at most).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from eventhub import errors
from eventhub.catalog import cesql

Filter = Callable[[Mapping[str, Any]], bool]

DIALECTS = ("exact", "prefix", "suffix", "all", "any", "not", "sql")
MAX_DEPTH = 64


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _pairs(dialect: str, body: Any) -> list[tuple[str, str]]:
    if not isinstance(body, dict) or not body:
        raise errors.InvalidRequest(f"{dialect!r} takes a non-empty object of attribute: value")
    for name, value in body.items():
        if not name or not isinstance(value, str) or not value:
            raise errors.InvalidRequest(
                f"{dialect!r}: attribute names and values must be non-empty strings"
            )
    return list(body.items())


def _compare(pairs: list[tuple[str, str]], test: Callable[[str, str], bool]) -> Filter:
    def match(attributes: Mapping[str, Any]) -> bool:
        for name, wanted in pairs:
            value = _text(attributes.get(name))
            if value is None or not test(value, wanted):
                return False
        return True

    return match


def compile_one(expression: Any, depth: int = 1) -> Filter:
    """One filter expression; ``depth`` is its nesting level (a top-level filter is 1)."""
    if depth > MAX_DEPTH:
        raise errors.InvalidRequest(f"filters nest deeper than {MAX_DEPTH} levels")
    if not isinstance(expression, dict) or len(expression) != 1:
        raise errors.InvalidRequest("a filter is an object with exactly one dialect key")
    ((dialect, body),) = expression.items()
    if dialect == "exact":
        pairs = _pairs(dialect, body)
        if len(pairs) == 1:
            ((name, wanted),) = pairs
            return lambda a: _text(a.get(name)) == wanted
        return _compare(pairs, str.__eq__)
    if dialect == "prefix":
        return _compare(_pairs(dialect, body), str.startswith)
    if dialect == "suffix":
        return _compare(_pairs(dialect, body), str.endswith)
    if dialect in ("all", "any"):
        if not isinstance(body, list) or not body:
            raise errors.InvalidRequest(f"{dialect!r} takes a non-empty list of filters")
        parts = [compile_one(item, depth + 1) for item in body]
        if dialect == "all":
            return lambda a: all(p(a) for p in parts)
        return lambda a: any(p(a) for p in parts)
    if dialect == "not":
        inner = compile_one(body, depth + 1)
        return lambda a: not inner(a)
    if dialect == "sql":
        if not isinstance(body, str):
            raise errors.InvalidRequest("'sql' takes a CESQL expression string")
        return cesql.compile_expression(body).matches
    raise errors.InvalidRequest(
        f"unknown filter dialect {dialect!r}; supported: {', '.join(DIALECTS)}"
    )


def compile_filters(expressions: Sequence[Any]) -> Filter:
    """A list of filter expressions, ANDed; the empty list matches everything."""
    if not isinstance(expressions, list):
        raise errors.InvalidRequest("filters must be a list of filter expressions")
    parts = [compile_one(e) for e in expressions]
    if not parts:
        return lambda a: True
    if len(parts) == 1:
        return parts[0]
    return lambda a: all(p(a) for p in parts)


def exact_types(expressions: Sequence[Any]) -> frozenset[str] | None:
    """The only ``type`` values a (valid) filter list can match, or None if it is not limited.

    ANDed expressions: limited if any one is. ``exact`` with a type: that type. ``any``:
    the union, if every branch is limited. ``all``: like a list."""
    found: frozenset[str] | None = None
    for expression in expressions:
        types = _types_of(expression)
        if types is not None:
            found = types if found is None else found & types
    return found


def reads(expressions: Sequence[Any]) -> frozenset[str] | None:
    """The attribute names a (valid) filter list looks at, or None when that is not known
    (``sql``: a CESQL expression is opaque here). Its result depends on nothing else."""
    names: set[str] = set()
    for expression in expressions:
        ((dialect, body),) = expression.items()
        if dialect in ("exact", "prefix", "suffix"):
            names.update(body)
        elif dialect in ("all", "any"):
            found = reads(body)
            if found is None:
                return None
            names |= found
        elif dialect == "not":
            found = reads([body])
            if found is None:
                return None
            names |= found
        else:
            return None
    return frozenset(names)


def _types_of(expression: Any) -> frozenset[str] | None:
    ((dialect, body),) = expression.items()
    if dialect == "exact" and isinstance(body.get("type"), str):
        return frozenset({body["type"]})
    if dialect == "all":
        return exact_types(body)
    if dialect == "any":
        branches = [_types_of(item) for item in body]
        if all(b is not None for b in branches):
            return frozenset().union(*(b for b in branches if b is not None))
    return None


_SCAN_CACHE_SIZE = 4096  # distinct value combinations remembered; then it starts over


class TriggerIndex:
    """Which triggers an event fires. Triggers limited to exact types sit in a dict by type;
    the others (the scan) are evaluated for an event only when no earlier event had the same
    values, with the same types, of every attribute a scanned trigger reads: the answer is
    remembered by those values (each built-in ``eventhub`` model has two scanned triggers,
    reading ``source`` and ``type``). With a ``sql`` trigger in the scan nothing is
    remembered."""

    def __init__(self) -> None:
        self._filters: dict[int, Filter] = {}
        self._by_type: dict[str, set[int]] = defaultdict(set)
        self._types_of: dict[int, frozenset[str]] = {}
        self._scan: set[int] = set()
        self._reads: dict[int, frozenset[str] | None] = {}
        # The attribute names the scan reads, in a fixed order (None: not known), and the
        # scan's matches by those attributes' values; both reset whenever the scan changes.
        self._scan_names: tuple[str, ...] | None = ()
        self._scan_cache: dict[tuple[Any, ...], list[int]] = {}

    def __len__(self) -> int:
        return len(self._filters)

    def add(self, key: int, expressions: Sequence[Any]) -> None:
        self.remove(key)
        self._filters[key] = compile_filters(expressions)
        types = exact_types(expressions)
        if types is None:
            self._scan.add(key)
            self._reads[key] = reads(expressions)
            self._scan_changed()
        else:
            self._types_of[key] = types
            for t in types:
                self._by_type[t].add(key)

    def remove(self, key: int) -> None:
        if self._filters.pop(key, None) is None:
            return
        if key in self._scan:
            self._scan.discard(key)
            del self._reads[key]
            self._scan_changed()
        for t in self._types_of.pop(key, ()):
            self._by_type[t].discard(key)
            if not self._by_type[t]:
                del self._by_type[t]

    def _scan_changed(self) -> None:
        self._scan_cache = {}
        names: set[str] = set()
        for found in self._reads.values():
            if found is None:
                self._scan_names = None
                return
            names |= found
        self._scan_names = tuple(sorted(names))

    def match(self, attributes: Mapping[str, Any]) -> list[int]:
        """The triggers ``attributes`` fire. The list may be one the index remembers: read
        it, do not change it."""
        keys = self._by_type.get(_text(attributes.get("type")) or "", ())
        filters = self._filters
        typed = [k for k in keys if filters[k](attributes)]
        return typed + self._match_scan(attributes) if typed else self._match_scan(attributes)

    def _match_scan(self, attributes: Mapping[str, Any]) -> list[int]:
        """The scanned triggers ``attributes`` fire; the caller must not change the list."""
        names = self._scan_names
        if names is None:
            return [k for k in self._scan if self._filters[k](attributes)]
        values = tuple(map(attributes.get, names))
        # The types too: 1 and True are equal keys, but "1" and "true" to a filter.
        key = (*values, *map(type, values))
        try:
            found = self._scan_cache.get(key)
        except TypeError:  # a value that cannot be a key: evaluate
            return [k for k in self._scan if self._filters[k](attributes)]
        if found is None:
            found = [k for k in self._scan if self._filters[k](attributes)]
            if len(self._scan_cache) >= _SCAN_CACHE_SIZE:
                self._scan_cache.clear()
            self._scan_cache[key] = found
        return found
