"""Loss weighting: how per-task losses combine into the one scalar that is minimised.

``uncertainty`` is Kendall, Gal & Cipolla (CVPR 2018) in the form the Less-is-More paper uses:
``sum_t exp(-s_t) * L_t + s_t`` with one learnable log-variance ``s_t`` per task. Unlike the
reference code, the ``s_t`` are real parameters handed to the optimizer (plain AdamW group,
never group-sparse). ``fixed`` uses constant weights. Add a scheme by subclassing
``LossWeighting`` and registering it in ``LOSS_WEIGHTINGS``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from mtlexport.registry import Registry
from mtlexport.train.config import LossWeightingConfig


class LossWeighting(nn.Module, ABC):
    """Combines ``{task: loss}`` into a scalar; ``weights()`` gives the current task weights."""

    def __init__(self, task_names: Sequence[str]) -> None:
        super().__init__()
        self.task_names = tuple(task_names)

    @abstractmethod
    def forward(self, losses: Mapping[str, Tensor]) -> Tensor:
        """The combined loss."""

    @abstractmethod
    def weights(self) -> dict[str, float]:
        """Current multiplier of each task's loss."""


LOSS_WEIGHTINGS: Registry[type[LossWeighting]] = Registry("loss weighting")


@LOSS_WEIGHTINGS.register("uncertainty")
class UncertaintyWeighting(LossWeighting):
    """``sum_t exp(-s_t) * L_t + s_t``; ``log_vars`` holds the learnable ``s_t``."""

    def __init__(self, task_names: Sequence[str], init_log_var: float = 0.0) -> None:
        super().__init__(task_names)
        self.log_vars = nn.Parameter(torch.full((len(self.task_names),), float(init_log_var)))

    def forward(self, losses: Mapping[str, Tensor]) -> Tensor:
        stacked = torch.stack([losses[name] for name in self.task_names])
        s = self.log_vars.to(stacked.dtype)
        return (torch.exp(-s) * stacked + s).sum()

    def weights(self) -> dict[str, float]:
        w = torch.exp(-self.log_vars.detach()).cpu().tolist()
        return dict(zip(self.task_names, w))


@LOSS_WEIGHTINGS.register("fixed")
class FixedWeighting(LossWeighting):
    """``sum_t w_t * L_t`` with constant weights (1 for tasks not listed)."""

    def __init__(self, task_names: Sequence[str], weights: Mapping[str, float] | None = None) -> None:
        super().__init__(task_names)
        weights = dict(weights or {})
        self.register_buffer("task_weights", torch.tensor([float(weights.get(n, 1.0)) for n in self.task_names]))

    def forward(self, losses: Mapping[str, Tensor]) -> Tensor:
        stacked = torch.stack([losses[name] for name in self.task_names])
        return (self.task_weights.to(stacked.dtype) * stacked).sum()

    def weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, self.task_weights.cpu().tolist()))


def build_loss_weighting(config: LossWeightingConfig, task_names: Sequence[str]) -> LossWeighting:
    """The weighting module ``config`` describes, for ``task_names`` in output order."""
    cls = LOSS_WEIGHTINGS.get(config.name)
    if cls is UncertaintyWeighting:
        return UncertaintyWeighting(task_names, config.init_log_var)
    if cls is FixedWeighting:
        return FixedWeighting(task_names, config.weights)
    return cls(task_names)
