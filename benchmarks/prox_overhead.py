"""Optimizer step time of ProxAdam (adaptive and uniform prox) relative to AdamW.

Measured side by side on the parameters of the paper's dilated ResNet-50 backbone (output
stride 8, deep stem) with fixed random gradients; repeats are interleaved so machine load hits
every optimizer alike, and the median is reported. Target: ProxAdam step <= 3x AdamW's.

    python benchmarks/prox_overhead.py [--repeats 15] [--lam 1e-5] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from mtlexport.sparsity import ProxAdam, collect_grouped_params, split_param_groups


def dilated_resnet50_backbone() -> nn.Module:
    """The real backbone when ``mtlexport.models`` is importable, else a conv-only stand-in."""
    try:
        from mtlexport.models import BACKBONES, BackboneSpec

        return BACKBONES.get("resnet50")(BackboneSpec(name="resnet50", output_stride=8, deep_stem=True), 3)
    except ImportError:
        return _standin_resnet50()


def _standin_resnet50() -> nn.Module:
    """Conv + BN layers with the shapes of a deep-stem ResNet-50 (no forward needed)."""
    layers: list[nn.Module] = []

    def conv(cin: int, cout: int, k: int) -> None:
        layers.extend([nn.Conv2d(cin, cout, k, bias=False), nn.BatchNorm2d(cout)])

    conv(3, 64, 3), conv(64, 64, 3), conv(64, 128, 3)
    cin = 128
    for planes, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        conv(cin, planes * 4, 1)  # downsample
        for _ in range(blocks):
            conv(cin, planes, 1), conv(planes, planes, 3), conv(planes, planes * 4, 1)
            cin = planes * 4
    return nn.Sequential(*layers)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def bench(device: str, repeats: int, lam: float, lr: float) -> dict[str, float]:
    """Median step time (ms) of each optimizer on ``device``."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    makers: dict[str, Callable[[list[dict]], torch.optim.Optimizer]] = {
        "adamw": lambda g: torch.optim.AdamW(g, lr=lr, weight_decay=1e-4, foreach=True),
        "proxadam-adaptive": lambda g: ProxAdam(g, lr=lr, weight_decay=1e-4, lam=lam, prox="adaptive"),
        "proxadam-uniform": lambda g: ProxAdam(g, lr=lr, weight_decay=1e-4, lam=lam, prox="uniform"),
    }
    runs = {}
    for name, make in makers.items():
        model = dilated_resnet50_backbone().to(device)
        for p in model.parameters():
            p.grad = (torch.randn(p.shape, generator=gen) * 1e-3).to(device)
        runs[name] = (model, make(split_param_groups(model)))
    for _, opt in runs.values():  # warm-up: state allocation, first-step effects
        for _ in range(2):
            opt.step()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, (_, opt) in runs.items():
            _sync()
            start = time.perf_counter()
            opt.step()
            _sync()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--lam", type=float, default=1e-5)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: torch default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = dilated_resnet50_backbone()
    grouped = collect_grouped_params(model)
    n_grouped = sum(g.param.numel() for g in grouped)
    n_all = sum(p.numel() for p in model.parameters())
    print(f"backbone: {type(model).__name__}, {n_all / 1e6:.2f}M params, {len(grouped)} grouped convs "
          f"({n_grouped / 1e6:.2f}M params, {sum(g.num_groups for g in grouped)} groups)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{os.getloadavg()[0]:.1f}, lr {args.lr}, lam {args.lam}, median of {args.repeats}")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        times = bench(device, args.repeats, args.lam, args.lr)
        base = times["adamw"]
        label = torch.cuda.get_device_name() if device == "cuda" else "cpu"
        print(f"\n[{label}] optimizer step, median ms (ratio to AdamW foreach)")
        for name, ms in times.items():
            print(f"  {name:<20} {ms:9.2f} ms  {ms / base:5.2f}x")


if __name__ == "__main__":
    main()
