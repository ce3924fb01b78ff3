"""One command for the whole suite: ``python -m bench`` (from the repository root).

Runs, each in its own processes: the SQLite ceiling (``sqlite_ceiling.py``), ingest against a
bare Starlette endpoint (``ingest.py``), and delivery against a raw aiohttp client
(``deliver.py``). Writes one JSON file with every figure and its ratio to its ceiling, and a
Markdown summary beside it.

    .venv/bin/python -m bench              # the full suite (a few minutes)
    .venv/bin/python -m bench --quick      # a minute or two
    .venv/bin/python -m bench --tiny       # seconds: the test suite's smoke run
    .venv/bin/python -m bench --only ingest,sqlite
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

BENCH = Path(__file__).resolve().parent
PARTS = ("sqlite", "ingest", "deliver")


def _run(args: list[str]) -> None:
    subprocess.run([sys.executable, *args], check=True, cwd=BENCH.parent)


def sqlite_part(size: str, out: Path) -> dict[str, Any]:
    seconds = {"tiny": "0.5", "quick": "2", "full": "5"}[size]
    done = subprocess.run(
        [sys.executable, str(BENCH / "sqlite_ceiling.py"), "--seconds", seconds],
        check=True,
        capture_output=True,
        cwd=BENCH.parent,
    )
    result: dict[str, Any] = orjson.loads(done.stdout.splitlines()[-1])
    return result


def ingest_part(size: str, out: Path) -> dict[str, Any]:
    args = [str(BENCH / "ingest.py"), "--output", str(out)]
    if size == "tiny":
        args += [
            "--duration",
            "1",
            "--warmup",
            "0.5",
            "--runs",
            "1",
            "--generator",
            "aiohttp",
            "--connections",
            "8",
        ]
    elif size == "quick":
        args += ["--quick"]
    else:
        args += ["--runs", "3", "--duration", "6"]
    _run(args)
    result: dict[str, Any] = orjson.loads(out.read_bytes())
    return result


def deliver_part(size: str, out: Path) -> dict[str, Any]:
    args = [str(BENCH / "deliver.py"), "--out", str(out)]
    if size == "tiny":
        args += [
            "--subscriptions",
            "3",
            "--backlog",
            "10",
            "--raw-seconds",
            "0.5",
            "--rate",
            "50",
            "--latency-seconds",
            "1",
            "--fanout",
            "20",
            "--matrix-counts",
            "1,3",
            "--matrix-deliveries",
            "30",
            "--rates",
            "20,40",
            "--recovery-rate",
            "30",
            "--recovery-seconds",
            "1.5",
        ]
    elif size == "quick":
        args += ["--quick"]
    _run(args)
    result: dict[str, Any] = orjson.loads(out.read_bytes())
    return result


def ratios(report: dict[str, Any]) -> dict[str, Any]:
    """Every figure against its ceiling, in one place."""
    out: dict[str, Any] = {}
    ingest = report.get("ingest", {}).get("summary", {})
    for generator, r in ingest.get("ratios", {}).items():
        out[f"ingest_binary_over_bare_{generator}"] = r.get("binary_over_bare")
        batch = r.get("batch_events_per_s")
        ceiling = report.get("sqlite", {}).get("rows_per_s")
        if batch and ceiling:
            out[f"ingest_batch_over_sqlite_{generator}"] = batch / ceiling
    throughput = report.get("deliver", {}).get("throughput")
    if throughput:
        out["delivery_over_raw_client"] = throughput["ratio_to_raw_client"]
    return out


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# eventhub benchmark, {report['started']} ({report['size']})", ""]
    sqlite = report.get("sqlite")
    if sqlite:
        lines += [
            f"SQLite ceiling: {sqlite['rows_per_s']:,.0f} rows/s (raw executemany, batches of "
            f"{sqlite['batch']}, synchronous={sqlite['synchronous']}, "
            f"{sqlite['row_bytes']} B rows)",
            "",
        ]
    ingest = report.get("ingest")
    if ingest and "markdown" in ingest:
        lines += ["## Ingest", "", ingest["markdown"], ""]
    elif ingest:
        rows = ingest.get("summary", {}).get("rows", [])
        lines += [
            "## Ingest",
            "",
            "| scenario | generator | events/s | p50 ms | p99 ms |",
            "|---|---|---:|---:|---:|",
        ]
        for row in rows:
            lines.append(
                f"| {row['scenario']} | {row['generator']} | {row['events_per_s'] or 0:,.0f} | "
                f"{row['p50_ms'] or 0:.2f} | {row['p99_ms'] or 0:.2f} |"
            )
        lines.append("")
    deliver = report.get("deliver")
    if deliver:
        lines += ["## Delivery", "", deliver["markdown"], ""]
    lines += ["## Ratios to the ceilings", ""]
    lines += [f"- {name}: {value:.2f}" for name, value in report["ratios"].items() if value]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a minute or two")
    size.add_argument("--tiny", action="store_true", help="seconds: a smoke run")
    parser.add_argument("--only", default=",".join(PARTS), help=f"subset of {','.join(PARTS)}")
    parser.add_argument("--out", type=Path, help="the JSON report (default bench/results/run-*)")
    args = parser.parse_args(argv)
    chosen = [p.strip() for p in args.only.split(",") if p.strip()]
    if not chosen or any(p not in PARTS for p in chosen):
        parser.error(f"--only takes a subset of {','.join(PARTS)}")
    size_name = "tiny" if args.tiny else "quick" if args.quick else "full"
    started = datetime.now(UTC)
    report: dict[str, Any] = {
        "started": started.isoformat(),
        "size": size_name,
        "machine": {
            "nproc": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg": os.getloadavg(),
        },
    }
    runners = {"sqlite": sqlite_part, "ingest": ingest_part, "deliver": deliver_part}
    with tempfile.TemporaryDirectory(prefix="eventhub-suite-") as folder:
        for part in chosen:
            print(f"== {part}", file=sys.stderr, flush=True)
            report[part] = runners[part](size_name, Path(folder) / f"{part}.json")
    report["ratios"] = ratios(report)
    out = args.out or BENCH / "results" / f"run-{started:%Y-%m-%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    summary = markdown(report)
    out.with_suffix(".md").write_text(summary)
    print(summary)
    print(f"written to {out} and {out.with_suffix('.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
