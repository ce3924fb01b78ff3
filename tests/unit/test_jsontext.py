"""codec/jsontext: the fast path's one question, "could orjson have lost anything?", answered
right for the bodies that try to slip past it."""

from __future__ import annotations

import json

import pytest

from eventhub import errors
from eventhub.codec import jsontext

BIG = 2**70


@pytest.mark.parametrize(
    ("body", "repeated"),
    [
        (b'{"id":"a","id":"b"}', ("id",)),
        (b'{"id": "a", "id": "b"}', ("id",)),
        (b'{"i\\u0064":"a","id":"b"}', ("id",)),  # escaped name
        # A repeated member whose lost colon is made up by an escaped colon elsewhere.
        (b'{"x":"\\u003a","id":"a","id":"b"}', ("id",)),
        (b'{"a":1,"b":2,"a":3,"b":4}', ("a", "b")),
        (b'{"id":"a:b","id":"c:d"}', ("id",)),
    ],
)
def test_repeated_names_are_found(body: bytes, repeated: tuple[str, ...]) -> None:
    assert jsontext.duplicates(jsontext.loads(body)) == repeated


@pytest.mark.parametrize(
    "body",
    [b'{"id":"a","x":"b:c"}', b'{"id" : "a", "x" : {"id": 1}}', b'{"x":"\\u003a"}', b"[1,2]"],
)
def test_no_repeated_names_no_report(body: bytes) -> None:
    value = jsontext.loads(body)
    assert jsontext.duplicates(value) == ()
    assert value == json.loads(body)


def test_repeats_inside_nested_objects_are_not_the_events() -> None:
    value = jsontext.loads(b'{"data":{"k":1,"k":2}}')
    assert jsontext.duplicates(value) == ()
    assert jsontext.duplicates(value["data"]) == ("k",)


@pytest.mark.parametrize("number", [BIG, -BIG, 2**64, -(2**63) - 1, 10**300])
def test_big_integers_survive_digit_for_digit(number: int) -> None:
    body = f'{{"n":{number},"s":"plain"}}'.encode()
    value = jsontext.loads(body)
    assert value["n"] == number
    assert jsontext.dumps(value) == body
    assert str(number).encode() in jsontext.canonical(value)
    assert jsontext.canonical_of(body) == jsontext.canonical(value)


def test_in_range_numbers_stay_on_orjson() -> None:
    body = b'{"n":18446744073709551615,"m":-9223372036854775808,"f":1.5}'
    assert jsontext.dumps(jsontext.loads(body)) == body


def test_not_json_is_invalid_json() -> None:
    # orjson's rules, including its refusal of a number past a double's range (10**400).
    for body in (b"{", b"NaN", b'"\\ud800"', b"\xff", str(10**400).encode()):
        with pytest.raises(errors.InvalidJson):
            jsontext.loads(body)
