"""The benchmark suite runs end to end at a tiny scale and writes a report of the right
shape. Its numbers are not checked here: benchmarks measure, tests do not time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.timeout(300)
def test_python_m_bench_tiny_writes_a_report(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--tiny", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = orjson.loads(out.read_bytes())
    assert report["size"] == "tiny" and report["machine"]["nproc"] >= 1
    assert report["sqlite"]["rows_per_s"] > 0
    assert report["machine"]["packages"]["eventhub"] and report["machine"]["sqlite"]
    scenarios = {row["scenario"] for row in report["ingest"]["summary"]["rows"]}
    assert scenarios == {"bare", "binary", "structured", "batch"}
    deliver = report["deliver"]
    assert deliver["throughput"]["eventhub"]["deliveries_per_s"] > 0
    assert deliver["throughput"]["raw_client"]["requests_per_s"] > 0
    assert deliver["throughput"]["own_client"]["requests_per_s"] > 0
    assert deliver["fanout"]["fanout_seconds"] > 0 and deliver["fanout"]["restart_seconds"] > 0
    cells = {(r["subscriptions"], r["format"]) for r in deliver["matrix"]["rows"]}
    assert cells == {(n, f) for n in (1, 3) for f in ("envelope", "binary", "structured", "batch")}
    rates = [(r["producer"], r["offered_per_s"]) for r in deliver["rates"]["rows"]]
    assert rates == [("single", 20), ("single", 40), ("batched", 20), ("batched", 40)]
    for row in deliver["rates"]["rows"]:
        assert row["deliveries"] >= row["events"] * 10  # every event reached all 10 subscriptions
        assert row["p50_ms"] is not None and row["p99_ms"] >= row["p50_ms"]
    assert deliver["recovery"]["lost"] is not None and deliver["recovery"]["restart_seconds"] > 0
    scale = report["scale"]
    assert scale["events"] == 2_000 and scale["subscriptions"] == 20
    assert scale["fill"]["events"] == 2_000 and len(scale["fill"]["events_per_s_by_tenth"]) >= 2
    assert scale["restart_seconds"] > 0 and scale["idle_rss_mb"] > 0
    assert scale["fanout_seconds"] > 0 and scale["read_page_ms"] > 0
    processes = report["processes"]
    assert processes["instances"] == 200 and processes["offered_per_s"] == 200
    wake = processes["wake"]
    # every wake event woke its instance, whose next call reached the receiver, and it ended
    assert wake["woke"] == 200 and wake["missing"] == 0 and wake["completed"] == 200
    assert wake["p50_ms"] is not None and wake["p99_ms"] >= wake["p50_ms"]
    for ceiling in ("direct", "relay"):
        assert processes["ceilings"][ceiling]["missing"] == 0
        assert processes["ceilings"][ceiling]["p99_ms"] > 0
    assert processes["empty"]["rss_mb"] > 0 and processes["waiting"]["rss_mb"] > 0
    assert processes["empty"]["restart"]["readyz_seconds"] > 0
    assert processes["restart"]["readyz_seconds"] > 0
    assert processes["restart"]["api_read_seconds"] > 0
    assert {"process_wake_p99_over_direct", "process_wake_p99_over_relay"} <= set(report["ratios"])
    assert set(report["ratios"]) >= {"delivery_over_raw_client"}
    assert any(name.startswith("ingest_binary_over_bare") for name in report["ratios"])
    assert any(name.startswith("ingest_structured_over_bare") for name in report["ratios"])
    # one batch ratio: over the SQLite ceiling the ingest part measured in its own rounds
    ingest_ratios = report["ingest"]["summary"]["ratios"]["aiohttp"]
    assert (
        report["ratios"]["ingest_batch_over_sqlite_aiohttp"] == (ingest_ratios["batch_over_sqlite"])
    )
    assert ingest_ratios["sqlite_ceiling_rows_per_s"] > 0
    pg = report["postgres"]  # issue 12: the hub on PostgreSQL beside SQLite, one run
    pg_rows = {r["scenario"] for r in pg["ingest"]["summary"]["rows"]}
    assert pg_rows == {"binary", "binary-pg", "batch", "batch-pg"}
    assert pg["ingest"]["summary"]["pg_ceiling"]["single_rows_per_s"] > 0
    assert not pg["ingest"]["failures"] and pg["summary"]["ingest_binary_pg_over_sqlite"] > 0
    for store in ("sqlite", "postgres"):
        assert pg["delivery"][store]["deliveries_per_s"] > 0
        assert pg["delivery"][store]["latency"]["single"]["missing"] == 0
    scale = pg["scale_out"]  # two hub processes on one PostgreSQL against one
    for phase in ("one", "two"):
        assert scale[phase]["throughput"]["deliveries_per_s"] > 0
        assert scale[phase]["latency"]["missing"] == 0
    # the leases spread the subscriptions over both processes
    assert len(scale["two"]["latency"]["held_by_process"]) == 2
    failover = scale["two"]["failover"]
    assert failover["victim_held"] >= 1 and failover["taken_over"] == failover["victim_held"]
    assert failover["first_delivery_s"]["max"] > 0 and failover["caught_up"] >= 1
    assert pg["summary"]["scale_delivery_two_over_one"] > 0
    assert "### Two hub processes" in pg["markdown"]
    assert "## PostgreSQL (issue 12)" in out.with_suffix(".md").read_text()
    measured = {t["target"] for t in report["targets"]}
    assert "events lost after kill -9" in measured
    assert any(t.startswith("binary ingest / bare endpoint") for t in measured)
    assert any(t.startswith("batch ingest / SQLite ceiling") for t in measured)
    assert any(t.startswith("structured ingest / bare endpoint") for t in measured)
    assert "restart with 200 waiting instances, s" in measured
    assert "RSS of 200 waiting instances above an empty hub, MB" in measured
    assert any(t.startswith("fail-over after SIGKILL") for t in measured)
    summary = out.with_suffix(".md").read_text()
    assert "## Targets" in summary and "## Delivery" in summary and "## Scale" in summary
    assert "## Process instances (issue 9)" in summary
    plots = [Path(p) for p in report["plots"]]
    assert sorted(p.name for p in plots) == [
        "report-ceilings.png",
        "report-latency.png",
        "report-matrix.png",
    ]
    for plot in plots:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({plot.name})" in summary
