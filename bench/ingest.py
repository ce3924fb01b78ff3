"""Ingest throughput of eventhub against the ceiling of a bare Starlette endpoint.

Four scenarios, each against its own server process on 127.0.0.1 (eventhub with a fresh
database in a temporary directory), driven by a separate load-generator process:

    bare        bench/bare_app.py: POST, read the body, 204, same uvicorn settings as eventhub;
                it receives exactly the requests of ``binary`` (the ceiling)
    binary      eventhub, one ~0.8 KB CloudEvent a request in binary mode, a unique ce-id each
    structured  eventhub, the same events one a request in structured mode
                (application/cloudevents+json)
    batch       eventhub, 100 events a request (application/cloudevents-batch+json)

Each eventhub scenario has a ``-pg`` twin (``binary-pg``, ``structured-pg``, ``batch-pg``):
the same hub on a fresh database of a throwaway PostgreSQL (``pg.py``: pgserver, a Unix
socket). When one is chosen, the PostgreSQL ceiling (``pg_ceiling.py``: raw asyncpg appends
of the same rows) is measured on that server in the same run, and the summary gives the
PostgreSQL figures as ratios to it and to the SQLite figures of the same run.

With ``batch``, each round first measures the SQLite ceiling (``sqlite_ceiling.py``: raw
``executemany`` of 100-row batches of 1 KB rows into eventhub's schema, the hub's
``synchronous``), and the batch ratio is (c)/(s): batch events/s over that ceiling's rows/s,
both of the same round, the median over rounds. This is the one batch ratio: issue 13's
definition, and the one ``python -m bench``'s targets table shows.

With ``--url`` (and ``--key``) the eventhub scenarios go to an already running eventhub instead
of a fresh local one; the bare endpoint still runs here, as this machine's ceiling.

The generator is ``wrk`` (with bench/ingest.lua) when it is installed, else bench/loadgen.py
(aiohttp); ``--generator both`` runs each scenario with each. Prints a Markdown table and
writes everything measured to bench/results/ingest-<date>.json.

    .venv/bin/python bench/ingest.py                 # 10 s a scenario, one round
    .venv/bin/python bench/ingest.py --runs 3        # medians of 3 rounds
    .venv/bin/python bench/ingest.py --quick         # 3 s a scenario, a smoke run
    .venv/bin/python bench/ingest.py --url https://hub.example --key "$KEY" --scenarios binary
    .venv/bin/python bench/ingest.py --scenarios binary,binary-pg,batch,batch-pg
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import io
import os
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import harness
import loadgen
import orjson
import payloads
import pg
import pg_ceiling

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
ADMIN_KEY = "bench-admin-key-" + "x" * 24

TARGET_RATIO = 0.60  # (b) binary (and (b') structured) events/s over (a) bare requests/s
TARGET_BATCH = 50_000  # (c) batch events/s
TARGET_BATCH_OVER_SQLITE = 0.60  # (c) over (s), the SQLite ceiling of the same round (issue 13)
TARGET_PG_OVER_SQLITE = 0.50  # (b) on PostgreSQL over (b) on SQLite, same run (issue 12)
SATURATED = 0.9  # a process using this share of a core is taken to be the bottleneck


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    server: str  # "bare" or "eventhub"
    mode: str  # "binary", "structured" or "batch"
    database: str = "sqlite"  # "sqlite" or "postgres" (a fresh database of a throwaway server)


SCENARIOS = {
    "bare": Scenario("bare", "(a) bare Starlette, 204", "bare", "binary"),
    "binary": Scenario("binary", "(b) eventhub binary, 1 event/request", "eventhub", "binary"),
    "structured": Scenario(
        "structured", "(b') eventhub structured, 1 event/request", "eventhub", "structured"
    ),
    "batch": Scenario("batch", "(c) eventhub batch, 100 events/request", "eventhub", "batch"),
}
for _name in ("binary", "structured", "batch"):
    _plain = SCENARIOS[_name]
    SCENARIOS[f"{_name}-pg"] = Scenario(
        f"{_name}-pg", f"{_plain.title}, PostgreSQL", "eventhub", _plain.mode, "postgres"
    )


# -- child processes -------------------------------------------------------------------------


class Children:
    """Every process the benchmark starts, each in its own session; all are stopped on exit,
    whether the run ends, fails, or is interrupted (Ctrl-C, SIGTERM)."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 40.0) -> int | None:
        """SIGINT (uvicorn's graceful shutdown, wrk's early stop), then SIGKILL after ``grace``."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        with contextlib.suppress(ValueError):
            self._procs.remove(proc)
        return proc.returncode

    def stop_all(self) -> None:
        for proc in list(self._procs):
            self.stop(proc, grace=5.0)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server not ready after {timeout} s:\n{_tail(log)}")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- one measurement -------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    duration: float
    warmup: float
    connections: int
    batch: int
    synchronous: str | None
    log_level: str  # EVENTHUB_LOG_LEVEL: "info" writes an access line a request
    wrk_threads: int
    py_spy: Path | None
    eventhub_dir: Path  # holds the eventhub package the server runs
    key: str  # the API key the generators publish with
    external_url: str | None  # an already running eventhub, instead of a fresh local one
    pg_uri: str | None = None  # the throwaway PostgreSQL, for the ``-pg`` scenarios


def scenario_database(scenario: Scenario, opts: Options) -> str | None:
    """A fresh PostgreSQL database for a ``-pg`` scenario's hub; None for SQLite."""
    if scenario.database != "postgres" or scenario.server != "eventhub" or opts.external_url:
        return None
    if opts.pg_uri is None:
        raise RuntimeError(f"{scenario.name} needs the throwaway PostgreSQL server")
    return pg.fresh_database(opts.pg_uri, "ingest")


