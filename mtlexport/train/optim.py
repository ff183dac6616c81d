"""The optimizer seam: ``mtlexport.sparsity.build_optimizer`` over ``split_param_groups``.

Backbone conv weights in ``group_scope`` form the group-lasso groups (used by proxadam /
proxsgd, plain for adamw); everything else is a plain group. The loss-weighting parameters get
their own plain group without weight decay: they are log-variances, and decaying them towards
0 would bias the task weights.
"""

from __future__ import annotations

from torch import nn
from torch.optim import Optimizer

from mtlexport.train.config import OptimizerConfig


def build_training_optimizer(config: OptimizerConfig, model: nn.Module, weighting: nn.Module) -> Optimizer:
    """The optimizer ``config`` names over ``model`` and the loss-weighting parameters."""
    from mtlexport.sparsity import build_optimizer, split_param_groups

    extra = [p for p in weighting.parameters() if p.requires_grad]
    groups = split_param_groups(model, config.group_scope)
    if extra:
        groups.append({"params": extra, "group_lasso": False, "weight_decay": 0.0})
    optimizer = build_optimizer(
        config.name, groups, lr=config.lr, weight_decay=config.weight_decay, betas=config.betas,
        eps=config.eps, momentum=config.momentum, lam=config.lam, prox=config.prox,
    )
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    return optimizer
