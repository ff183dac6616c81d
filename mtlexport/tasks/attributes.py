"""Binary attributes: BCE-with-logits on raw logits (no sigmoid before it); accuracy and F1."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mtlexport.errors import ConfigError
from mtlexport.models.spec import TaskSpec
from mtlexport.tasks.base import TASKS, Meter, Task, Tolerance


class BinaryMeter(Meter):
    """Per-attribute confusion counts at logit 0 (probability 0.5) over a split."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.counts = torch.zeros(len(names), 4, dtype=torch.int64)  # tp, fp, fn, tn

    def update(self, pred: Tensor, batch: dict[str, Tensor]) -> None:
        target = torch.stack([batch[n].detach().cpu().reshape(-1) for n in self.names], dim=1) > 0.5
        guess = pred.detach().cpu().reshape(target.shape) > 0
        self.counts[:, 0] += (guess & target).sum(0)
        self.counts[:, 1] += (guess & ~target).sum(0)
        self.counts[:, 2] += (~guess & target).sum(0)
        self.counts[:, 3] += (~guess & ~target).sum(0)

    def compute(self) -> dict[str, float]:
        c = self.counts.double()
        tp, fp, fn, tn = c.unbind(1)
        total = c.sum(1).clamp_min(1)
        acc = (tp + tn) / total
        denom = 2 * tp + fp + fn
        f1 = torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.zeros_like(tp))
        out = {"accuracy": float(acc.mean()), "f1": float(f1.mean())}
        if len(self.names) > 1:
            for i, name in enumerate(self.names):
                out[f"accuracy_{name}"] = float(acc[i])
                out[f"f1_{name}"] = float(f1[i])
        return out


@TASKS.register("attributes")
class AttributesTask(Task):
    """Image-level binary attributes; one logit per name in ``spec.attributes``."""

    type_name = "attributes"
    dense = False
    target_key = "attributes"
    metrics = {"accuracy": True, "f1": True}
    primary_metric = "accuracy"
    losses = ("bce",)
    tolerances = {"fp32": Tolerance(atol=1e-3, rtol=1e-3), "fp16": Tolerance(atol=5e-2, rtol=5e-2)}

    @classmethod
    def default_outputs(cls, spec: TaskSpec) -> int:
        if not spec.attributes:
            raise ConfigError(f"task {spec.name!r} (attributes) needs a list of attribute names in 'attributes'")
        return len(spec.attributes)

    @classmethod
    def resolve(cls, spec: TaskSpec) -> TaskSpec:
        resolved = super().resolve(spec)
        if resolved.attributes and resolved.num_outputs != len(resolved.attributes):
            raise ConfigError(
                f"task {spec.name!r}: num_outputs {resolved.num_outputs} does not match "
                f"{len(resolved.attributes)} attribute names"
            )
        return resolved

    def target_keys(self) -> tuple[str, ...]:
        return self.spec.attributes

    def loss(self, pred: Tensor, batch: dict[str, Tensor]) -> Tensor:
        target = torch.stack([batch[n].reshape(-1) for n in self.spec.attributes], dim=1).to(pred.dtype)
        return F.binary_cross_entropy_with_logits(pred, target)

    def meter(self) -> Meter:
        return BinaryMeter(self.spec.attributes)
