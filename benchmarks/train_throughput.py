"""Training throughput (images/s) of one full step: forward, task losses, loss weighting,
backward and optimizer step, for the quick config on CPU and, when available, CUDA.

Optimizers (AdamW and, to show the proximal step's cost, ProxAdam) are measured side by side:
repeats are interleaved so machine load hits each alike, and the median is reported with the
ratio to the first optimizer. One fixed batch of real samples is reused (data loading excluded).

    python benchmarks/train_throughput.py [--config sample_models/quick.yaml] [--optimizers adamw,proxadam]
        [--devices cpu,cuda] [--batch-size 32] [--steps 5] [--repeats 5] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from mtlexport.models import create_model
from mtlexport.tasks import build_tasks
from mtlexport.train import TrainConfig, resolve_config
from mtlexport.train.loaders import eval_loader, open_split, to_device
from mtlexport.train.optim import build_training_optimizer
from mtlexport.train.weighting import build_loss_weighting

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "sample_models" / "quick.yaml"


def make_step(config: TrainConfig, optimizer: str, device: torch.device, batch: dict) -> Callable[[], None]:
    """A closure running one training step of ``config`` with ``optimizer`` on ``batch``."""
    lam = 1e-4 if optimizer != "adamw" else 0.0
    cfg = replace(config, optimizer=replace(config.optimizer, name=optimizer, lam=lam))
    torch.manual_seed(0)
    model = create_model(cfg.model).to(device).train()
    tasks = build_tasks(cfg.model)
    weighting = build_loss_weighting(cfg.loss_weighting, cfg.model.task_names).to(device)
    opt = build_training_optimizer(cfg.optimizer, model, weighting)
    batch = to_device(batch, device)

    def step() -> None:
        outputs = model(batch["image"])
        loss = weighting({name: task.loss(outputs[name], batch) for name, task in tasks.items()})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def timed(step: Callable[[], None], steps: int, device: torch.device) -> float:
    """Seconds per step over ``steps`` steps."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--optimizers", default="adamw,proxadam")
    parser.add_argument("--devices", default="cpu,cuda", help="cuda is skipped when unavailable")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the config's")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = resolve_config(TrainConfig.from_file(args.config))
    bs = args.batch_size or config.train.batch_size
    data = replace(config.data, num_train=bs, num_val=0, num_test=0)
    batch = next(iter(eval_loader(open_split(data, "train"), bs)))
    names = [n for n in args.optimizers.split(",") if n]
    devices = [d for d in args.devices.split(",") if d and (d != "cuda" or torch.cuda.is_available())]
    print(f"config {args.config.name}: batch {bs} at {config.data.height}x{config.data.width}, "
          f"{len(config.model.tasks)} tasks, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    for dev_name in devices:
        device = torch.device(dev_name)
        steps = {name: make_step(config, name, device, batch) for name in names}
        for step in steps.values():  # warm-up (allocator, kernels, optimizer state)
            timed(step, 2, device)
        samples: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(args.repeats):
            for name, step in steps.items():
                samples[name].append(timed(step, args.steps, device))
        base = statistics.median(samples[names[0]])
        label = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        for name in names:
            med = statistics.median(samples[name])
            print(f"{label:>24s}  {name:>9s}  {bs / med:9.1f} images/s  {med * 1e3:8.1f} ms/step  "
                  f"x{med / base:.2f} vs {names[0]}")


if __name__ == "__main__":
    main()
