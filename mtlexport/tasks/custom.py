"""A task of your own: labels under the task's name, your loss, the generic export tolerances.

``type: custom`` needs ``loss: package.module:function`` (``function(pred, batch) -> scalar``;
``batch`` is the whole batch dict, labels included). It has no metrics of its own: validation
reports its loss (monitor it as ``train.monitor: <task>.loss``).
"""

from __future__ import annotations

from torch import Tensor

from mtlexport.errors import ConfigError
from mtlexport.models.spec import TaskSpec
from mtlexport.tasks.base import TASKS, Meter, Task, Tolerance


class NoMetrics(Meter):
    """A custom task's meter: nothing to accumulate (its loss is reported by validation)."""

    def update(self, pred: Tensor, batch: dict[str, Tensor]) -> None:
        return None

    def compute(self) -> dict[str, float]:
        return {}


@TASKS.register("custom")
class CustomTask(Task):
    """Any output; the loss comes from ``loss: package.module:function``."""

    type_name = "custom"
    dense = False
    target_key = ""
    metrics: dict[str, bool] = {}
    primary_metric = "loss"
    tolerances = {"fp32": Tolerance(atol=1e-3, rtol=1e-3), "fp16": Tolerance(atol=5e-2, rtol=5e-2)}
    losses = ("none",)

    @classmethod
    def default_outputs(cls, spec: TaskSpec) -> int:
        return 1

    def target_keys(self) -> tuple[str, ...]:
        return (self.spec.name,)

    def loss(self, pred: Tensor, batch: dict[str, Tensor]) -> Tensor:
        raise ConfigError(f"task {self.spec.name!r} is of type custom and has no built-in loss; set its "
                          "loss: package.module:function (function(pred, batch) -> scalar tensor)")

    def meter(self) -> Meter:
        return NoMetrics()
