"""The README's Configuration reference lists every setting of ``Settings``, with its
variable, its default and the range ``settings.RULES`` enforces: a setting added, renamed,
re-defaulted or re-ranged without the README fails here."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from eventhub import settings

README = Path(__file__).resolve().parents[2] / "README.md"
HEADER = "| setting | flag / variable | default | allowed | meaning |"
FLAGS = {"host", "port", "data", "database"}  # the settings `eventhub serve` takes as flags too


def reference() -> dict[str, list[str]]:
    """The Configuration table: setting name -> its cells."""
    lines = README.read_text().splitlines()
    start = lines.index(HEADER) + 2  # past the header and its |---| line
    rows: dict[str, list[str]] = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert len(cells) == 5, line
        assert cells[0] not in rows, f"{cells[0]} listed twice"
        rows[cells[0]] = cells
    return rows


def shown(value: object) -> str:
    """A default as the README writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


FIELDS = {f.name: f for f in dataclasses.fields(settings.Settings)}


def test_every_setting_is_listed_once_and_nothing_else() -> None:
    assert set(reference()) == set(FIELDS)


@pytest.mark.parametrize("name", FIELDS)
def test_a_settings_row_matches_the_code(name: str) -> None:
    _, where, default, allowed, _ = reference()[name]
    assert f"`EVENTHUB_{name.upper()}`" in where
    assert (f"`--{name}`" in where) == (name in FLAGS)
    value = getattr(settings.Settings(), name)
    if name == "data":
        assert "eventhub/eventhub.db" in default
    elif value is None:
        assert default.startswith("—"), default
    elif value == ():
        assert default == "none"
    else:
        assert default.split(" ")[0] == f"`{shown(value)}`", default
    assert allowed, f"{name}: the allowed values are not said"
    rule = settings.RULES.get(name)
    if rule is not None:
        assert allowed.startswith(rule.text()), (allowed, rule.text())
    if name == "admin_key":
        assert re.search(rf"\b{settings.MIN_ADMIN_KEY_CHARS} characters", allowed)