def start_server(
    children: Children,
    scenario: Scenario,
    workdir: Path,
    port: int,
    opts: Options,
    dsn: str | None = None,
) -> subprocess.Popen[bytes]:
    log = workdir / "server.log"
    env = dict(os.environ)
    if scenario.server == "bare":
        argv = [sys.executable, str(BENCH / "bare_app.py"), "--port", str(port)]
    else:
        argv = [sys.executable, "-m", "eventhub", "serve", "--port", str(port)]
        argv += ["--data", str(workdir / "eventhub.db")]
        env.update(EVENTHUB_ADMIN_KEY=ADMIN_KEY, EVENTHUB_LOG_LEVEL=opts.log_level)
        env.update(harness.LOOPBACK_CALLBACKS)
        # The package in eventhub_dir wins over any installed one: it is first on sys.path.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(opts.eventhub_dir), env.get("PYTHONPATH")) if p
        )
        if opts.synchronous:
            env["EVENTHUB_SYNCHRONOUS"] = opts.synchronous
        env.update(harness.database_env(dsn))
    with log.open("wb") as out:
        proc = children.start(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=opts.eventhub_dir
        )
    try:
        wait_ready(port, proc, log)
    except BaseException:
        children.stop(proc, grace=5)
        raise
    return proc


def run_wrk(
    children: Children,
    url: str,
    pool: Path,
    mode: str,
    seconds: float,
    opts: Options,
) -> dict[str, Any]:
    duration = f"-d{max(1, round(seconds))}s"  # wrk takes whole seconds
    argv = ["wrk", f"-t{opts.wrk_threads}", f"-c{opts.connections}", duration]
    argv += ["--timeout", "30s", "-s", str(BENCH / "ingest.lua"), url, "--", mode, str(pool)]
    argv += [opts.key, f"w{uuid.uuid4().hex[:8]}-", str(opts.batch)]
    proc = children.start(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=seconds + 60)
    finally:
        children.stop(proc, grace=5)
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("wrk-json "):
            result: dict[str, Any] = orjson.loads(line[len("wrk-json ") :])
            return result
    raise RuntimeError(f"wrk printed no result: {out.decode()} {err.decode()}")


