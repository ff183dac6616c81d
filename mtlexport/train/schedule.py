"""Learning-rate schedules as pure functions of training progress.

The factor is recomputed every step from the fractional epoch, so the only state to resume is
the step counter: no scheduler object is pickled or replayed.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer

from mtlexport.train.config import ScheduleConfig


def lr_factor(config: ScheduleConfig, step: int, steps_per_epoch: int, total_epochs: int) -> float:
    """Multiplier of the base learning rate for optimizer step ``step`` (0-based)."""
    epoch = step / steps_per_epoch
    warmup = config.warmup_epochs
    if warmup > 0 and epoch < warmup:
        return min(1.0, (step + 1) / (warmup * steps_per_epoch))
    if config.name == "none":
        return 1.0
    if config.name == "step":
        return config.gamma ** int((epoch - warmup) // config.step_size)
    span = max(total_epochs - warmup, 1e-12)
    t = min(max((epoch - warmup) / span, 0.0), 1.0)
    if config.name == "cosine":
        floor = config.min_lr_ratio
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))
    if config.name == "poly":
        return (1.0 - t) ** config.power
    raise ValueError(f"unknown schedule {config.name!r}")


def set_lr(optimizer: Optimizer, base_lrs: list[float], factor: float) -> float:
    """Set every group's lr to ``base * factor``; returns the first group's lr."""
    for group, base in zip(optimizer.param_groups, base_lrs):
        group["lr"] = base * factor
    return optimizer.param_groups[0]["lr"]
