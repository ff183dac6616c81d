"""Semantic segmentation: cross-entropy with an ignore index; mIoU and pixel accuracy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mtlexport.data.labels import IGNORE_INDEX
from mtlexport.tasks.base import TASKS, Meter, Task, Tolerance


class ConfusionMeter(Meter):
    """Confusion matrix over every valid pixel of a split (rows: target, columns: prediction)."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: Tensor, batch: dict[str, Tensor]) -> None:
        target = batch["segmentation"].detach().cpu().reshape(-1).long()
        labels = pred.detach().argmax(dim=1).cpu().reshape(-1)
        valid = (target != self.ignore_index) & (target >= 0) & (target < self.num_classes)
        idx = target[valid] * self.num_classes + labels[valid]
        self.matrix += torch.bincount(idx, minlength=self.num_classes**2).reshape(self.num_classes, self.num_classes)

    def compute(self) -> dict[str, float]:
        m = self.matrix.double()
        tp = m.diag()
        union = m.sum(0) + m.sum(1) - tp
        present = union > 0
        iou = tp[present] / union[present]
        total = m.sum()
        return {
            "miou": float(iou.mean()) if present.any() else 0.0,
            "pixel_acc": float(tp.sum() / total) if total > 0 else 0.0,
        }


@TASKS.register("segmentation")
class SegmentationTask(Task):
    """Per-pixel classification; ``num_outputs`` is the number of classes."""

    type_name = "segmentation"
    dense = True
    target_key = "segmentation"
    metrics = {"miou": True, "pixel_acc": True}
    primary_metric = "miou"
    tolerances = {"fp32": Tolerance(atol=1e-3, rtol=1e-3), "fp16": Tolerance(atol=5e-2, rtol=5e-2)}

    def loss(self, pred: Tensor, batch: dict[str, Tensor]) -> Tensor:
        target = batch[self.target_key].long()
        if not (target != IGNORE_INDEX).any():
            return pred.sum() * 0.0
        return F.cross_entropy(pred, target, ignore_index=IGNORE_INDEX)

    def meter(self) -> Meter:
        return ConfusionMeter(self.spec.num_outputs)