def measure_wrk(
    children: Children,
    server: subprocess.Popen[bytes] | None,
    scenario: Scenario,
    url: str,
    pool: Path,
    opts: Options,
    profile_to: Path | None,
) -> dict[str, Any]:
    per_request = opts.batch if scenario.mode == "batch" else 1
    warm = run_wrk(children, url, pool, scenario.mode, opts.warmup, opts) if opts.warmup else None
    pid = server.pid if server is not None else None
    with harness.py_spy(pid, profile_to):
        gen0, server0 = _children_cpu_seconds(), _server_cpu(pid)
        got = run_wrk(children, url, pool, scenario.mode, opts.duration, opts)
        gen1, server1 = _children_cpu_seconds(), _server_cpu(pid)
    ok = got["requests"] - got["errors"]["status"]
    acked = ok + (warm["requests"] - warm["errors"]["status"] if warm else 0)
    return {
        "generator": "wrk",
        "window_s": got["duration_us"] / 1e6,
        "requests": ok,
        "events": ok * per_request,
        "acked_events_total": acked * per_request,
        "errors": {k: v for k, v in got["errors"].items() if v},
        "p50_ms": got["p50_us"] / 1e3,
        "p90_ms": got["p90_us"] / 1e3,
        "p99_ms": got["p99_us"] / 1e3,
        "generator_cpu_s": gen1 - gen0,
        "server_cpu_s": None if server0 is None or server1 is None else server1 - server0,
    }


def _server_cpu(pid: int | None) -> float | None:
    return None if pid is None else loadgen.process_cpu_seconds(pid)


