"""The optimizer seam: ``mtlexport.sparsity.build_optimizer`` over ``split_param_groups``.

Backbone conv weights in ``group_scope`` form the group-lasso groups (used by proxadam /
proxsgd, plain for adamw); everything else is a plain group. The loss-weighting parameters get
their own plain group without weight decay: they are log-variances, and decaying them towards
0 would bias the task weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn
from torch.optim import Optimizer

from mtlexport.train.config import OptimizerConfig

if TYPE_CHECKING:
    from mtlexport.sparsity.coupled import GroupStructure


def build_training_optimizer(config: OptimizerConfig, model: nn.Module, weighting: nn.Module,
                             structure: GroupStructure | None = None) -> Optimizer:
    """The optimizer ``config`` names over ``model`` and the loss-weighting parameters.

    With a ``structure`` (see ``mtlexport.sparsity.coupled``) its groups form the one
    group-lasso param group; otherwise the grouped convs of ``config.group_scope`` do.
    """
    from mtlexport.sparsity import build_optimizer, split_param_groups

    extra = [p for p in weighting.parameters() if p.requires_grad]
    groups = split_param_groups(model, config.group_scope, structure=structure)
    if extra:
        groups.append({"params": extra, "group_lasso": False, "weight_decay": 0.0})
    optimizer = build_optimizer(
        config.name, groups, lr=config.lr, weight_decay=config.weight_decay, betas=config.betas,
        eps=config.eps, momentum=config.momentum, lam=config.lam, prox=config.prox,
    )
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    return optimizer


def make_controller(config: OptimizerConfig, optimizer: Optimizer, total_steps: int, macs: Any,
                    structure: GroupStructure | None) -> Any:
    """The sparsity controller (target and freezing) of a proximal optimizer."""
    from mtlexport.sparsity.control import ControllerSettings, SparsityController

    settings = ControllerSettings(target_macs=config.target_macs, target_group_sparsity=config.target_group_sparsity,
                                  target_at=config.target_at, freeze_at=config.freeze_at, lam=config.lam)
    channels = macs.channels_of(structure) if macs is not None and structure is not None and (
        structure.grouping == "coupled") else None
    return SparsityController(settings, optimizer, total_steps, macs, group_channels=channels)
