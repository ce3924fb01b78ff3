"""The nesting and length limits of filters and CESQL (catalog/filters.py, catalog/cesql.py):
exactly at a limit compiles and evaluates within a small, fixed stack budget; one past it is
a 400 naming the limit; long flat chains evaluate, with the results and errors of the
nested form; and what is stored (drafts, the catalogue file) is checked before it is stored.
``test_fuzz_parsers.py`` has the far-past-the-limit cases of the fuzzing report."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest

from eventhub import errors
from eventhub.catalog import cesql, filters
from eventhub.catalog.service import Catalog
from eventhub.log.sqlite import SqliteStore
from eventhub.vault import Vault
from tests.conftest import ManualClock, Running
from tests.e2e.delivery_helpers import KM, request

T = TypeVar("T")
DEPTH = cesql.MAX_DEPTH


def _stack_depth() -> int:
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1  # type: ignore[assignment]
    return depth


def _within(frames: int, run: Callable[[], T]) -> T:
    """``run()`` with only ``frames`` Python frames left before RecursionError."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(_stack_depth() + frames)
    try:
        return run()
    finally:
        sys.setrecursionlimit(limit)


def _refused(source: str, limit: str) -> None:
    with pytest.raises(cesql.ParseError) as caught:
        cesql.compile_expression(source)
    assert caught.value.status == 400 and limit in caught.value.message


