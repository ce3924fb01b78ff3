"""The README's Quick start holds two command lines, and ``.ci/run`` runs the test one as it
is written there: what CI proves is what a newcomer pastes."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def quick_start_lines() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def test_the_quick_start_is_two_command_lines() -> None:
    serve, test = quick_start_lines()
    assert serve.endswith("eventhub serve")
    assert test.endswith("python -m pytest") and "apt-get install -y -qq chromium" in test


def test_ci_runs_the_quick_start_test_line_as_written() -> None:
    _, test = quick_start_lines()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in ci
