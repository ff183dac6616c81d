"""Depth regression: L1 or MSE on valid pixels (target > 0); absolute/relative error and deltas."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mtlexport.models.spec import TaskSpec
from mtlexport.tasks.base import TASKS, Meter, Task, Tolerance

_EPS = 1e-6


class DepthMeter(Meter):
    """Sums of absolute error, relative error, squared error and delta hits over valid pixels."""

    def __init__(self) -> None:
        self.count = 0
        self.abs = 0.0
        self.rel = 0.0
        self.sq = 0.0
        self.deltas = [0, 0, 0]

    def update(self, pred: Tensor, batch: dict[str, Tensor]) -> None:
        target = batch["depth"].detach().cpu().double()
        p = pred.detach().cpu().double().reshape(target.shape)
        valid = target > 0
        t, p = target[valid], p[valid]
        err = (p - t).abs()
        self.count += int(t.numel())
        self.abs += float(err.sum())
        self.rel += float((err / t).sum())
        self.sq += float((err**2).sum())
        ratio = torch.maximum(p.clamp_min(_EPS) / t, t / p.clamp_min(_EPS))
        for k in range(3):
            self.deltas[k] += int((ratio < 1.25 ** (k + 1)).sum())

    def compute(self) -> dict[str, float]:
        n = max(self.count, 1)
        return {
            "abs_err": self.abs / n,
            "rel_err": self.rel / n,
            "rmse": (self.sq / n) ** 0.5,
            "delta1": self.deltas[0] / n,
            "delta2": self.deltas[1] / n,
            "delta3": self.deltas[2] / n,
        }


@TASKS.register("depth")
class DepthTask(Task):
    """Per-pixel depth; one output channel; loss ``l1`` (default) or ``mse``."""

    type_name = "depth"
    dense = True
    target_key = "depth"
    metrics = {"abs_err": False, "rel_err": False, "rmse": False, "delta1": True, "delta2": True, "delta3": True}
    primary_metric = "abs_err"
    losses = ("l1", "mse")
    tolerances = {"fp32": Tolerance(atol=1e-3, rtol=1e-3), "fp16": Tolerance(atol=5e-2, rtol=5e-2)}

    @classmethod
    def default_outputs(cls, spec: TaskSpec) -> int:
        return 1

    def loss(self, pred: Tensor, batch: dict[str, Tensor]) -> Tensor:
        target = batch[self.target_key]
        valid = target > 0
        if not valid.any():
            return pred.sum() * 0.0
        p, t = pred[valid], target[valid]
        return F.l1_loss(p, t) if self.spec.loss == "l1" else F.mse_loss(p, t)

    def meter(self) -> Meter:
        return DepthMeter()
