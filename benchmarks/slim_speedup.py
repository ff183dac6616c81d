"""Dense vs slim, measured side by side: speedup, MACs ratio and the realised share.

    python benchmarks/slim_speedup.py [DENSE.pt] [SLIM.pt] [--duration-s 2] [--threads 1]

Runs ``mtlexport.bench.compare`` (alternating rounds, same settings) on ONNX Runtime CPU and
PyTorch CPU at batch 1 and 8, and prints for each: median latency of both models, the
measured speedup, the MACs ratio (the theoretical speedup) and the realised share
(speedup / MACs ratio), from median latencies and, as "best-case", from the fastest
query of each (robust on a loaded machine). Target: the slim model realises >= 80% of its theoretical speedup
on ORT CPU.

Default models are ``sample_models/quick_dense.pt`` and ``sample_models/quick_sparse.slim.pt``.
When they do not exist yet, a dense quick model and a hand-slimmed copy (the inner width of
every residual block halved with ``apply_widths``, which is what group-lasso slimming removes)
are written to a temporary folder, so the benchmark always runs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtlexport.bench import BenchSettings, compare  # noqa: E402
from mtlexport.errors import MtlexportError  # noqa: E402

DEFAULT_DENSE = ROOT / "sample_models" / "quick_dense.pt"
DEFAULT_SLIM = ROOT / "sample_models" / "quick_sparse.slim.pt"
QUICK_CONFIG = ROOT / "sample_models" / "quick.yaml"
FALLBACK_SPEC = {  # used only when sample_models/quick.yaml cannot be read
    "name": "quick",
    "backbone": {"name": "resnet18", "base_width": 16, "output_stride": 8},
    "tasks": [
        {"name": "segmentation", "type": "segmentation", "num_outputs": 13, "head": {"width": 32, "rates": [2, 4, 6]}},
        {"name": "depth", "type": "depth", "head": {"width": 32, "rates": [2, 4, 6]}},
    ],
}
QUICK_SIZE = 64
TARGET = 0.80


def quick_spec() -> tuple[Any, dict[str, Any]]:
    """The model spec and config of ``sample_models/quick.yaml`` (resolved against its data)."""
    from mtlexport.models import ModelSpec

    try:
        from mtlexport.train.config import TrainConfig, resolve_config

        config = resolve_config(TrainConfig.from_file(QUICK_CONFIG))
        return config.model, config.to_dict()
    except (MtlexportError, ImportError, OSError):
        return ModelSpec.from_dict(FALLBACK_SPEC), {"data": {"height": QUICK_SIZE, "width": QUICK_SIZE}}


def build_fallback_models(folder: Path) -> tuple[Path, Path]:
    """Write a dense quick model and a copy whose residual blocks' inner widths are halved."""
    from mtlexport.models import create_model, layer_widths
    from mtlexport.train.checkpoint import Checkpoint, save_checkpoint

    spec, config = quick_spec()
    dense = create_model(spec)
    widths = layer_widths(dense)
    slim_widths: dict[str, tuple[int, ...]] = {}
    blocks = sorted(n[: -len(".conv1")] for n in widths if n.startswith("backbone.layer") and n.endswith(".conv1"))
    for b in blocks:
        c1, c2 = widths[f"{b}.conv1"], widths[f"{b}.conv2"]
        inner = c1[1] // 2
        slim_widths[f"{b}.conv1"] = (c1[0], inner, c1[2])
        slim_widths[f"{b}.bn1"] = (inner,)
        if f"{b}.conv3" in widths:  # bottleneck: 1x1 reduce, 3x3, 1x1 expand
            c3 = widths[f"{b}.conv3"]
            slim_widths[f"{b}.conv2"] = (inner, inner, c2[2])
            slim_widths[f"{b}.bn2"] = (inner,)
            slim_widths[f"{b}.conv3"] = (inner, c3[1], c3[2])
        else:
            slim_widths[f"{b}.conv2"] = (inner, c2[1], c2[2])
    slim_spec = spec.with_widths(slim_widths)
    paths = (folder / "quick_dense.pt", folder / "quick_slim_by_hand.pt")
    for path, model_spec in zip(paths, (spec, slim_spec)):
        model = create_model(model_spec)
        save_checkpoint(path, Checkpoint(spec=model_spec, state_dict=model.state_dict(), config=config))
    return paths


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

    settings = BenchSettings(warmup_ms=args.warmup_ms, duration_s=args.duration_s, iterations=args.iterations,
                             threads=args.threads)
    with tempfile.TemporaryDirectory(prefix="slim-speedup-") as tmp:
        dense, slim = args.dense, args.slim
        if not (dense.is_file() and slim.is_file()):
            dense, slim = build_fallback_models(Path(tmp))
            print(f"sample models not found; built a dense quick model and a hand-slimmed copy in {tmp}")
        print(f"dense: {dense}\nslim:  {slim}\nthreads={args.threads} duration={args.duration_s}s/model/batch "
              f"rounds={args.rounds}\n")
        header = (f"{'backend':8} {'batch':>5} {'dense ms':>9} {'slim ms':>9} {'speedup':>8} {'MACs ratio':>10} "
                  f"{'realised':>9} {'best-case':>10}")
        print(header)
        print("-" * len(header))
        realised_ort: list[tuple[float, float]] = []
        for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
            try:
                report = compare(dense, slim, backend=backend, batches=args.batch, settings=settings,
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
