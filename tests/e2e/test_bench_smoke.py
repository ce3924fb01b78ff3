"""The benchmark suite runs end to end at a tiny scale and writes a report of the right
shape. Its numbers are not checked here: benchmarks measure, tests do not time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.timeout(240)
def test_python_m_bench_tiny_writes_a_report(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--tiny", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=220,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = orjson.loads(out.read_bytes())
    assert report["size"] == "tiny" and report["machine"]["nproc"] >= 1
    assert report["sqlite"]["rows_per_s"] > 0
    scenarios = {row["scenario"] for row in report["ingest"]["summary"]["rows"]}
    assert scenarios == {"bare", "binary", "batch"}
    deliver = report["deliver"]
    assert deliver["throughput"]["eventhub"]["deliveries_per_s"] > 0
    assert deliver["throughput"]["raw_client"]["requests_per_s"] > 0
    assert deliver["latency"]["p50_ms"] is not None and deliver["latency"]["p99_ms"] is not None
    assert deliver["fanout"]["fanout_seconds"] > 0 and deliver["fanout"]["restart_seconds"] > 0
    cells = {(r["subscriptions"], r["format"]) for r in deliver["matrix"]["rows"]}
    assert cells == {(n, f) for n in (1, 3) for f in ("envelope", "binary", "structured", "batch")}
    assert [r["offered_per_s"] for r in deliver["rates"]["rows"]] == [20, 40]
    assert deliver["recovery"]["lost"] is not None and deliver["recovery"]["restart_seconds"] > 0
    assert set(report["ratios"]) >= {"delivery_over_raw_client"}
    assert any(name.startswith("ingest_binary_over_bare") for name in report["ratios"])
    assert "## Delivery" in out.with_suffix(".md").read_text()
