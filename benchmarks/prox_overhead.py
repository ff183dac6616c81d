"""Optimizer step time of ProxAdam (adaptive and uniform prox) relative to AdamW.

1. Step time on the parameters of the paper's dilated ResNet-50 backbone (output stride 8,
   deep stem) with fixed random gradients, relative to ``torch.optim.AdamW`` (foreach): the
   paper's channel groups (adaptive and uniform prox) and coupled groups. Target: adaptive
   ProxAdam step <= 1.5x AdamW's on CPU. ProxAdam runs AdamW's arithmetic in torch's fused CPU
   kernel when lambda > 0, so the fused AdamW row is shown too.
2. Share of a full training iteration (forward + backward + optimizer step) on the quick config
   (``sample_models/quick.yaml`` at its batch size) taken by the proximal step, i.e. ProxAdam's
   step minus AdamW's. Target: <= 10%.

Repeats are interleaved so machine load hits every variant alike; medians are reported, with
the load average (the machine may be shared). CUDA runs too when a GPU is available.

    python benchmarks/prox_overhead.py [--repeats 15] [--lam 1e-5] [--threads N] [--skip-iteration]
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
    from mtlexport.sparsity.coupled import build_structure

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    makers: dict[str, tuple[str | None, Callable[[list[dict]], torch.optim.Optimizer]]] = {
        "adamw": (None, lambda g: torch.optim.AdamW(g, lr=lr, weight_decay=1e-4, foreach=True)),
        "adamw-fused": (None, lambda g: torch.optim.AdamW(g, lr=lr, weight_decay=1e-4, fused=True)),
        "proxadam-adaptive": (None, lambda g: ProxAdam(g, lr=lr, weight_decay=1e-4, lam=lam, prox="adaptive")),
        "proxadam-uniform": (None, lambda g: ProxAdam(g, lr=lr, weight_decay=1e-4, lam=lam, prox="uniform")),
        "proxadam-coupled": ("coupled", lambda g: ProxAdam(g, lr=lr, weight_decay=1e-4, lam=lam, prox="adaptive")),
    }
    if device != "cpu":
        del makers["adamw-fused"]
    runs = {}
    for name, (grouping, make) in makers.items():
        model = dilated_resnet50_backbone().to(device)
        structure = None
        if grouping is not None:
            structure = build_structure(model, grouping, example=torch.zeros(2, 3, 64, 64, device=device))
        for p in model.parameters():
            p.grad = (torch.randn(p.shape, generator=gen) * 1e-3).to(device)
        runs[name] = (model, make(split_param_groups(model, structure=structure)))
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


def iteration_share(device: str, repeats: int, lam: float, config: str) -> dict[str, float]:
    """Median ms of forward+backward, AdamW step and ProxAdam step on the quick config."""
    from torch.utils.data import DataLoader

    from mtlexport.models import create_model
    from mtlexport.tasks import build_tasks
    from mtlexport.train import TrainConfig, resolve_config
    from mtlexport.train.loaders import open_split

    cfg = resolve_config(TrainConfig.from_file(config))
    tasks = build_tasks(cfg.model)
    batch = next(iter(DataLoader(open_split(cfg.data, "train"), batch_size=cfg.train.batch_size)))
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    lr, wd = cfg.optimizer.lr, cfg.optimizer.weight_decay
    runs = {}
    for name in ("adamw", "proxadam"):
        torch.manual_seed(0)
        model = create_model(cfg.model).to(device).train()
        groups = split_param_groups(model)
        opt = (torch.optim.AdamW(groups, lr=lr, weight_decay=wd, foreach=True) if name == "adamw"
               else ProxAdam(groups, lr=lr, weight_decay=wd, lam=lam, prox="adaptive"))
        runs[name] = (model, opt)
    times: dict[str, list[float]] = {"fwd+bwd": [], "adamw": [], "proxadam": []}
    for i in range(repeats + 2):  # two warm-up rounds
        for name, (model, opt) in runs.items():
            opt.zero_grad(set_to_none=True)
            _sync()
            start = time.perf_counter()
            out = model(batch["image"])
            sum(task.loss(out[t], batch) for t, task in tasks.items()).backward()
            _sync()
            mid = time.perf_counter()
            opt.step()
            _sync()
            if i >= 2:
                times["fwd+bwd"].append((mid - start) * 1e3)
                times[name].append((time.perf_counter() - mid) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--lam", type=float, default=1e-5)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: torch default)")
    parser.add_argument("--config", default="sample_models/quick.yaml", help="config of the iteration-share run")
    parser.add_argument("--skip-iteration", action="store_true", help="only the backbone step ratios")
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
        load = os.getloadavg()[0]
        base = times["adamw"]
        label = torch.cuda.get_device_name() if device == "cuda" else "cpu"
        print(f"\n[{label}] backbone optimizer step, median ms (ratio to AdamW foreach), load average {load:.1f}")
        for name, ms in times.items():
            print(f"  {name:<20} {ms:9.2f} ms  {ms / base:5.2f}x")
        if args.skip_iteration:
            continue
        it = iteration_share(device, args.repeats, args.lam, args.config)
        prox = max(it["proxadam"] - it["adamw"], 0.0)
        total = it["fwd+bwd"] + it["proxadam"]
        print(f"[{label}] training iteration on {args.config} (median ms, load average {os.getloadavg()[0]:.1f})")
        print(f"  forward+backward     {it['fwd+bwd']:9.2f} ms")
        print(f"  AdamW step           {it['adamw']:9.2f} ms")
        print(f"  ProxAdam step        {it['proxadam']:9.2f} ms  ({it['proxadam'] / it['adamw']:.2f}x AdamW)")
        print(f"  proximal step share  {100 * prox / total:8.1f} %  of forward+backward+ProxAdam step "
              f"(optimizer step {100 * it['proxadam'] / total:.1f} %)")


if __name__ == "__main__":
    main()