def measure_aiohttp(
    children: Children,
    server: subprocess.Popen[bytes] | None,
    scenario: Scenario,
    url: str,
    pool: Path,
    opts: Options,
    profile_to: Path | None,
) -> dict[str, Any]:
    argv = [sys.executable, str(BENCH / "loadgen.py"), "--url", url, "--pool", str(pool)]
    argv += ["--mode", scenario.mode, "--batch", str(opts.batch), "--key", opts.key]
    pid = server.pid if server is not None else 0
    argv += ["--connections", str(opts.connections), "--server-pid", str(pid)]
    argv += ["--warmup", str(opts.warmup), "--duration", str(opts.duration)]
    argv += ["--id-prefix", f"a{uuid.uuid4().hex[:8]}-"]
    proc = children.start(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        if profile_to and pid:
            time.sleep(opts.warmup)  # profile the measured window, not the warm-up
        with harness.py_spy(pid or None, profile_to):
            out, err = proc.communicate(timeout=opts.warmup + opts.duration + 60)
    finally:
        children.stop(proc, grace=5)
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen failed ({proc.returncode}): {err.decode()}")
    result: dict[str, Any] = orjson.loads(out)
    return result


async def _count_pg(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()


def count_stored(db: Path, dsn: str | None = None) -> int | None:
    if dsn is not None:
        return asyncio.run(_count_pg(dsn))
    if not db.exists():
        return None
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        (n,) = conn.execute("SELECT count(*) FROM events").fetchone()
    return int(n)


def run_one(
    children: Children,
    scenario: Scenario,
    generator: str,
    pool: Path,
    workdir: Path,
    opts: Options,
) -> dict[str, Any]:
    workdir.mkdir(parents=True)
    port = harness.free_port()
    load_before = os.getloadavg()
    external = opts.external_url if scenario.server == "eventhub" else None
    dsn = scenario_database(scenario, opts)
    server = None if external else start_server(children, scenario, workdir, port, opts, dsn)
    url = f"{external}/events" if external else f"http://127.0.0.1:{port}/events"
    profile_to = None
    if opts.py_spy is not None:
        profile_to = opts.py_spy / f"{workdir.name}.txt"
    measure = measure_wrk if generator == "wrk" else measure_aiohttp
    try:
        if dsn is not None:
            pg.check_migrated(dsn)
        result = measure(children, server, scenario, url, pool, opts, profile_to)
    finally:
        load_after = os.getloadavg()
        code = children.stop(server) if server is not None else None
    result.update(
        scenario=scenario.name,
        server_exit=code,
        loadavg_before=[round(x, 2) for x in load_before],
        loadavg_after=[round(x, 2) for x in load_after],
    )
    result["events_per_s"] = result["events"] / result["window_s"]
    result["requests_per_s"] = result["requests"] / result["window_s"]
    cpu = result.get("server_cpu_s")
    result["server_cpu_us_per_event"] = (
        cpu / result["events"] * 1e6 if cpu and result["events"] else None
    )
    if scenario.server == "eventhub" and not external:
        result["stored_events"] = count_stored(workdir / "eventhub.db", dsn)
    if profile_to is not None:
        result["profile"] = str(profile_to)
    return result


# -- the code under test ---------------------------------------------------------------------


def _git(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, timeout=60, check=False
    )


def export_rev(rev: str, into: Path) -> dict[str, Any]:
    """Extract the eventhub package as committed at ``rev`` (git archive), so a benchmark of a
    commit is not disturbed by work in progress in the tree."""
    sha = _git("rev-parse", "--verify", f"{rev}^{{commit}}")
    if sha.returncode != 0:
        raise SystemExit(f"ingest.py: not a commit: {rev}: {sha.stderr.decode().strip()}")
    archive = _git("archive", "--format=tar", sha.stdout.decode().strip(), "eventhub")
    if archive.returncode != 0:
        raise SystemExit(f"ingest.py: git archive failed: {archive.stderr.decode().strip()}")
    into.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return {"dir": str(into), "rev": sha.stdout.decode().strip(), "dirty": False}


def describe_tree(path: Path) -> dict[str, Any]:
    head = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--", "eventhub")
    return {
        "dir": str(path),
        "rev": head.stdout.decode().strip() if head.returncode == 0 else None,
        "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None,
    }


# -- the report ------------------------------------------------------------------------------


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _bound_by(server: float | None, generator: float | None) -> str:
    """What saturated: a process using (nearly) a whole core is the bottleneck."""
    if generator is not None and generator >= SATURATED:
        return "generator"
    if server is not None and server >= SATURATED:
        return "server"
    return "-"


def _per_round(runs: list[dict[str, Any]], generator: str, top: str, bottom: str) -> list[float]:
    """events/s of scenario ``top`` over ``bottom``, one ratio a round that has both."""
    out = []
    for round_no in sorted({r["round"] for r in runs}):
        by = {
            r["scenario"]: r for r in runs if r["generator"] == generator and r["round"] == round_no
        }
        if top in by and bottom in by and by[bottom]["events_per_s"]:
            out.append(by[top]["events_per_s"] / by[bottom]["events_per_s"])
    return out


def postgres_ratios(
    runs: list[dict[str, Any]], rows: list[dict[str, Any]], ceiling: dict[str, Any] | None
) -> dict[str, Any]:
    """Per generator: each ``-pg`` scenario over its SQLite twin (within each round, then the
    median) and over the PostgreSQL ceiling of this run (single-event scenarios over
    single-row commits, batches over 100-row commits)."""
    out: dict[str, Any] = {}
    for generator in dict.fromkeys(r["generator"] for r in runs):
        mine: dict[str, Any] = {}
        for name in ("binary", "structured", "batch"):
            row = next(
                (r for r in rows if r["generator"] == generator and r["scenario"] == f"{name}-pg"),
                None,
            )
            if row is None:
                continue
            per_round = _per_round(runs, generator, f"{name}-pg", name)
            mine[f"{name}_pg_events_per_s"] = row["events_per_s"]
            mine[f"{name}_pg_over_sqlite"] = _median(list(per_round))
            mine[f"{name}_pg_over_sqlite_per_round"] = per_round
            if ceiling:
                key = "rows_per_s" if name == "batch" else "single_rows_per_s"
                mine[f"{name}_pg_over_pg_ceiling"] = (
                    row["events_per_s"] / ceiling[key] if ceiling.get(key) else None
                )
        ratio = mine.get("binary_pg_over_sqlite")
        mine["binary_pg_target_met"] = None if ratio is None else ratio >= TARGET_PG_OVER_SQLITE
        if mine:
            out[generator] = mine
    return out


def sqlite_ceiling(seconds: float, batch: int, synchronous: str) -> dict[str, Any]:
    """(s): ``sqlite_ceiling.py`` in its own process, as ``python -m bench`` runs it."""
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "sqlite_ceiling.py"),
            *("--seconds", str(seconds), "--batch", str(batch)),
            *("--synchronous", synchronous),
        ],
        check=True,
        capture_output=True,
        cwd=REPO,
    )
    result: dict[str, Any] = orjson.loads(done.stdout.splitlines()[-1])
    return result


