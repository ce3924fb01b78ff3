"""PNG plots of a suite report (``python -m bench`` writes them beside its JSON):

    <run>-latency.png     end-to-end latency percentiles against the offered rate (open loop)
    <run>-ceilings.png    each throughput scenario against its ceiling, with the target ratio
    <run>-matrix.png      delivered events/s by subscription count and delivery format

    .venv/bin/python bench/plots.py bench/results/run-2026-11-25-030000.json

matplotlib is the benchmark extra's (``pip install -e '.[bench]'``); without it the suite
still writes its JSON and Markdown, and says that it drew no plots.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson


def ceiling_rows(report: dict[str, Any]) -> list[tuple[str, float, str, float, float | None]]:
    """(scenario, eventhub figure, ceiling name, ceiling figure, target ratio) for every
    throughput the suite measured against a ceiling of this machine."""
    rows: list[tuple[str, float, str, float, float | None]] = []
    ingest = report.get("ingest", {}).get("summary", {}).get("rows", [])
    by = {(r["generator"], r["scenario"]): r for r in ingest}
    for generator in dict.fromkeys(r["generator"] for r in ingest):
        bare = by.get((generator, "bare"))
        for single, label in (("binary", "binary ingest"), ("structured", "structured ingest")):
            mine = by.get((generator, single))
            if bare and mine and bare["events_per_s"] and mine["events_per_s"]:
                rows.append(
                    (label, mine["events_per_s"], "bare Starlette", bare["events_per_s"], 0.60)
                )
        batch = by.get((generator, "batch"))
        # The ceiling ingest.py measured in the same rounds, as the batch ratio everywhere.
        ratios = report.get("ingest", {}).get("summary", {}).get("ratios", {})
        sqlite = ratios.get(generator, {}).get("sqlite_ceiling_rows_per_s")
        if batch and sqlite and batch["events_per_s"]:
            rows.append(("batch ingest (100)", batch["events_per_s"], "raw SQLite", sqlite, 0.60))
        break  # one generator is enough for the picture; the JSON has them all
    throughput = report.get("deliver", {}).get("throughput")
    if throughput:
        rows.append(
            (
                f"delivery, {throughput['subscriptions']} subs",
                throughput["eventhub"]["deliveries_per_s"],
                "raw aiohttp client",
                throughput["raw_client"]["requests_per_s"],
                0.70,
            )
        )
        if "own_client" in throughput:
            rows.append(
                (
                    f"delivery, {throughput['subscriptions']} subs (own client)",
                    throughput["eventhub"]["deliveries_per_s"],
                    "raw loop, own client",
                    throughput["own_client"]["requests_per_s"],
                    None,
                )
            )
    return rows


def draw(report: dict[str, Any], stem: Path) -> list[Path]:
    """Draw every plot the report has data for; the paths written."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a benchmark machine
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    plain = ticker.FuncFormatter(lambda value, _: f"{value:,g}")

    written: list[Path] = []
    title = f"eventhub, {report['started'][:16].replace('T', ' ')} UTC ({report['size']})"

    rates = report.get("deliver", {}).get("rates", {}).get("rows", [])
    if rates:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        offered = sorted({r["offered_per_s"] for r in rates})
        producers = list(dict.fromkeys(r.get("producer", "single") for r in rates))
        colors = {
            "p50_ms": "#4c72b0",
            "p90_ms": "#dd8452",
            "p99_ms": "#55a868",
            "p999_ms": "#c44e52",
        }
        for producer in producers:
            mine = sorted(
                (r for r in rates if r.get("producer", "single") == producer),
                key=lambda r: r["offered_per_s"],
            )
            style = "-" if producer == "single" else "--"
            for key, label in (
                ("p50_ms", "p50"),
                ("p90_ms", "p90"),
                ("p99_ms", "p99"),
                ("p999_ms", "p99.9"),
            ):
                points = [(r["offered_per_s"], r[key]) for r in mine if r.get(key)]
                if points:
                    ax.plot(
                        [x for x, _ in points],
                        [y for _, y in points],
                        style,
                        marker="o",
                        color=colors[key],
                        label=f"{label}, {producer}",
                    )
        ax.axhline(25, color="grey", linestyle=":", label="p99 target at 1,000/s (25 ms)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(offered, [f"{o:,}" for o in offered])
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())  # decades only: readable
        ax.set_xlabel(
            "offered events/s (open loop, 10 subscriptions; "
            "single: one event a request, batched: a request every 10 ms)",
            fontsize=8,
        )
        ax.set_ylabel("producer's send → receiver has it, ms")
        ax.set_title(f"End-to-end latency\n{title}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(_save(fig, stem, "latency"))
        plt.close(fig)

    rows = ceiling_rows(report)
    if rows:
        fig, ax = plt.subplots(figsize=(8, 0.9 + 0.8 * len(rows)))
        names = [r[0] for r in rows]
        ratios = [r[1] / r[3] for r in rows]
        bars = ax.barh(names, ratios, color="#4c72b0")
        for bar, (_, figure, ceiling_name, ceiling, target) in zip(bars, rows, strict=True):
            ax.text(
                bar.get_width() + 0.01,
                bar.get_y() + bar.get_height() / 2,
                f"{figure:,.0f}/s of {ceiling_name} {ceiling:,.0f}/s",
                va="center",
                fontsize=8,
            )
            if target is not None:
                y = bar.get_y()
                ax.plot([target, target], [y, y + bar.get_height()], color="#c44e52", lw=2)
        ax.axvline(1.0, color="grey", linestyle=":")
        ax.set_xlim(0, 1.6)
        ax.invert_yaxis()
        ax.set_xlabel("eventhub / the machine's ceiling, same run (red: target)")
        ax.set_title(f"Throughput against the ceilings\n{title}", fontsize=10)
        fig.tight_layout()
        written.append(_save(fig, stem, "ceilings"))
        plt.close(fig)

    matrix = report.get("deliver", {}).get("matrix", {}).get("rows", [])
    if matrix:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        formats = list(dict.fromkeys(r["format"] for r in matrix))
        counts = list(dict.fromkeys(r["subscriptions"] for r in matrix))
        width = 0.8 / len(formats)
        cell = {(r["subscriptions"], r["format"]): r["events_per_s"] for r in matrix}
        for i, fmt in enumerate(formats):
            xs = [c + (i - (len(formats) - 1) / 2) * width for c in range(len(counts))]
            ax.bar(xs, [cell.get((n, fmt), 0) for n in counts], width, label=fmt)
        ax.set_xticks(range(len(counts)), [f"{n:,}" for n in counts])
        ax.set_xlabel("subscriptions (batch: 100 events a request; others: one)")
        ax.set_ylabel("delivered events/s")
        ax.set_yscale("log")
        values = [r["events_per_s"] for r in matrix if r["events_per_s"]]
        steps = [m * 10**e for e in range(1, 7) for m in (1, 2, 5)]
        ax.set_yticks([v for v in steps if min(values) / 2 <= v <= max(values) * 2])
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_title(f"Delivery by format\n{title}", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(True, axis="y", which="both", alpha=0.3)
        fig.tight_layout()
        written.append(_save(fig, stem, "matrix"))
        plt.close(fig)
    return written


def _save(fig: Any, stem: Path, name: str) -> Path:
    path = stem.with_name(f"{stem.name}-{name}.png")
    fig.savefig(path, dpi=110)
    return path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    report_path = Path(args[0])
    for path in draw(orjson.loads(report_path.read_bytes()), report_path.with_suffix("")):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
