"""Your own model in your own training loop: group-sparse ProxAdam, then slim, export and bench.

    python examples/own_loop.py [--out DIR] [--steps N]

Any multi-task ``nn.Module`` whose ``forward(images)`` returns ``{task: tensor}`` works; here a
small two-task network on random images stands in for yours. The steps are the README's
"Your own model" section: coupled channel groups (exactly what the surgeon can remove), ProxAdam
like any ``torch.optim`` optimizer, ``slim_model`` (verified exact), ``export_network`` (validated
ONNX named after the tasks) and ``bench_models`` (ONNX Runtime latency, dense vs slim).
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlexport.bench import BenchSettings, bench_models
from mtlexport.export import BatchRange, ExportOptions, export_network
from mtlexport.models import BackboneSpec, ModelSpec, TaskSpec
from mtlexport.sparsity import ProxAdam, build_structure, sparsity_report, split_param_groups
from mtlexport.surgery import slim_model

SIZE = 32


class TwoTaskNet(nn.Module):
    """Shared trunk, a segmentation head and a depth head (your model goes here)."""

    def __init__(self, width: int = 16, classes: int = 3) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
        )
        self.seg = nn.Conv2d(2 * width, classes, 1)
        self.depth = nn.Conv2d(2 * width, 1, 1)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        features = self.trunk(images)
        return {"seg": self.seg(features), "depth": self.depth(features)}


def batch(gen: torch.Generator, n: int = 8) -> tuple[Tensor, Tensor, Tensor]:
    """Random images with labels derived from them (stands in for your data loader)."""
    images = torch.randn(n, 3, SIZE, SIZE, generator=gen)
    return images, (images[:, 0] > 0).long() + (images[:, 1] > 1).long(), images[:, 2:3].abs()


def main(out: Path, steps: int = 40) -> dict[str, float]:
    torch.manual_seed(0)
    model = TwoTaskNet()
    example = torch.zeros(2, 3, SIZE, SIZE)

    # 1. Group-sparse parameter groups: one group per channel the surgeon can remove.
    structure = build_structure(model, "coupled", "all", example=example)
    optimizer = ProxAdam(split_param_groups(model, structure=structure), lr=1e-2, lam=0.05)

    # 2. Your loop, as with any torch.optim optimizer (the proximal step zeroes whole groups).
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        images, seg, depth = batch(gen)
        outputs = model(images)
        loss = F.cross_entropy(outputs["seg"], seg) + F.l1_loss(outputs["depth"], depth)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    print(f"group sparsity {sparsity_report(model, 'all').group_sparsity:.1f}%")

    # 3. Slim: remove the dead channels, verified against the dense model on these inputs.
    dense = copy.deepcopy(model)
    report = slim_model(model, example[:1], {"random": torch.randn(4, 3, SIZE, SIZE, generator=gen)},
                        profile_shape=(3, SIZE, SIZE))
    print(f"slim: removed {report.removed} of {report.removable} removable channels, "
          f"MACs {report.macs_after:,} / {report.macs_before:,}, exact: {report.passed}")

    # 4. Export: the task types give the export tolerances; the outputs are named after the tasks.
    spec = ModelSpec(backbone=BackboneSpec(), tasks=(TaskSpec("seg", "segmentation", 3), TaskSpec("depth", "depth")))
    options = ExportOptions(batch=BatchRange(1, 1, 2), height=SIZE, width=SIZE, engine=False, simplify=False)
    folders = {}
    for name, net in (("dense", dense), ("slim", model)):
        folders[name] = export_network(net, spec, out / name, options).out_dir
    print(f"exported {', '.join(str(p) for p in folders.values())}")

    # 5. Bench both exports on ONNX Runtime, side by side.
    settings = BenchSettings(duration_s=0.2, iterations=10, warmup_ms=20, threads=1)
    results = bench_models(list(folders.values()), batches=(1,), settings=settings).to_dict()["results"]
    for r in results:
        print(f"{r['label']}: median {r['latency_ms']['median']:.3f} ms, outputs vs references: "
              f"{r['check']['reference']}")
    return {"removed": report.removed, "removable": report.removable, "passed": float(report.passed),
            **{f"{r['label']}_ms": r["latency_ms"]["median"] for r in results}}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="export folder (default: a temporary one)")
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    if args.out is None:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp), args.steps)
    else:
        main(args.out, args.steps)
