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

The ``auto`` rows (``--auto SPARSE``, default ``sample_models/quick_sparse.pt``; ``--no-auto``
skips them) run ``mtlexport slim SPARSE --round-to auto`` per backend and batch at the same
threads: the sparse model at dense widths, every fixed ``--round-to`` and the auto widths are
measured whole in alternating rounds, and the rows show round-to 1, the best fixed multiple and
the widths kept (auto, or the best fixed one when auto measured slower). The latency table is
cached (``$MTLEXPORT_CACHE_DIR/latency``), so a second run measures no layers. Targets for the
kept widths: realised share >= 85% on ORT CPU and >= 80% on PyTorch CPU.
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
DEFAULT_SPARSE = ROOT / "sample_models" / "quick_sparse.pt"
TARGET = 0.80
AUTO_TARGET = {"ort": 0.85, "torch": 0.80, "inductor": 0.80}


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
    parser.add_argument("--auto", type=Path, default=DEFAULT_SPARSE, help="sparse checkpoint for the auto rows")
    parser.add_argument("--no-auto", action="store_true", help="skip the --round-to auto rows")
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
    if not args.no_auto:
        print()
        auto_rows(args)
    return 0


def auto_rows(args: argparse.Namespace) -> None:
    """``--round-to auto`` per backend and batch: round-to 1, the best fixed multiple, the kept widths."""
    import tempfile

    from mtlexport.surgery import slim_checkpoint
    from mtlexport.surgery.auto import AutoOptions

    if not args.auto.exists():
        print(f"auto rows skipped: {args.auto} does not exist")
        return
    print(f"auto rows: {args.auto} slimmed with --round-to auto (dense = the same model before slimming)")
    header = (f"{'backend':8} {'batch':>5} {'widths':24} {'ms':>8} {'speedup':>8} {'MACs ratio':>10} "
              f"{'realised':>9} {'best-case':>10} {'predicted':>10}")
    print(header)
    print("-" * len(header))
    kept_shares: list[tuple[str, int, float, float]] = []
    reasons = []
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        for batch in (int(b) for b in args.batch.split(",")):
            options = AutoOptions(backend=backend, batch=batch, threads=args.threads, duration_s=args.duration_s,
                                  iterations=args.iterations, warmup_ms=args.warmup_ms, rounds=args.rounds)
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    report = slim_checkpoint(args.auto, Path(tmp) / "auto.pt", round_to="auto", auto=options)
                except MtlexportError as exc:
                    print(f"{backend:8} {batch:5d} skipped: {exc}")
                    continue
            auto = report.auto
            dense = auto.variant("dense")
            for name, label in (("round-to 1", "round-to 1"), (auto.best_fixed, f"{auto.best_fixed} (best fixed)"),
                                (auto.chosen, f"kept: {auto.chosen}")):
                v = auto.variant(name)
                best = (dense.min_ms / v.min_ms) / v.macs_ratio if v.macs_ratio and v.min_ms > 0 else None
                print(f"{backend:8} {batch:5d} {label:24} {v.measured_ms:8.3f} {v.speedup:7.2f}x "
                      f"{v.macs_ratio or 0:10.2f} {v.realised or 0:9.1%} {best or 0:10.1%} {v.predicted_ms:10.3f}")
            kept = auto.variant(auto.chosen)
            best_kept = (dense.min_ms / kept.min_ms) / kept.macs_ratio if kept.macs_ratio and kept.min_ms > 0 else 0.0
            kept_shares.append((backend, batch, kept.realised or 0.0, best_kept))
            reasons.append(f"{backend} batch {batch}: kept {auto.chosen}: {auto.reason} "
                           f"({auto.layer_measurements} of {auto.layer_entries} layer entries measured now)")
    print()
    for line in reasons:
        print(line)
    for backend in sorted({b for b, *_ in kept_shares}):
        rows = [r for r in kept_shares if r[0] == backend]
        target = AUTO_TARGET.get(backend, TARGET)
        worst, worst_best = min(r[2] for r in rows), min(r[3] for r in rows)
        print(f"{backend} auto, kept widths: lowest realised share {worst:.1%} (best-case {worst_best:.1%}) "
              f"{'meets' if worst >= target else 'misses'} the {target:.0%} target")
    print()


if __name__ == "__main__":
    sys.exit(main())
