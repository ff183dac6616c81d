"""Dense vs slim, measured side by side: speedup, MACs ratio and the realised share.

    python benchmarks/slim_speedup.py [DENSE] [SLIM] [--duration-s 2] [--threads 1]

Runs ``mtlexport.bench.compare`` (alternating rounds, same settings) on ONNX Runtime CPU and
PyTorch CPU at batch 1 and 8, and prints for each: median latency of both models, the
measured speedup, the MACs ratio (the theoretical speedup) and the realised share
(speedup / MACs ratio), from median latencies and, as "best-case", from the fastest
query of each (robust on a loaded machine). Target: the slim model realises >= 80% of its theoretical speedup
on ORT CPU.

DENSE and SLIM are anything ``mtlexport bench --engine`` takes: checkpoints (the default,
``sample_models/quick_dense.pt`` and ``sample_models/quick_sparse.slim.pt``; ORT then runs a
quick unsimplified ONNX export of each) or ``mtlexport export`` folders (the validated,
simplified ONNX a user deploys).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtlexport.bench import BenchSettings, compare  # noqa: E402
from mtlexport.errors import MtlexportError  # noqa: E402

DEFAULT_DENSE = ROOT / "sample_models" / "quick_dense.pt"
DEFAULT_SLIM = ROOT / "sample_models" / "quick_sparse.slim.pt"
TARGET = 0.80


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dense", nargs="?", type=Path, default=DEFAULT_DENSE)
    parser.add_argument("slim", nargs="?", type=Path, default=DEFAULT_SLIM)
    parser.add_argument("--backends", default="ort,torch")
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--duration-s", type=float, default=2.0, help="timed seconds per model and batch")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--warmup-ms", type=float, default=300.0)
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds per batch")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (1 is stable on shared CPUs)")
    args = parser.parse_args(argv)
    for path in (args.dense, args.slim):
        if not path.exists():
            print(f"error: {path} does not exist; run 'bash sample_models/make_samples.sh' or pass two models",
                  file=sys.stderr)
            return 2

    settings = BenchSettings(warmup_ms=args.warmup_ms, duration_s=args.duration_s, iterations=args.iterations,
                             threads=args.threads)
    print(f"dense: {args.dense}\nslim:  {args.slim}\nthreads={args.threads} duration={args.duration_s}s/model/batch "
          f"rounds={args.rounds} load average={os.getloadavg()[0]:.2f}\n")
    header = (f"{'backend':8} {'batch':>5} {'dense ms':>9} {'slim ms':>9} {'speedup':>8} {'MACs ratio':>10} "
              f"{'realised':>9} {'best-case':>10}")
    print(header)
    print("-" * len(header))
    realised_ort: list[tuple[float, float]] = []
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        try:
            report = compare(args.dense, args.slim, backend=backend, batches=args.batch, settings=settings,
                             rounds=args.rounds)
        except MtlexportError as exc:
            print(f"{backend:8} skipped: {exc}")
            continue
        for c in report.comparisons:
            share = f"{c.realised:9.1%}" if c.realised is not None else "        -"
            best = f"{c.realised_min:10.1%}" if c.realised_min is not None else "         -"
            ratio = f"{c.macs_ratio:10.2f}" if c.macs_ratio is not None else "         -"
            print(f"{backend:8} {c.batch:5d} {c.baseline_latency_ms:9.3f} {c.candidate_latency_ms:9.3f} "
                  f"{c.speedup:7.2f}x {ratio} {share} {best}")
            if backend == "ort" and c.realised is not None and c.realised_min is not None:
                realised_ort.append((c.realised, c.realised_min))
    print()
    if realised_ort:
        for name, worst in (("median", min(r[0] for r in realised_ort)), ("best-case", min(r[1] for r in realised_ort))):
            verdict = "meets" if worst >= TARGET else "misses"
            print(f"ORT CPU, {name}: lowest realised share {worst:.1%} {verdict} the {TARGET:.0%} target")
        print("(a realised share above 100% means the machine was loaded unevenly; trust best-case there)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
