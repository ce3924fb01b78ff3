"""Trigger filters: every dialect, validation, and the type index against brute force."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventhub import errors
from eventhub.catalog import filters

EVENT = {
    "specversion": "1.0",
    "id": "1",
    "source": "https://github.com/cloudevents/spec",
    "type": "com.github.push",
    "subject": "main",
    "count": 7,
    "flag": True,
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ({"exact": {"type": "com.github.push"}}, True),
        ({"exact": {"type": "com.github.PUSH"}}, False),  # case sensitive
        ({"exact": {"type": "com.github.push", "subject": "main"}}, True),
        ({"exact": {"type": "com.github.push", "subject": "dev"}}, False),
        ({"exact": {"missing": "x"}}, False),
        ({"exact": {"count": "7"}}, True),  # canonical string of an integer
        ({"exact": {"flag": "true"}}, True),
        ({"prefix": {"type": "com.github."}}, True),
        ({"prefix": {"type": "com.gitlab."}}, False),
        ({"prefix": {"missing": "x"}}, False),
        ({"suffix": {"type": ".push"}}, True),
        ({"suffix": {"source": "/spec", "type": ".pull"}}, False),
        ({"all": [{"prefix": {"type": "com."}}, {"exact": {"subject": "main"}}]}, True),
        ({"all": [{"prefix": {"type": "com."}}, {"exact": {"subject": "dev"}}]}, False),
        ({"any": [{"exact": {"type": "x"}}, {"exact": {"subject": "main"}}]}, True),
        ({"any": [{"exact": {"type": "x"}}, {"exact": {"subject": "dev"}}]}, False),
        ({"not": {"exact": {"type": "com.github.push"}}}, False),
        ({"not": {"exact": {"missing": "x"}}}, True),
        ({"not": {"any": [{"exact": {"type": "x"}}, {"not": {"prefix": {"id": "1"}}}]}}, True),
        ({"sql": "type LIKE 'com.github.%' AND count > 5"}, True),
        ({"sql": "type = 'com.github.push' AND missing = 'x'"}, False),  # an error: no match
        ({"sql": "count / 0 = 0"}, False),  # a math error: no match
        ({"sql": "flag AND subject IN ('main', 'dev')"}, True),
        ({"all": [{"sql": "EXISTS subject"}, {"prefix": {"type": "com."}}]}, True),
    ],
)
def test_dialects(expression: dict[str, Any], expected: bool) -> None:
    assert filters.compile_filters([expression])(EVENT) is expected


def test_a_list_is_anded_and_empty_matches_everything() -> None:
    assert filters.compile_filters([])(EVENT)
    both = [{"prefix": {"type": "com."}}, {"suffix": {"type": ".push"}}]
    assert filters.compile_filters(both)(EVENT)
    assert not filters.compile_filters([*both, {"exact": {"subject": "dev"}}])(EVENT)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ({"regex": {"type": ".*"}}, "unknown filter dialect 'regex'"),
        ({"sql": "type = "}, "CESQL"),
        ({"sql": 5}, "CESQL expression string"),
        ({"exact": {}}, "non-empty"),
        ({"exact": {"type": ""}}, "non-empty strings"),
        ({"exact": {"": "x"}}, "non-empty strings"),
        ({"exact": {"type": 1}}, "non-empty strings"),
        ({"prefix": "com."}, "non-empty object"),
        ({"all": []}, "non-empty list"),
        ({"any": {"exact": {"type": "x"}}}, "non-empty list"),
        ({"exact": {"type": "x"}, "prefix": {"type": "y"}}, "exactly one dialect"),
        ("exact", "exactly one dialect"),
        ({"not": [{"exact": {"type": "x"}}]}, "exactly one dialect"),
    ],
)
def test_invalid_filters_are_refused_clearly(expression: Any, message: str) -> None:
    with pytest.raises(errors.InvalidRequest, match=message):
        filters.compile_filters([expression])


def test_filters_must_be_a_list() -> None:
    with pytest.raises(errors.InvalidRequest):
        filters.compile_filters({"exact": {"type": "x"}})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("expressions", "types"),
    [
        ([{"exact": {"type": "a"}}], {"a"}),
        ([{"exact": {"source": "s"}}], None),
        ([{"exact": {"source": "s"}}, {"exact": {"type": "a"}}], {"a"}),
        ([{"any": [{"exact": {"type": "a"}}, {"exact": {"type": "b"}}]}], {"a", "b"}),
        ([{"any": [{"exact": {"type": "a"}}, {"prefix": {"type": "b"}}]}], None),
        ([{"all": [{"exact": {"type": "a"}}, {"prefix": {"source": "s"}}]}], {"a"}),
        ([{"not": {"exact": {"type": "a"}}}], None),
        ([], None),
    ],
)
def test_exact_types(expressions: list[dict[str, Any]], types: set[str] | None) -> None:
    found = filters.exact_types(expressions)
    assert (None if found is None else set(found)) == types


TYPES = ["a", "b", "c"]
leaf = st.one_of(
    st.builds(lambda t: {"exact": {"type": t}}, st.sampled_from(TYPES)),
    st.builds(lambda s: {"exact": {"source": s}}, st.sampled_from(["s1", "s2"])),
    st.builds(lambda p: {"prefix": {"type": p}}, st.sampled_from(["a", "b", "x"])),
    # An extension that arrives as a string, an integer or a boolean: 1 and True are equal
    # as Python values but not to a filter ("1", "true"), so the index must not mix them up.
    st.builds(lambda n: {"exact": {"n": n}}, st.sampled_from(["1", "true"])),
    st.builds(lambda q: {"sql": q}, st.sampled_from(["type = 'a'", "n = 1", "EXISTS n"])),
)
expression = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.builds(lambda xs: {"all": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"any": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, inner),
    ),
    max_leaves=6,
)
events = st.fixed_dictionaries(
    {"type": st.sampled_from([*TYPES, "d"]), "source": st.sampled_from(["s1", "s2", "s3"])},
    optional={"n": st.sampled_from([1, True, "1", "true", 0, False])},
)


@settings(max_examples=150, deadline=None)
@given(
    triggers=st.lists(st.lists(expression, max_size=3), min_size=1, max_size=12),
    samples=st.lists(events, min_size=1, max_size=8),
)
def test_the_index_agrees_with_evaluating_every_trigger(
    triggers: list[list[dict[str, Any]]], samples: list[dict[str, str]]
) -> None:
    index = filters.TriggerIndex()
    for key, expressions in enumerate(triggers):
        index.add(key, expressions)
    index.remove(0)
    compiled = {k: filters.compile_filters(e) for k, e in enumerate(triggers) if k != 0}
    for event in samples:
        assert sorted(index.match(event)) == sorted(k for k, f in compiled.items() if f(event))
    # Matches are remembered by the values the scanned triggers read: a trigger added or
    # removed afterwards must count for the same events at once.
    last = len(triggers)
    index.add(last, triggers[-1])
    compiled[last] = filters.compile_filters(triggers[-1])
    index.remove(1)
    compiled.pop(1, None)
    for event in samples + samples:
        assert sorted(index.match(event)) == sorted(k for k, f in compiled.items() if f(event))


def test_the_index_tells_equal_values_of_different_types_apart() -> None:
    # 1 == True in Python, but a filter compares "1" and "true": the scan's remembered
    # matches must be keyed by type as well as by value.
    index = filters.TriggerIndex()
    index.add(1, [{"exact": {"n": "1"}}])
    index.add(2, [{"exact": {"n": "true"}}])
    for _ in range(2):
        assert index.match({"type": "t", "n": 1}) == [1]
        assert index.match({"type": "t", "n": True}) == [2]
        assert index.match({"type": "t", "n": "1"}) == [1]
        assert index.match({"type": "t"}) == []


def test_the_index_forgets_remembered_matches_when_its_triggers_change() -> None:
    index = filters.TriggerIndex()
    index.add(1, [{"prefix": {"source": "/a"}}])
    event = {"type": "t", "source": "/a/b", "x": "y"}
    assert index.match(event) == [1]
    index.add(2, [{"exact": {"x": "y"}}])  # reads an attribute the scan did not read before
    assert sorted(index.match(event)) == [1, 2]
    index.remove(1)
    assert index.match(event) == [2]
    index.add(3, [{"sql": "x = 'y'"}])  # opaque: nothing remembered while it is in the scan
    assert sorted(index.match(event)) == [2, 3]
    index.remove(3)
    assert index.match(event) == [2]
