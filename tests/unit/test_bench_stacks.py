"""bench/stacks.py reads py-spy's collapsed stacks right: self time where a sample landed,
inclusive time once a stack however often a function recurs in it, entry frames left out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]

PROFILE = """\
<module> (eventhub/__main__.py:3);main (eventhub/cli.py:10);_send (eventhub/delivery/supervisor.py:40);post (eventhub/delivery/pool.py:90) 6
<module> (eventhub/__main__.py:3);main (eventhub/cli.py:10);_send (eventhub/delivery/supervisor.py:41);_send (eventhub/delivery/supervisor.py:44);sign (eventhub/delivery/signing.py:12) 3
<module> (eventhub/__main__.py:3);main (eventhub/cli.py:10);execute (/usr/lib/python3.11/sqlite3/dbapi2.py:5) 1
"""


def test_self_inclusive_and_areas(tmp_path: Path) -> None:
    profile = tmp_path / "profile.txt"
    profile.write_text(PROFILE)
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "stacks.py"), str(profile)],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert lines[0] == "10 samples"
    assert "| `eventhub delivery` | 9 | 90.0% |" in lines
    assert "| `sqlite3` | 1 | 10.0% |" in lines
    assert "| `post (pool.py)` | 6 | 60.0% |" in lines  # self
    # inclusive: _send is in 9 samples, counted once in the stack where it recurs
    assert "| `_send (supervisor.py)` | 9 | 90.0% |" in lines
    assert not any("main (cli.py)" in line for line in lines)