def _precedence(n: int) -> str:
    """Every precedence level adds one node: each group is four levels high."""
    source = "1"
    for _ in range((n - 1) // 4):
        source = f"({source} * 1 + 1 = 2 AND TRUE)"
    for _ in range((n - 1) % 4):
        source = f"({source} = TRUE)"
    return source


# n levels deep, all TRUE: exactly at MAX_DEPTH, and one past it.
NESTINGS: dict[str, Callable[[int], str]] = {
    "parentheses": lambda n: "(" * n + "TRUE" + ")" * n,
    "not": lambda n: "NOT " * (n - 1) + "FALSE" if n % 2 == 0 else "NOT " * (n - 1) + "TRUE",
    "negation": lambda n: "- " * (n - 2) + "n = 0",
    "functions": lambda n: "LENGTH(" * (n - 2) + "'abc'" + ")" * (n - 2) + " = 1",
    "in-lists": lambda n: "TRUE IN (" * (n - 1) + "TRUE" + ")" * (n - 1),
    "like-chain": lambda n: "subject" + " LIKE '%'" * (n - 2) + " = TRUE",
    "precedence": _precedence,
}


@pytest.mark.parametrize("nest", NESTINGS.values(), ids=NESTINGS.keys())
def test_cesql_at_the_depth_limit_compiles_and_evaluates_in_a_small_stack(
    nest: Callable[[int], str],
) -> None:
    # 8 frames per level parsing (logic ... primary), at most 4 per level evaluating.
    expression = _within(8 * DEPTH + 40, lambda: cesql.compile_expression(nest(DEPTH)))
    value, errs = _within(4 * DEPTH + 20, lambda: expression.evaluate({"subject": "x", "n": 0}))
    assert errs == [] and value is True


@pytest.mark.parametrize("nest", NESTINGS.values(), ids=NESTINGS.keys())
def test_cesql_past_the_depth_limit_is_a_400_naming_it(nest: Callable[[int], str]) -> None:
    _refused(nest(DEPTH + 1), f"nests deeper than {DEPTH} levels")


def test_cesql_longer_than_the_limit_is_a_400_naming_it() -> None:
    at_limit = "1" + " + 1" * ((cesql.MAX_LENGTH - 6) // 4)
    at_limit += " " * (cesql.MAX_LENGTH - 4 - len(at_limit)) + " > 0"
    assert len(at_limit) == cesql.MAX_LENGTH
    assert cesql.compile_expression(at_limit).evaluate({}) == (True, [])
    _refused(at_limit + " ", f"longer than {cesql.MAX_LENGTH} characters")


CHAINS = [
    ("1" + " + 1" * 3000, {}, (3001, [])),
    (" - ".join(["1"] * 3000), {}, (-2998, [])),
    ("2" + " * 2" * 40, {}, (0, [])),  # 2**41 wraps to 0 in 32 bits
    ("1 + n + 1 + 1", {}, (0, [cesql.MISSING_ATTRIBUTE])),
    ("1 + n + 1 + m", {}, (0, [cesql.MISSING_ATTRIBUTE, cesql.MISSING_ATTRIBUTE])),
    ("1 / 0 + 1 + 'x'", {}, (0, [cesql.MATH])),
    ("1 + 'x' + 1", {}, (0, [cesql.CAST])),
    ("1 + 1 + 'x'", {}, (2, [cesql.CAST])),
    (" AND ".join(["TRUE"] * 1500), {}, (True, [])),
    (" AND ".join(["TRUE"] * 1499 + ["FALSE"]), {}, (False, [])),
    (" OR ".join(["FALSE"] * 1499 + ["TRUE"]), {}, (True, [])),
    (" XOR ".join(["TRUE"] * 1001), {}, (True, [])),
    ("FALSE AND n AND TRUE", {}, (False, [])),  # short circuit: n is never read
    ("TRUE AND n AND TRUE", {}, (False, [cesql.MISSING_ATTRIBUTE])),
    ("TRUE OR n OR FALSE", {}, (True, [])),
    ("'x' AND TRUE AND TRUE", {}, (False, [cesql.CAST])),
    ("TRUE AND 'x' AND TRUE", {}, (False, [cesql.CAST])),
    ("TRUE AND TRUE AND 'x'", {}, (False, [cesql.CAST])),
    ("1 = 1 = TRUE", {}, (True, [])),
    ("1 < 2 = TRUE", {}, (True, [])),
    ("n = 1 = TRUE", {"n": 1}, (True, [])),
    ("n = 1 = TRUE", {}, (False, [cesql.MISSING_ATTRIBUTE])),
]


@pytest.mark.parametrize(("source", "event", "expected"), CHAINS)
def test_long_flat_chains_evaluate_like_their_nested_form(
    source: str, event: dict[str, Any], expected: tuple[Any, list[str]]
) -> None:
    value, errs = _within(200, lambda: cesql.compile_expression(source).evaluate(event))
    assert (value, errs) == expected and type(value) is type(expected[0])


def test_integer_texts_of_any_length_are_values_or_errors() -> None:
    """int() refuses more than 4300 digits with a ValueError, which was a 500 when the
    expression was saved, or an exception on every append for an event's attribute."""
    _refused("x = " + "9" * 5000, "outside the 32-bit integer range")
    expression = cesql.compile_expression("INT(subject) + 1")
    assert expression.evaluate({"subject": "9" * 5000}) == (0, [cesql.CAST])
    assert expression.evaluate({"subject": "0" * 5000 + "41"}) == (42, [])
    assert expression.evaluate({"subject": "-" + "0" * 5000 + "2"}) == (-1, [])
    # A failed cast counts as 0, as for any other text (and the error says so).
    assert cesql.compile_expression("subject < 1").evaluate({"subject": "7" * 5000}) == (
        True,
        [cesql.CAST],
    )


# -- filters ---------------------------------------------------------------------------------


EXACT = {"exact": {"type": "t"}}


def _not(depth: int, leaf: dict[str, Any] = EXACT) -> dict[str, Any]:
    """``depth`` levels of filter: depth - 1 ``not`` around ``leaf``."""
    expression = leaf
    for _ in range(depth - 1):
        expression = {"not": expression}
    return expression


def _all_any(depth: int, leaf: dict[str, Any] = EXACT) -> dict[str, Any]:
    expression = leaf
    for level in range(depth - 1):
        expression = {"all" if level % 2 else "any": [{"prefix": {"type": "x"}}, expression]}
    return expression


@pytest.mark.parametrize("nest", [_not, _all_any], ids=["not", "all-any"])
def test_filters_at_the_depth_limit_compile_and_evaluate(
    nest: Callable[..., dict[str, Any]],
) -> None:
    limit = filters.MAX_DEPTH
    # A CESQL expression at its own limit at the bottom: the deepest thing a trigger holds.
    sql = {"sql": "(" * DEPTH + "type = 't'" + ")" * DEPTH}
    expressions = [nest(limit, sql)]
    compiled = _within(limit * 2 + 8 * DEPTH + 60, lambda: filters.compile_filters(expressions))
    matched = _within(limit * 3 + 4 * DEPTH + 20, lambda: compiled({"type": "t"}))
    assert isinstance(matched, bool)
    index = filters.TriggerIndex()
    index.add(1, expressions)
    assert index.match({"type": "t"}) == ([1] if matched else [])
    # What put_trigger stores: a draft around the filters, well inside orjson's nesting limit.
    orjson.dumps({"triggers": [{"filters": expressions}]})


@pytest.mark.parametrize("nest", [_not, _all_any], ids=["not", "all-any"])
def test_filters_past_the_depth_limit_are_a_400_naming_it(
    nest: Callable[[int], dict[str, Any]],
) -> None:
    with pytest.raises(errors.InvalidRequest) as caught:
        filters.compile_filters([nest(filters.MAX_DEPTH + 1)])
    assert f"nest deeper than {filters.MAX_DEPTH} levels" in caught.value.message


async def test_put_trigger_at_and_past_the_limit(server: Running) -> None:
    assert (await request(server, "PUT", f"{KM}/deep", json={"name": "Deep"}))[0] == 200
    at_limit = {"name": "T", "filters": [_not(filters.MAX_DEPTH)]}
    code, body = await request(server, "PUT", f"{KM}/deep/triggers/at", json=at_limit)
    assert code == 200, body
    past = {"name": "T", "filters": [_not(filters.MAX_DEPTH + 1)]}
    code, body = await request(server, "PUT", f"{KM}/deep/triggers/past", json=past)
    assert code == 400 and body["error"]["code"] == "invalid_request"
    assert f"nest deeper than {filters.MAX_DEPTH} levels" in body["error"]["message"]
    code, body = await request(server, "POST", f"{KM}/deep/publish")
    assert code == 200 and [t["id"] for t in body["triggers"]] == ["at"]


# -- the catalogue file ----------------------------------------------------------------------


@pytest.fixture
async def catalog(tmp_path: Path) -> AsyncIterator[Catalog]:
    store = SqliteStore(tmp_path / "log.db", ManualClock(), vault=Vault(b"k" * 32))
    await store.open()
    loaded = Catalog(store, ManualClock())
    await loaded.load()
    yield loaded
    await store.close()


def _toml_filter(depth: int) -> str:
    return "{ not = " * (depth - 1) + '{ exact = { type = "t" } }' + " }" * (depth - 1)


async def test_the_catalogue_file_validates_nesting_before_storing(
    catalog: Catalog, tmp_path: Path
) -> None:
    path = tmp_path / "catalog.toml"
    head = '[models.m]\nname = "M"\n[[models.m.triggers]]\nid = "t"\n'
    path.write_text(head + f"filters = [{_toml_filter(filters.MAX_DEPTH + 1)}]\n")
    with pytest.raises(errors.InvalidRequest) as caught:
        await catalog.load_file(path)
    assert str(path) in caught.value.message and "models.m" in caught.value.message
    assert f"nest deeper than {filters.MAX_DEPTH} levels" in caught.value.message
    assert "m" not in catalog.drafts  # refused before the model's draft was stored

    path.write_text(head + f"filters = [{_toml_filter(filters.MAX_DEPTH)}]\n")
    await catalog.load_file(path)
    assert catalog.model("m").version == 1


async def test_a_catalogue_file_too_deep_for_tomllib_names_the_file(
    catalog: Catalog, tmp_path: Path
) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(f"[models.m]\nx = {'[' * 5000}{']' * 5000}\n")
    with pytest.raises(errors.InvalidRequest) as caught:
        await catalog.load_file(path)
    assert str(path) in caught.value.message and "nest" in caught.value.message
    path.write_text("[models.m\n")
    with pytest.raises(errors.InvalidRequest) as caught:
        await catalog.load_file(path)
    assert str(path) in caught.value.message
