"""Read a py-spy profile (``py-spy record --format raw``: one collapsed stack a line, then its
sample count) and say where the time went: by package area, and the functions with the most
samples of their own (self) and under them (inclusive).

    .venv/bin/python bench/stacks.py /tmp/prof/fanout.txt            # Markdown tables
    .venv/bin/python bench/stacks.py /tmp/prof/fanout.txt --top 40

The benchmarks write such files with ``--py-spy DIR`` (ingest.py, deliver.py).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")

# Where a frame's file lives, most specific first: the first match names the area.
_AREAS = (
    ("eventhub/api", "eventhub api"),
    ("eventhub/codec", "eventhub codec"),
    ("eventhub/log", "eventhub log"),
    ("eventhub/consume", "eventhub consume"),
    ("eventhub/delivery", "eventhub delivery"),
    ("eventhub/catalog", "eventhub catalog"),
    ("eventhub/", "eventhub (other)"),
    ("aiosqlite", "aiosqlite"),
    ("starlette", "starlette"),
    ("uvicorn", "uvicorn"),
    ("aiohttp", "aiohttp"),
    ("asyncio", "asyncio"),
    ("sqlite3", "sqlite3"),
)


# The process's entry frames, under every sample: they would top the inclusive table.
_ENTRY = frozenset(
    {
        "<module> (__main__.py)",
        "_run_code (<frozen runpy>)",
        "_run_module_as_main (<frozen runpy>)",
        "main (cli.py)",
        "_serve (cli.py)",
        "main (__init__.py)",  # eventhub/cli/ since it became a package
        "_serve (serve.py)",
        "run (server.py)",
        "Server.run (server.py)",
        "asyncio_run (_compat.py)",
        "Runner.run (runners.py)",
    }
)


def parse(text: str) -> list[tuple[list[str], int]]:
    stacks = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def _name(frame: str) -> str:
    """``func (path/to/file.py:12)`` → ``func (file.py)``: a function, not one of its lines."""
    m = _FRAME.match(frame)
    if m is None:
        return frame
    return f"{m['func']} ({m['file'].rsplit('/', 1)[-1]})"


def area(frame: str) -> str:
    m = _FRAME.match(frame)
    where = m["file"] if m else frame
    for needle, name in _AREAS:
        if needle in where:
            return name
    if "site-packages" in where:
        return where.split("site-packages/", 1)[1].split("/", 1)[0]
    return "python (stdlib, other)"


def summarize(stacks: list[tuple[list[str], int]], top: int) -> str:
    total = sum(count for _, count in stacks) or 1
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    for frames, count in stacks:
        # py-spy writes the outermost frame first: the last one is where the sample landed.
        leaf = frames[-1]
        own[_name(leaf)] += count
        # The innermost of our frames names the area: time in sqlite3 called from the log
        # belongs to sqlite3, time in the log's own lines to the log.
        areas[area(leaf)] += count
        for name in {_name(f) for f in frames} - _ENTRY:
            under[name] += count

    def table(title: str, counts: Counter[str]) -> list[str]:
        lines = [f"| {title} | samples | share |", "|---|---:|---:|"]
        lines += [f"| `{name}` | {n:,} | {n / total:.1%} |" for name, n in counts.most_common(top)]
        return lines

    out = [f"{total:,} samples", ""]
    out += [*table("area (where the sample landed)", areas), ""]
    out += [*table("function, self", own), ""]
    out += table("function, inclusive (entry frames left out)", under)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("profile", type=Path)
    p.add_argument("--top", type=int, default=20)
    args = p.parse_args(argv)
    print(summarize(parse(args.profile.read_text()), args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
