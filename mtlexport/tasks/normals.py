"""Surface normals: 1 - cosine on unit vectors over valid pixels; angle error statistics."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from mtlexport.models.spec import TaskSpec
from mtlexport.tasks.base import TASKS, Meter, Task, Tolerance

THRESHOLDS_DEG = (11.25, 22.5, 30.0)


def valid_normals(target: Tensor) -> Tensor:
    """Mask (B x H x W) of pixels whose target normal is not the all-zero 'invalid' vector."""
    return target.abs().sum(dim=1) > 0


class NormalsMeter(Meter):
    """Keeps every valid pixel's angle error (float32) so the median is exact over the split."""

    def __init__(self) -> None:
        self.angles: list[Tensor] = []
        self.cos_sum = 0.0

    def update(self, pred: Tensor, batch: dict[str, Tensor]) -> None:
        target = batch["normals"].detach().cpu().double()
        p = F.normalize(pred.detach().cpu().double(), dim=1)
        t = F.normalize(target, dim=1)
        valid = valid_normals(target)
        cos = (p * t).sum(dim=1)[valid].clamp(-1.0, 1.0)
        self.cos_sum += float(cos.sum())
        self.angles.append(torch.rad2deg(torch.acos(cos)).float())

    def compute(self) -> dict[str, float]:
        angles = torch.cat(self.angles) if self.angles else torch.zeros(0)
        n = angles.numel()
        if n == 0:
            return {"mean_angle": math.nan, "median_angle": math.nan, "within_11_25": 0.0,
                    "within_22_5": 0.0, "within_30": 0.0, "mean_cos": math.nan}
        srt = angles.double().sort().values
        median = float(srt[n // 2]) if n % 2 else float((srt[n // 2 - 1] + srt[n // 2]) / 2)
        out = {"mean_angle": float(srt.mean()), "median_angle": median}
        for thr, key in zip(THRESHOLDS_DEG, ("within_11_25", "within_22_5", "within_30")):
            out[key] = float((srt < thr).double().mean())
        out["mean_cos"] = self.cos_sum / n
        return out


@TASKS.register("normals")
class NormalsTask(Task):
    """Per-pixel unit surface normal; three output channels (normalised before loss and metrics)."""

    type_name = "normals"
    dense = True
    target_key = "normals"
    metrics = {"mean_angle": False, "median_angle": False, "within_11_25": True,
               "within_22_5": True, "within_30": True, "mean_cos": True}
    primary_metric = "mean_angle"
    losses = ("cosine",)
    tolerances = {"fp32": Tolerance(atol=1e-3, rtol=1e-3), "fp16": Tolerance(atol=5e-2, rtol=5e-2)}

    @classmethod
    def default_outputs(cls, spec: TaskSpec) -> int:
        return 3

    def loss(self, pred: Tensor, batch: dict[str, Tensor]) -> Tensor:
        target = batch[self.target_key]
        valid = valid_normals(target)
        if not valid.any():
            return pred.sum() * 0.0
        cos = (F.normalize(pred, dim=1) * F.normalize(target, dim=1)).sum(dim=1)
        return (1.0 - cos[valid]).mean()

    def meter(self) -> Meter:
        return NormalsMeter()
