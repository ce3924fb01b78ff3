"""eventhub on PostgreSQL against eventhub on SQLite, in one run (issue 12); and two hub
processes on one PostgreSQL against one.

1. Ingest (``ingest.py``): binary (one event a request) and batch (100 a request), each on
   SQLite and on a fresh database of a throwaway PostgreSQL, in alternating rounds; the
   PostgreSQL ceiling (``pg_ceiling.py``, raw asyncpg) measured on that server in the same run.
2. Delivery (``deliver.py``): throughput over N subscriptions (against the raw client
   ceilings) and open-loop end-to-end latency at 1,000 events/s (one event a request, and
   batched every 10 ms), on SQLite, then on PostgreSQL, then again each (``--pairs``).

3. Scale-out (``pg_scale.py``): delivery throughput and end-to-end latency with one and with
   two hub processes on one PostgreSQL (the scaling ratio two/one), and the fail-over time
   after a SIGKILL of one of the two, with a small ``EVENTHUB_LEASE_SECONDS``.

    .venv/bin/python bench/postgres.py --size quick
    .venv/bin/python -m bench --only postgres
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import harness
import orjson

BENCH = Path(__file__).resolve().parent
TARGET_PG_OVER_SQLITE = 0.50  # single-event ingest on PostgreSQL over SQLite, same run

INGEST = {
    "tiny": "--duration 1 --warmup 0.5 --runs 1 --generator aiohttp --connections 8"
    " --pg-ceiling-seconds 0.5 --sqlite-ceiling-seconds 0.5",
    "quick": "--quick --pg-ceiling-seconds 1 --sqlite-ceiling-seconds 1",
    "full": "--runs 3 --duration 6 --pg-ceiling-seconds 3",
}
DELIVER = {
    # tiny: one producer (the deliver part covers the batched one): the smoke test stays short
    "tiny": "--subscriptions 3 --backlog 10 --raw-seconds 0.5 --rates 40 --latency-seconds 1"
    " --producers single",
    "quick": "--subscriptions 10 --backlog 100 --raw-seconds 1 --rates 1000 --latency-seconds 3",
    "full": "--rates 1000",
}


def _json(argv: list[str], out: Path) -> dict[str, Any]:
    subprocess.run([sys.executable, *argv], check=True, cwd=BENCH.parent)
    result: dict[str, Any] = orjson.loads(out.read_bytes())
    return result


def ingest(size: str, tmp: Path) -> dict[str, Any]:
    out = tmp / "ingest.json"
    argv = [str(BENCH / "ingest.py"), "--output", str(out), *INGEST[size].split()]
    return _json([*argv, "--scenarios", "binary,binary-pg,batch,batch-pg"], out)


def deliver(size: str, tmp: Path, database: str, n: int) -> dict[str, Any]:
    out = tmp / f"deliver-{database}-{n}.json"
    argv = [str(BENCH / "deliver.py"), "--out", str(out), "--database", database]
    argv += ["--only", "throughput", "--only", "rates", "--producers", "single,batched"]
    return _json([*argv, *DELIVER[size].split()], out)


def scale_out(size: str, tmp: Path) -> dict[str, Any]:
    out = tmp / "scale.json"
    return _json([str(BENCH / "pg_scale.py"), "--size", size, "--out", str(out)], out)


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def delivery_figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over one store's delivery runs: throughput, its ratio to the raw clients, and
    each producer's latency percentiles at the run's rate."""
    out: dict[str, Any] = {
        "runs": len(runs),
        "deliveries_per_s": _median(
            [r["throughput"]["eventhub"]["deliveries_per_s"] for r in runs]
        ),
        "deliveries_per_s_each": [r["throughput"]["eventhub"]["deliveries_per_s"] for r in runs],
        "over_raw_client": _median([r["throughput"]["ratio_to_raw_client"] for r in runs]),
        "over_own_client": _median([r["throughput"]["ratio_to_own_client"] for r in runs]),
        "subscriptions": runs[0]["throughput"]["subscriptions"],
        "latency": {},
    }
    for producer in ("single", "batched"):
        rows = [row for r in runs for row in r["rates"]["rows"] if row["producer"] == producer]
        if rows:
            out["latency"][producer] = {
                "offered_per_s": rows[0]["offered_per_s"],
                **{
                    k: _median([row.get(k) for row in rows])
                    for k in ("p50_ms", "p99_ms", "p999_ms", "ack_p50_ms", "ack_p99_ms")
                },
                "p99_ms_each": [row["p99_ms"] for row in rows],
                "missing": sum(
                    row["events"] * row["subscriptions"] - row["deliveries"] for row in rows
                ),
            }
    return out


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """The figures the issue asks for, with their ratios."""
    summary = report["ingest"]["summary"]
    pg: dict[str, Any] = next(iter(summary.get("postgres", {}).values()), {})
    ceiling = summary.get("pg_ceiling") or {}
    sqlite, postgres = report["delivery"]["sqlite"], report["delivery"]["postgres"]
    single = pg.get("binary_pg_over_sqlite")
    figures: dict[str, Any] = {
        "pg_ceiling_batch_rows_per_s": ceiling.get("rows_per_s"),
        "pg_ceiling_single_rows_per_s": ceiling.get("single_rows_per_s"),
        "ingest_binary_pg_events_per_s": pg.get("binary_pg_events_per_s"),
        "ingest_batch_pg_events_per_s": pg.get("batch_pg_events_per_s"),
        "ingest_binary_pg_over_sqlite": single,
        "ingest_batch_pg_over_sqlite": pg.get("batch_pg_over_sqlite"),
        "ingest_binary_pg_over_pg_ceiling": pg.get("binary_pg_over_pg_ceiling"),
        "ingest_batch_pg_over_pg_ceiling": pg.get("batch_pg_over_pg_ceiling"),
        "ingest_binary_pg_target_met": None if single is None else single >= TARGET_PG_OVER_SQLITE,
        "delivery_pg_over_sqlite": (
            postgres["deliveries_per_s"] / sqlite["deliveries_per_s"]
            if postgres["deliveries_per_s"] and sqlite["deliveries_per_s"]
            else None
        ),
    }
    scale = report.get("scale_out", {}).get("summary", {})
    figures.update({f"scale_{name}": value for name, value in scale.items()})
    return figures


