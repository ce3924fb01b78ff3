"""The official CESQL test kit (copied from refs/cesql-tck, with its LICENSE), case by case."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from eventhub.catalog import cesql

TCK = Path(__file__).parents[1] / "data" / "cesql-tck"


class _Loader(yaml.SafeLoader):  # type: ignore[misc]
    """YAML without implicit timestamps: the kit's times are strings, as in CloudEvents."""


_Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

DEFAULT_EVENT = {
    "specversion": "1.0",
    "id": "myId",
    "source": "localhost.localdomain",
    "type": "myType",
}


def _cases() -> list[Any]:
    cases = []
    for path in sorted(TCK.glob("*.yaml")):
        suite = yaml.load(path.read_text(), Loader=_Loader)
        for case in suite["tests"]:
            cases.append(pytest.param(case, id=f"{path.stem}: {case['name']}"))
    return cases


@pytest.mark.parametrize("case", _cases())
def test_tck(case: dict[str, Any]) -> None:
    event = case.get("event") or {**DEFAULT_EVENT, **(case.get("eventOverrides") or {})}
    # YAML reads some expressions as scalars (TRUE, 0, -10): the kit means their text.
    expression = str(case["expression"])
    if case.get("error") == "parse":
        with pytest.raises(cesql.ParseError):
            cesql.compile_expression(expression)
        return
    value, errs = cesql.compile_expression(expression).evaluate(event)
    if "result" in case:
        assert value == case["result"] and type(value) is type(case["result"])
    if "error" in case:
        assert case["error"] in errs
    else:
        assert errs == []
