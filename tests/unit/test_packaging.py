"""What the package imports at run time is what pyproject.toml installs: a module only in the
test extra would pass every test and break `pip install . && eventhub serve`."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[2]


def _third_party_imports() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "eventhub").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "eventhub" and top not in sys.stdlib_module_names:
                    found.add(top)
    return found


def test_every_runtime_import_is_a_declared_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[<>=\[; ]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
    missing = {name for name in _third_party_imports() if name.lower() not in declared}
    assert missing == set(), f"imported by eventhub/ but not in [project].dependencies: {missing}"