def _f(value: Any, pattern: str = "{:,.0f}") -> str:
    return "-" if value is None else pattern.format(value)


def _server(settings: dict[str, str]) -> str:
    return f"PostgreSQL {settings.get('version')}, " + ", ".join(
        f"{k} {v}" for k, v in settings.items() if k != "version"
    )


def markdown(report: dict[str, Any]) -> str:
    s = report["summary"]
    rows = {r["scenario"]: r for r in report["ingest"]["summary"]["rows"]}
    ceiling = report["ingest"]["summary"].get("pg_ceiling") or {}
    lines = [
        "One hub process (two: below). Medians; the machine is shared and noisy.",
        "",
        f"PostgreSQL ceiling (raw asyncpg, same server, same run): "
        f"{_f(ceiling.get('rows_per_s'))} rows/s in {ceiling.get('batch')}-row commits, "
        f"{_f(ceiling.get('single_rows_per_s'))} rows/s in single-row commits over "
        f"{ceiling.get('connections')} connections "
        f"({_f(ceiling.get('single_rows_one_connection_per_s'))} over one). "
        f"Server: {_server(ceiling.get('server') or {})}.",
        "",
        "| ingest | SQLite events/s | PostgreSQL events/s | PostgreSQL / SQLite "
        "| PostgreSQL / its ceiling |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, label in (("binary", "one event a request"), ("batch", "100 events a request")):
        lite, pg = rows.get(name, {}), rows.get(f"{name}-pg", {})
        lines.append(
            f"| {label} | {_f(lite.get('events_per_s'))} | {_f(pg.get('events_per_s'))} | "
            f"{_f(s[f'ingest_{name}_pg_over_sqlite'], '{:.2f}')} | "
            f"{_f(s[f'ingest_{name}_pg_over_pg_ceiling'], '{:.2f}')} |"
        )
    met = s["ingest_binary_pg_target_met"]
    lines += [
        "",
        f"Target: single-event ingest on PostgreSQL ≥ {TARGET_PG_OVER_SQLITE:.2f} of SQLite's: "
        f"{_f(s['ingest_binary_pg_over_sqlite'], '{:.2f}')}, "
        f"{'-' if met is None else 'met' if met else '**missed**'}.",
        "",
        "| delivery | SQLite | PostgreSQL |",
        "|---|---:|---:|",
    ]
    lite, pg = report["delivery"]["sqlite"], report["delivery"]["postgres"]
    lines.append(
        f"| {lite['subscriptions']} subscriptions, deliveries/s | "
        f"{_f(lite['deliveries_per_s'])} ({_f(lite['over_raw_client'], '{:.2f}')} of raw aiohttp) | "
        f"{_f(pg['deliveries_per_s'])} ({_f(pg['over_raw_client'], '{:.2f}')}) |"
    )
    for producer, label in (
        ("single", "one event a request"),
        ("batched", "a request every 10 ms"),
    ):
        a, b = lite["latency"].get(producer), pg["latency"].get(producer)
        if not a or not b:
            continue
        lines.append(
            f"| end-to-end at {a['offered_per_s']:,}/s, {label}: p50 / p99 ms | "
            f"{_f(a['p50_ms'], '{:.1f}')} / {_f(a['p99_ms'], '{:.1f}')} | "
            f"{_f(b['p50_ms'], '{:.1f}')} / {_f(b['p99_ms'], '{:.1f}')} |"
        )
        lines.append(
            f"| of which the ingest (send → 200, its commit included): p50 / p99 ms | "
            f"{_f(a.get('ack_p50_ms'), '{:.1f}')} / {_f(a.get('ack_p99_ms'), '{:.1f}')} | "
            f"{_f(b.get('ack_p50_ms'), '{:.1f}')} / {_f(b.get('ack_p99_ms'), '{:.1f}')} |"
        )
    if "scale_out" in report:
        lines += ["", "### Two hub processes", "", report["scale_out"]["markdown"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=["tiny", "quick", "full"], default="quick")
    parser.add_argument("--pairs", type=int, help="delivery runs a store (default 1, full: 2)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    pairs = args.pairs or (2 if args.size == "full" else 1)
    report: dict[str, Any] = {"benchmark": "postgres", "size": args.size, "pairs": pairs}
    with tempfile.TemporaryDirectory(prefix="eventhub-bench-pgpart-") as folder:
        tmp = Path(folder)
        report["ingest"] = ingest(args.size, tmp)
        runs: dict[str, list[dict[str, Any]]] = {"sqlite": [], "postgres": []}
        for n in range(pairs):
            # Alternating stores: the machine's mood drifts over minutes.
            for database in ("sqlite", "postgres") if n % 2 == 0 else ("postgres", "sqlite"):
                runs[database].append(deliver(args.size, tmp, database, n))
        report["scale_out"] = scale_out(args.size, tmp)
    report["delivery_runs"] = runs
    report["delivery"] = {db: delivery_figures(r) for db, r in runs.items()}
    report["summary"] = summarize(report)
    report["markdown"] = markdown(report)
    harness.write_report(report, "postgres", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