def batch_ratios(
    runs: list[dict[str, Any]], ceilings: dict[int, dict[str, Any]], generator: str
) -> dict[str, Any]:
    """(c)/(s): batch events/s over the SQLite ceiling's rows/s of the same round, the median
    over rounds."""
    per_round = [
        r["events_per_s"] / ceilings[r["round"]]["rows_per_s"]
        for r in runs
        if r["generator"] == generator
        and r["scenario"] == "batch"
        and r["round"] in ceilings
        and r["events_per_s"]
    ]
    ratio = _median(list(per_round))
    return {
        "batch_over_sqlite": ratio,
        "batch_over_sqlite_per_round": per_round,
        "batch_over_sqlite_target_met": (
            None if ratio is None else ratio >= TARGET_BATCH_OVER_SQLITE
        ),
        "sqlite_ceiling_rows_per_s": _median([c["rows_per_s"] for c in ceilings.values()]),
    }


def summarize(
    runs: list[dict[str, Any]],
    pg_ceiling: dict[str, Any] | None = None,
    sqlite_ceilings: dict[int, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Medians per (generator, scenario), the ratio (b)/(a) taken within each round, and
    (c)/(s) against the SQLite ceiling of each round."""
    rows = []
    for generator in dict.fromkeys(r["generator"] for r in runs):
        for name in SCENARIOS:
            mine = [r for r in runs if r["generator"] == generator and r["scenario"] == name]
            if not mine:
                continue
            row: dict[str, Any] = {"generator": generator, "scenario": name, "runs": len(mine)}
            for field in (
                "events_per_s",
                "requests_per_s",
                "p50_ms",
                "p99_ms",
                "server_cpu_us_per_event",
            ):
                row[field] = _median([r.get(field) for r in mine])
            row["server_cpu_share"] = _median(
                [r["server_cpu_s"] / r["window_s"] if r.get("server_cpu_s") else None for r in mine]
            )
            row["generator_cpu_share"] = _median(
                [r["generator_cpu_s"] / r["window_s"] for r in mine]
            )
            row["loadavg_1m"] = _median([r["loadavg_before"][0] for r in mine])
            row["bound_by"] = _bound_by(row["server_cpu_share"], row["generator_cpu_share"])
            rows.append(row)

    ratios: dict[str, Any] = {}
    for generator in dict.fromkeys(r["generator"] for r in runs):
        per_mode: dict[str, Any] = {}
        for single in ("binary", "structured"):
            per_round, cpu_per_round = [], []
            for round_no in sorted({r["round"] for r in runs}):
                by = {
                    r["scenario"]: r
                    for r in runs
                    if r["generator"] == generator and r["round"] == round_no
                }
                if "bare" in by and single in by:
                    per_round.append(by[single]["events_per_s"] / by["bare"]["events_per_s"])
                    a, b = (
                        by["bare"]["server_cpu_us_per_event"],
                        by[single]["server_cpu_us_per_event"],
                    )
                    if a and b:
                        cpu_per_round.append(a / b)
            ratio = _median(per_round)
            per_mode[f"{single}_over_bare"] = ratio
            per_mode[f"{single}_over_bare_per_round"] = per_round
            per_mode[f"cpu_cost_bare_over_{single}"] = _median(cpu_per_round)
            per_mode[f"{single}_target_met"] = None if ratio is None else ratio >= TARGET_RATIO
        batch = next(
            (r for r in rows if r["generator"] == generator and r["scenario"] == "batch"), None
        )
        ratios[generator] = {
            **per_mode,
            "batch_events_per_s": batch["events_per_s"] if batch else None,
            "batch_target_met": None if not batch else batch["events_per_s"] >= TARGET_BATCH,
            **batch_ratios(runs, sqlite_ceilings or {}, generator),
        }
    summary: dict[str, Any] = {"rows": rows, "ratios": ratios}
    if sqlite_ceilings:
        summary["sqlite_ceilings"] = {str(k): v for k, v in sorted(sqlite_ceilings.items())}
    if any(SCENARIOS[r["scenario"]].database == "postgres" for r in runs):
        summary["postgres"] = postgres_ratios(runs, rows, pg_ceiling)
        summary["pg_ceiling"] = pg_ceiling
    return summary


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def markdown(summary: dict[str, Any]) -> str:
    lines = [
        "| scenario | generator | events/s | requests/s | p50 ms | p99 ms "
        "| server CPU µs/event | server CPU | generator CPU | bound by | load 1 min |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for row in summary["rows"]:
        lines.append(
            f"| {SCENARIOS[row['scenario']].title} | {row['generator']} "
            f"| {_fmt(row['events_per_s'], ',.0f')} | {_fmt(row['requests_per_s'], ',.0f')} "
            f"| {_fmt(row['p50_ms'], '.2f')} | {_fmt(row['p99_ms'], '.2f')} "
            f"| {_fmt(row['server_cpu_us_per_event'], '.1f')} "
            f"| {_fmt(row['server_cpu_share'], '.0%')} | {_fmt(row['generator_cpu_share'], '.0%')} "
            f"| {row['bound_by']} | {_fmt(row['loadavg_1m'], '.2f')} |"
        )
    lines.append("")
    for row in summary["rows"]:
        if row["scenario"] == "bare" and row["bound_by"] == "generator":
            lines.append(
                f"- {row['generator']}: the load generator saturated its core before the bare "
                "server did, so (a) and the ratio (b)/(a) are understated/overstated; "
                "the server-CPU ratio below does not depend on the generator"
            )
    for generator, r in summary["ratios"].items():
        for single, label in (("binary", "(b)"), ("structured", "(b')")):
            ratio, cpu = r[f"{single}_over_bare"], r[f"cpu_cost_bare_over_{single}"]
            if ratio is None:
                continue
            verdict = "met" if r[f"{single}_target_met"] else "MISSED"
            lines.append(
                f"- {generator}: {label}/(a) = {ratio:.2f} (target ≥ {TARGET_RATIO:.2f}: "
                f"{verdict}); server CPU a request, (a)/{label} = {_fmt(cpu, '.2f')}"
            )
        if r["batch_events_per_s"] is not None:
            verdict = "met" if r["batch_target_met"] else "MISSED"
            lines.append(
                f"- {generator}: (c) = {r['batch_events_per_s']:,.0f} events/s "
                f"(target ≥ {TARGET_BATCH:,}: {verdict})"
            )
        if r.get("batch_over_sqlite") is not None:
            verdict = "met" if r["batch_over_sqlite_target_met"] else "MISSED"
            rounds = ", ".join(f"{x:.2f}" for x in r["batch_over_sqlite_per_round"])
            lines.append(
                f"- {generator}: (c)/(s) = {r['batch_over_sqlite']:.2f}, batch events/s over "
                f"the SQLite ceiling measured in the same round (rounds {rounds}; "
                f"target ≥ {TARGET_BATCH_OVER_SQLITE:.2f}: {verdict})"
            )
    for round_no, c in summary.get("sqlite_ceilings", {}).items():
        lines.append(
            f"- (s) round {round_no}: SQLite ceiling (sqlite_ceiling.py) {c['rows_per_s']:,.0f} "
            f"rows/s in {c['batch']}-row commits, synchronous={c['synchronous']}"
        )
    ceiling = summary.get("pg_ceiling")
    if ceiling:
        lines.append(
            f"- PostgreSQL ceiling (raw asyncpg, this run): {ceiling['rows_per_s']:,.0f} rows/s "
            f"in {ceiling['batch']}-row commits, {ceiling['single_rows_per_s']:,.0f} rows/s in "
            f"single-row commits over {ceiling['connections']} connections "
            f"({ceiling['single_rows_one_connection_per_s']:,.0f} over one)"
        )
    for generator, r in summary.get("postgres", {}).items():
        for name, label in (("binary", "(b)"), ("structured", "(b')"), ("batch", "(c)")):
            if f"{name}_pg_events_per_s" not in r:
                continue
            over = r.get(f"{name}_pg_over_pg_ceiling")
            text = (
                f"- {generator}: {label} on PostgreSQL = {r[f'{name}_pg_events_per_s']:,.0f} "
                f"events/s: {_fmt(r[f'{name}_pg_over_sqlite'], '.2f')} of SQLite's, "
                f"{_fmt(over, '.2f')} of the PostgreSQL ceiling"
            )
            if name == "binary" and r["binary_pg_target_met"] is not None:
                verdict = "met" if r["binary_pg_target_met"] else "MISSED"
                text += f" (target ≥ {TARGET_PG_OVER_SQLITE:.2f} of SQLite: {verdict})"
            lines.append(text)
    return "\n".join(lines)


def results_path(stamp: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"ingest-{stamp}.json"
    n = 2
    while path.exists() and n < 1000:
        path = RESULTS / f"ingest-{stamp}-{n}.json"
        n += 1
    return path


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured a scenario")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before that")
    parser.add_argument("--connections", type=int, default=64, help="keep-alive connections")
    parser.add_argument("--runs", type=int, default=1, help="rounds; the report shows medians")
    parser.add_argument(
        "--generator",
        choices=["auto", "wrk", "aiohttp", "both"],
        default="auto",
        help="auto: wrk when installed, else aiohttp",
    )
    parser.add_argument(
        "--scenarios",
        default="bare,binary,structured,batch",
        help="comma-separated subset of " + ",".join(SCENARIOS),
    )
    parser.add_argument("--batch", type=int, default=100, help="events a batch request")
    parser.add_argument("--synchronous", choices=["full", "normal"], help="EVENTHUB_SYNCHRONOUS")
    parser.add_argument(
        "--log-level",
        default="warning",
        help="EVENTHUB_LOG_LEVEL (default warning; info logs an access line a request)",
    )
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument(
        "--py-spy", type=Path, metavar="DIR", help="profile each server with py-spy (raw output)"
    )
    parser.add_argument(
        "--rev",
        help="benchmark eventhub as committed at this git revision (e.g. HEAD), "
        "not the working tree",
    )
    parser.add_argument("--output", type=Path, help="results file (default bench/results/...)")
    parser.add_argument(
        "--pg-ceiling-seconds",
        type=float,
        default=3.0,
        help="with -pg scenarios: seconds of each PostgreSQL ceiling measurement",
    )
    parser.add_argument(
        "--sqlite-ceiling-seconds",
        type=float,
        default=3.0,
        help="with batch: seconds of each round's SQLite ceiling measurement",
    )
    parser.add_argument("--quick", action="store_true", help="3 s a scenario, 1 s warm-up, 1 round")
    parser.add_argument(
        "--url", help="an already running eventhub (e.g. https://hub.example:8080) to measure"
    )
    parser.add_argument("--key", help="with --url: an API key allowed to publish /uipath/ sources")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.runs = 3.0, 1.0, 1
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        parser.error(f"unknown scenarios {unknown}; choose from {', '.join(SCENARIOS)}")
    args.scenario_list = [SCENARIOS[n] for n in names]
    if args.url and not args.key:
        parser.error("--url needs --key: the API key to publish with")
    args.postgres = any(s.database == "postgres" for s in args.scenario_list)
    if args.url and args.postgres:
        parser.error("the -pg scenarios start a hub on a throwaway PostgreSQL: not with --url")
    if args.url and (args.rev or args.synchronous or args.py_spy):
        parser.error("--rev, --synchronous and --py-spy act on a local server, not on --url")
    args.url = args.url.rstrip("/") if args.url else None
    has_wrk = shutil.which("wrk") is not None
    if args.generator in ("wrk", "both") and not has_wrk:
        parser.error("wrk is not installed (apt-get install wrk), use --generator aiohttp")
    args.generators = {
        "auto": ["wrk" if has_wrk else "aiohttp"],
        "wrk": ["wrk"],
        "aiohttp": ["aiohttp"],
        "both": ["wrk", "aiohttp"],
    }[args.generator]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.py_spy is not None:
        args.py_spy.mkdir(parents=True, exist_ok=True)
    # Installed explicitly: a shell starts background jobs with SIGINT ignored.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_interrupt)
    children = Children()
    atexit.register(children.stop_all)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    runs: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    print(
        f"{len(args.scenario_list)} scenarios x {len(args.generators)} generator(s) x {args.runs} "
        f"round(s), {args.duration:g} s each after {args.warmup:g} s warm-up, "
        f"{args.connections} connections; load average {os.getloadavg()[0]:.2f}",
        file=sys.stderr,
    )
    pg_ceiling_result: dict[str, Any] | None = None
    sqlite_ceilings: dict[int, dict[str, Any]] = {}
    measure_sqlite = any(s.mode == "batch" and s.database == "sqlite" for s in args.scenario_list)
    try:
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="eventhub-bench-"))
            pg_uri = stack.enter_context(pg.server()) if args.postgres else None
            if pg_uri is not None:
                # The ceiling on the same server, in the same run, before the hubs.
                pg_ceiling_result = pg_ceiling.measure(
                    pg.fresh_database(pg_uri, "ceiling"),
                    args.pg_ceiling_seconds,
                    b"x" * 1000,
                    args.batch,
                )
            code = export_rev(args.rev, Path(tmp) / "src") if args.rev else describe_tree(REPO)
            print(f"eventhub under test: {args.url or code}", file=sys.stderr)
            opts = Options(
                args.duration,
                args.warmup,
                args.connections,
                args.batch,
                args.synchronous,
                args.log_level,
                args.wrk_threads,
                args.py_spy,
                Path(code["dir"]),
                args.key or ADMIN_KEY,
                args.url,
                pg_uri,
            )
            pool_file = Path(tmp) / "pool.tsv"
            payloads.write_pool(pool_file, payloads.build_pool())
            for round_no in range(1, args.runs + 1):
                if measure_sqlite:
                    # (s) of this round, just before its hubs: the batch ratio's denominator.
                    ceiling = sqlite_ceiling(
                        args.sqlite_ceiling_seconds, args.batch, args.synchronous or "full"
                    )
                    sqlite_ceilings[round_no] = ceiling
                    print(
                        f"  round {round_no} sqlite ceiling {ceiling['rows_per_s']:>9,.0f} rows/s",
                        file=sys.stderr,
                    )
                for generator in args.generators:
                    for scenario in args.scenario_list:
                        workdir = Path(tmp) / f"r{round_no}-{generator}-{scenario.name}"
                        label = f"  round {round_no} {generator:7} {scenario.name:6}"
                        try:
                            result = run_one(
                                children, scenario, generator, pool_file, workdir, opts
                            )
                        except (
                            RuntimeError,
                            OSError,
                            ValueError,
                            subprocess.SubprocessError,
                        ) as exc:
                            # One broken scenario must not lose the others' figures.
                            print(f"{label} FAILED: {exc}", file=sys.stderr)
                            failures.append(
                                {
                                    "round": round_no,
                                    "generator": generator,
                                    "scenario": scenario.name,
                                    "error": str(exc),
                                }
                            )
                            continue
                        result["round"] = round_no
                        runs.append(result)
                        print(
                            f"{label} {result['events_per_s']:>9,.0f} events/s  "
                            f"p50 {_fmt(result['p50_ms'], '.2f')} ms  "
                            f"p99 {_fmt(result['p99_ms'], '.2f')} ms  "
                            f"load {result['loadavg_before'][0]:.2f}",
                            file=sys.stderr,
                        )
                        stored = result.get("stored_events")
                        if stored is not None and stored < result["acked_events_total"]:
                            print(
                                f"  WARNING: {result['acked_events_total']} events acknowledged "
                                f"but only {stored} stored",
                                file=sys.stderr,
                            )
    except KeyboardInterrupt:
        print("interrupted; servers and generators stopped", file=sys.stderr)
        return 130
    finally:
        children.stop_all()

    summary = summarize(runs, pg_ceiling_result, sqlite_ceilings)
    report = {
        "benchmark": "ingest",
        "started": started,
        "machine": harness.machine(),
        "options": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "runs": args.runs,
            "batch": args.batch,
            "generators": args.generators,
            "synchronous": args.synchronous or "full (default)",
            "log_level": args.log_level,
            "wrk_threads": args.wrk_threads,
        },
        "eventhub": {"url": args.url} if args.url else code,
        "targets": {
            "binary_over_bare": TARGET_RATIO,
            "batch_events_per_s": TARGET_BATCH,
            "batch_over_sqlite": TARGET_BATCH_OVER_SQLITE,
            "binary_pg_over_sqlite": TARGET_PG_OVER_SQLITE,
        },
        "summary": summary,
        "runs": runs,
        "failures": failures,
    }
    out = args.output or results_path(time.strftime("%Y-%m-%d"))
    out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print(markdown(summary))
    for failure in failures:
        print(
            f"- FAILED: round {failure['round']} {failure['generator']} {failure['scenario']}: "
            f"{failure['error'].splitlines()[0]}"
        )
    print(f"\nresults: {out}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
