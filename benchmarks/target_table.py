"""MACs targets per grouping, side by side: slim MACs ratio, task metrics, Delta_T, ORT latency.

    python benchmarks/target_table.py --sweep channel=runs/channel --sweep coupled=runs/coupled \
        [--out benchmarks/results/targets_quick] [--duration-s 1.5] [--threads 1]

Each sweep folder comes from ``mtlexport sweep --config sample_models/quick.yaml --lambdas 0
--targets 0.7,0.5,0.35 --set optimizer.grouping=G``. For every target row this slims the run's
``best.pt`` (``mtlexport slim``, exact), reads the test metrics and Delta_T against the dense
(lambda 0) row from ``summary.json``, and measures dense vs slim on ONNX Runtime CPU (alternating
rounds, batch 1) after slimming with ``--round-to 8`` as deployed (unrounded widths run slowly
on ORT CPU): median and minimum latency ratios (the minimum is robust on a loaded machine).
Writes a Markdown table (stdout and OUT.md), OUT.json and the plot OUT.png (Delta_T against
MACs ratio, one line per grouping).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtlexport.bench import BenchSettings, compare  # noqa: E402
from mtlexport.sparsity.plots import plot_delta_vs_macs  # noqa: E402
from mtlexport.surgery import slim_checkpoint  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep", action="append", required=True, help="LABEL=DIR of a sweep with --targets")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "targets_quick")
    parser.add_argument("--duration-s", type=float, default=1.5)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--round-to", type=int, default=8, help="widths of the slim model that is timed")
    args = parser.parse_args(argv)
    settings = BenchSettings(warmup_ms=200.0, duration_s=args.duration_s, iterations=20, threads=args.threads)
    rows, series = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for item in args.sweep:
            label, _, folder = item.partition("=")
            summary = json.loads((Path(folder) / "summary.json").read_text())
            headline = summary["headline"]
            dense = next(r for r in summary["rows"] if r.get("target_macs") is None)
            dense_ckpt = Path(dense["run_dirs"][0]) / "best.pt"
            for row in summary["rows"]:
                if row.get("target_macs") is None:
                    continue
                best = Path(row["run_dirs"][0]) / "best.pt"
                slim_path = Path(tmp) / f"{label}_{row['target_macs']:g}.slim.pt"
                report = slim_checkpoint(best, slim_path)
                macs_ratio = report.macs_after / report.macs_before
                timed = slim_path.with_name(slim_path.stem + f".r{args.round_to}.pt")
                rounded = slim_checkpoint(best, timed, round_to=args.round_to)
                bench = compare(dense_ckpt, timed, backend="ort", batches="1", settings=settings,
                                rounds=args.rounds)
                c = bench.comparisons[0]
                metrics = {f"{t}.{m}": row["metrics"][f"{t}.{m}"]["mean"] for t, m in headline.items()}
                rows.append({"grouping": label, "target_macs": row["target_macs"], "macs_ratio": macs_ratio,
                             "removed": report.removed, "zero_groups_predicted_ratio": (row.get("macs_ratio") or {}).get(
                                 "mean"), "metrics": metrics, "delta_t": row["delta"].get("overall"),
                             "delta_per_task": {k: v for k, v in row["delta"].items() if k != "overall"},
                             "timed_round_to": args.round_to,
                             "timed_macs_ratio": rounded.macs_after / rounded.macs_before,
                             "ort_dense_ms": c.baseline_latency_ms, "ort_slim_ms": c.candidate_latency_ms,
                             "ort_latency_ratio": c.candidate_latency_ms / c.baseline_latency_ms,
                             "ort_min_latency_ratio": 1.0 / c.speedup_min})
                series.setdefault(f"{label} groups", []).append((macs_ratio, row["delta"].get("overall", 0.0)))
            dense_metrics = {f"{t}.{m}": dense["metrics"][f"{t}.{m}"]["mean"] for t, m in headline.items()}
    keys = list(dense_metrics)
    lines = ["| grouping | target | slim MACs ratio | " + " | ".join(keys)
             + f" | Delta_T (%) | round-to {args.round_to}: MACs ratio | ORT latency ratio (median / min) |",
             "|---|---|---|" + "---|" * len(keys) + "---|---|---|",
             "| dense | - | 1.000 | " + " | ".join(f"{dense_metrics[k]:.4f}" for k in keys) + " | 0 | 1.000 | 1.00 / 1.00 |"]
    for r in rows:
        lines.append(f"| {r['grouping']} | {r['target_macs']:g} | {r['macs_ratio']:.3f} | "
                     + " | ".join(f"{r['metrics'][k]:.4f}" for k in keys)
                     + f" | {r['delta_t']:+.2f} | {r['timed_macs_ratio']:.3f} | "
                     f"{r['ort_latency_ratio']:.2f} / {r['ort_min_latency_ratio']:.2f} |")
    table = "\n".join(lines)
    print(table)
    print(f"\n(ONNX Runtime CPU, batch 1, {args.threads} thread(s), {args.rounds} alternating rounds; "
          f"load average {os.getloadavg()[0]:.1f})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(table + "\n")
    args.out.with_suffix(".json").write_text(json.dumps({"dense": dense_metrics, "rows": rows}, indent=2) + "\n")
    plot_delta_vs_macs(series, args.out.with_suffix(".png"), title="quick config: Delta_T against MACs ratio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
