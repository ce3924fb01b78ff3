"""Property tests of the parsers: whatever arrives, the outcome is a valid event or a 4xx
EventHubError, never anything else, and an accepted event re-validates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from eventhub import errors
from eventhub.codec import attributes, jsontext, parse
from eventhub.events import NewEvent

header_names = st.one_of(
    st.sampled_from(
        [
            b"ce-specversion",
            b"ce-id",
            b"ce-source",
            b"ce-type",
            b"ce-time",
            b"ce-subject",
            b"ce-datacontenttype",
            b"ce-Ext",
            b"ce-my_ext",
            b"ce-x1",
        ]
    ),
    st.binary(min_size=1, max_size=12).map(lambda b: b"ce-" + b),
    st.sampled_from([b"content-type", b"authorization", b"x-other"]),
)
header_values = st.one_of(
    st.sampled_from(
        [
            b"1.0",
            b"0.3",
            b"",
            b'"quoted \\" value"',
            b"%C0%A0",
            b"%E2%82%AC",
            b"2020-01-01T00:00:00Z",
            b"not a time",
            b"%",
            b"%zz",
        ]
    ),
    st.binary(max_size=20),
)
bodies = st.one_of(st.binary(max_size=64), st.just(b'{"a": 1}'), st.just(b"<x/>"))
content_types = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "application/json",
            "text/plain",
            "application/xml",
            "application/octet-stream",
            "text/json; charset=utf-8",
            "",
        ]
    ),
)


def _assert_client_error(exc: errors.EventHubError) -> None:
    assert 400 <= exc.status < 500
    assert exc.message


def _assert_valid(attrs: dict[str, Any]) -> None:
    _, problems = attributes.check(attrs)
    assert problems == []


@settings(max_examples=300, deadline=None)
@given(
    headers=st.lists(st.tuples(header_names, header_values), max_size=8),
    content_type=content_types,
    body=bodies,
)
def test_binary_mode_never_fails_otherwise(
    headers: list[tuple[bytes, bytes]], content_type: str | None, body: bytes
) -> None:
    base = [(b"ce-specversion", b"1.0"), (b"ce-id", b"1"), (b"ce-source", b"s"), (b"ce-type", b"t")]
    for candidate in (headers, base + headers):
        try:
            event = parse.parse_binary(candidate, content_type, body)
        except errors.EventHubError as exc:
            _assert_client_error(exc)
        else:
            _assert_valid(event.attributes)
            assert event.data == (body or None)


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=False),
        st.text(max_size=10),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
event_objects = st.fixed_dictionaries(
    {},
    optional={
        "specversion": st.sampled_from(["1.0", "0.3", 1]),
        "id": st.one_of(st.text(max_size=5), st.integers(-(2**63), 2**63 - 1)),
        "source": st.text(max_size=5),
        "type": st.text(max_size=5),
        "time": st.sampled_from(["2020-01-01T00:00:00Z", "yesterday", 5]),
        "data": json_values,
        "data_base64": st.sampled_from(["AAEC", "!!", 3]),
        "datacontenttype": st.sampled_from(["application/json", "text/plain", 7]),
        "Bad_Name": st.text(max_size=3),
        "ext": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(items=st.lists(st.one_of(event_objects, json_values), max_size=6))
def test_batches_are_all_valid_or_refused_whole(items: list[Any]) -> None:
    body = orjson.dumps(items)
    try:
        events = parse.parse_batch(body, 100)
    except errors.EventHubError as exc:
        _assert_client_error(exc)
        if isinstance(exc, errors.InvalidEvents):
            assert all(p.index is None or 0 <= p.index < len(items) for p in exc.details)
    else:
        assert len(events) == len(items)
        for event in events:
            _assert_valid(event.attributes)


@settings(max_examples=200, deadline=None)
@given(body=st.one_of(st.binary(max_size=40), json_values.map(orjson.dumps)))
def test_structured_and_uipath_bodies(body: bytes) -> None:
    attempts: tuple[Callable[[], NewEvent], ...] = (
        lambda: parse.parse_structured(body),
        lambda: parse.parse_uipath(body, "orchestrator", "2026-01-01T00:00:00Z"),
    )
    for attempt in attempts:
        try:
            event = attempt()
        except errors.EventHubError as exc:
            _assert_client_error(exc)
        else:
            _assert_valid(event.attributes)


@given(st.text(max_size=12))
def test_same_event_same_digest_whatever_the_mode(text: str) -> None:
    data = orjson.dumps({"k": text, "a": [1, 2]})
    binary = parse.parse_binary(
        [(b"ce-specversion", b"1.0"), (b"ce-id", b"x"), (b"ce-source", b"s"), (b"ce-type", b"t")],
        "application/json",
        data,
    )
    structured = parse.parse_structured(
        orjson.dumps(
            {
                "specversion": "1.0",
                "id": "x",
                "source": "s",
                "type": "t",
                "datacontenttype": "application/json",
                "data": {"a": [1, 2], "k": text},
            }
        )
    )
    assert binary.digest == structured.digest


attribute_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.sampled_from(["1.0", "0.3", "", "2020-01-01T00:00:00Z", "2020-02-30T00:00:00Z", "a\x7fb"]),
    st.text(max_size=6),
    st.lists(st.integers(), max_size=2),
    st.floats(allow_nan=False),
)
attribute_maps = st.dictionaries(
    st.one_of(
        st.sampled_from(
            ["specversion", "id", "source", "type", "time", "subject", "datacontenttype"]
        ),
        st.sampled_from(["dataschema", "ext1", "Ext", "my_ext", "x"]),
        st.text(max_size=4),
    ),
    attribute_values,
    max_size=9,
)


@settings(max_examples=500, deadline=None)
@given(
    base=st.booleans(),
    extra=attribute_maps,
)
def test_the_quick_acceptance_agrees_with_the_full_check(base: bool, extra: dict[str, Any]) -> None:
    """``check`` accepts through ``_accept`` and explains through ``_problems``: both must agree
    on which attributes are valid, and on what a valid set becomes."""
    given_attrs: dict[str, Any] = {}
    if base:
        given_attrs = {"specversion": "1.0", "id": "1", "source": "s", "type": "t"}
    given_attrs.update(extra)
    accepted = attributes._accept(given_attrs)
    normalised, problems = attributes._problems(given_attrs, None)
    assert (accepted is not None) == (problems == [])
    if accepted is not None:
        assert accepted == normalised


timestamps = st.builds(
    lambda y, mo, d, t, h, mi, s, frac, zone: (
        f"{y:04d}-{mo:02d}-{d:02d}{t}{h:02d}:{mi:02d}:{s:02d}{frac}{zone}"
    ),
    st.integers(0, 9999),
    st.integers(0, 13),
    st.integers(0, 32),
    st.sampled_from(["T", "t", " "]),
    st.integers(0, 25),
    st.integers(0, 61),
    st.integers(0, 61),
    st.sampled_from(["", ".5", ".123456789", "."]),
    st.sampled_from(["Z", "z", "+00:00", "-23:59", "+24:00", "+05:60", "", "+0500"]),
)


@settings(max_examples=1000, deadline=None)
@given(value=st.one_of(timestamps, st.text(max_size=30)))
def test_the_quick_time_check_agrees_with_the_full_one(value: str) -> None:
    """``valid_time`` accepts most timestamps by one pattern with the ranges in it, and sends
    the rest (the 29th-31st, leap seconds, anything odd) to the full check: never a
    different answer."""
    assert attributes.valid_time(value) == attributes._valid_time_full(value)


def test_the_quick_time_check_leaves_the_calendar_to_the_full_one() -> None:
    expected = {
        "2024-02-29T23:59:59Z": True,
        "2023-02-29T23:59:59Z": False,  # not a leap year
        "1900-02-29T00:00:00Z": False,
        "2000-02-29T00:00:00Z": True,
        "2023-04-31T10:00:00+02:00": False,
        "2023-12-31T23:59:60Z": True,  # a leap second
        "2023-02-28T00:00:00Z": True,
        "2023-02-28T24:00:00Z": False,
    }
    for stamp, valid in expected.items():
        assert attributes.valid_time(stamp) is valid, stamp
        assert attributes._valid_time_full(stamp) is valid, stamp


def test_the_plans_of_attribute_names_stay_bounded() -> None:
    """Names are planned once and remembered, but not many, long or made-up ones: a producer
    cannot grow the cache with them."""
    base = {"specversion": "1.0", "id": "1", "source": "s", "type": "t"}
    many = {**base, **{f"x{n}": "v" for n in range(40)}}
    long = {**base, "x" * 100: "v"}
    for attrs in (many, long, base):
        assert attributes.check(attrs) == (attrs, [])
    assert tuple(base) in attributes._PLANS
    assert tuple(many) not in attributes._PLANS and tuple(long) not in attributes._PLANS
    for n in range(attributes._PLANS_MAX + 10):
        attributes.check({**base, f"e{n}": 1})
    assert len(attributes._PLANS) <= attributes._PLANS_MAX


valid_events = st.fixed_dictionaries(
    {
        "specversion": st.just("1.0"),
        "id": st.text(min_size=1, max_size=5),
        "source": st.sampled_from(["/s", "s"]),
        "type": st.sampled_from(["t", "t.u"]),
    },
    optional={
        "time": st.sampled_from(["2020-01-01T00:00:00Z", "2020-02-30T00:00:00Z", "2024-02-29T1"]),
        "datacontenttype": st.sampled_from(["application/json", "text/plain", "a/b+json"]),
        "subject": st.one_of(st.none(), st.text(max_size=3)),
        "data": st.one_of(json_values, st.just(2**70), st.just({"b": 1, "a": [2**64]})),
        "data_base64": st.just("AAEC"),
        "ext": st.one_of(
            st.none(), st.booleans(), st.integers(-(2**32), 2**32), st.text(max_size=3)
        ),
        "Bad": st.just("x"),
    },
)


@settings(max_examples=500, deadline=None)
@given(
    item=st.one_of(valid_events, event_objects),
    repeat=st.booleans(),
    default_time=st.sampled_from([None, "2026-01-01T00:00:00Z"]),
)
def test_the_quick_batch_event_is_the_full_one(
    item: dict[str, Any], repeat: bool, default_time: str | None
) -> None:
    """``parse_batch`` takes an event through ``_quick_event`` when it can, else through
    ``event_from_json``: where the quick one answers, both must give the same event (the
    attributes in the same order too); a body with a repeated member is never quick."""
    body = jsontext.dumps(item)  # integers beyond 64 bits too
    if repeat and len(item) > 1:
        first = next(iter(item))
        body = body[:-1] + b"," + jsontext.dumps({first: item[first]})[1:]
    (parsed,) = jsontext.loads(b"[" + body + b"]")
    quick = parse._quick_event(parsed, default_time)
    full, problems = parse.event_from_json(parsed, 0, default_time)
    if quick is None:
        return
    assert full is not None and not problems
    assert quick == full
    assert list(quick.attributes) == list(full.attributes)
    assert not (repeat and len(item) > 1)


def test_the_quick_batch_event_takes_the_common_shape() -> None:
    item = {
        "specversion": "1.0",
        "id": "1",
        "source": "/s",
        "type": "t",
        "time": "2026-11-27T10:00:00.5Z",
        "datacontenttype": "application/json",
        "data": {"b": 1, "a": [1, 2]},
    }
    quick = parse._quick_event(item, None)
    assert quick is not None and quick == parse.event_from_json(item, 0)[0]
    assert parse._quick_event({**item, "data": 2**70}, None) is None  # beyond orjson
    assert parse._quick_event({**item, "data_base64": "AAEC"}, None) is None
