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
    {"type": st.sampled_from([*TYPES, "d"]), "source": st.sampled_from(["s1", "s2", "s3"])}
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
