"""Trivial baseline predictors, scored with the same meters as the model.

Statistics come from the training split: segmentation predicts the majority class, depth the
mean valid depth, normals the (normalised) mean normal and each attribute its majority value.
They are plain numbers, stored in the checkpoint (``extra["baseline"]``) so ``eval`` can show
them without reading the training split again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from mtlexport.tasks.base import Task
from mtlexport.tasks.segmentation import IGNORE_INDEX


def _seg(task: Task, acc: dict[str, Any], b: dict[str, Tensor]) -> None:
    counts = acc.setdefault("class_counts", torch.zeros(task.spec.num_outputs, dtype=torch.int64))
    t = b[task.target_key].reshape(-1).long()
    t = t[(t != IGNORE_INDEX) & (t >= 0) & (t < counts.numel())]
    counts += torch.bincount(t, minlength=counts.numel())


def _depth(task: Task, acc: dict[str, Any], b: dict[str, Tensor]) -> None:
    d = b[task.target_key].double()
    valid = d > 0
    acc["sum"] = acc.get("sum", 0.0) + float(d[valid].sum())
    acc["count"] = acc.get("count", 0) + int(valid.sum())


def _normals(task: Task, acc: dict[str, Any], b: dict[str, Tensor]) -> None:
    n = b[task.target_key].double()
    valid = n.abs().sum(dim=1, keepdim=True) > 0
    acc["sum"] = acc.get("sum", 0) + (n * valid).sum(dim=(0, 2, 3))


def _attrs(task: Task, acc: dict[str, Any], b: dict[str, Tensor]) -> None:
    names = task.target_keys()
    acc["total"] = acc.get("total", 0) + int(b[names[0]].numel())
    pos = acc.setdefault("positives", [0] * len(names))
    for i, n in enumerate(names):
        pos[i] += int((b[n] > 0.5).sum())


def _finish(kind: str, acc: dict[str, Any]) -> dict[str, Any]:
    if kind == "segmentation":
        return {"class_counts": acc["class_counts"].tolist()}
    if kind == "depth":
        return {"mean_depth": acc["sum"] / max(acc["count"], 1)}
    if kind == "normals":
        return {"mean_normal": torch.as_tensor(acc["sum"], dtype=torch.float64).reshape(3).tolist()}
    return {"positives": acc["positives"], "total": acc["total"]}


_UPDATES = {"segmentation": _seg, "depth": _depth, "normals": _normals, "attributes": _attrs}


def fit_baselines(tasks: Mapping[str, Task], batches: Iterable[dict[str, Tensor]]) -> dict[str, dict[str, Any]]:
    """Statistics of every supported task over ``batches`` (one pass, labels only)."""
    supported = {name: t for name, t in tasks.items() if t.type_name in _UPDATES}
    accs: dict[str, dict[str, Any]] = {name: {} for name in supported}
    seen = False
    for batch in batches:
        seen = True
        for name, task in supported.items():
            _UPDATES[task.type_name](task, accs[name], batch)
    if not seen:
        return {}
    return {name: _finish(task.type_name, accs[name]) for name, task in supported.items()}


class BaselinePredictor(nn.Module):
    """Predicts the same constant output for every image; outputs shaped like the model's."""

    def __init__(self, tasks: Mapping[str, Task], stats: Mapping[str, Mapping[str, Any]]) -> None:
        super().__init__()
        self.types = {name: t.type_name for name, t in tasks.items() if name in stats}
        self.constants: dict[str, Tensor] = {}
        for name, kind in self.types.items():
            s = stats[name]
            if kind == "segmentation":
                counts = torch.tensor(s["class_counts"], dtype=torch.float32)
                value = torch.zeros_like(counts)
                value[int(counts.argmax())] = 1.0
            elif kind == "depth":
                value = torch.tensor([float(s["mean_depth"])])
            elif kind == "normals":
                value = torch.nn.functional.normalize(torch.tensor(s["mean_normal"], dtype=torch.float32), dim=0)
            else:
                pos = torch.tensor(s["positives"], dtype=torch.float32)
                value = torch.where(2 * pos > float(s["total"]), 1.0, -1.0)
            self.constants[name] = value

    @property
    def task_names(self) -> tuple[str, ...]:
        """Tasks this baseline predicts."""
        return tuple(self.types)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        b, _, h, w = images.shape
        out = {}
        for name, value in self.constants.items():
            v = value.to(images.device)
            if self.types[name] == "attributes":
                out[name] = v.expand(b, -1)
            else:
                out[name] = v.view(1, -1, 1, 1).expand(b, -1, h, w)
        return out
