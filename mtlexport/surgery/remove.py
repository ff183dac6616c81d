"""Physical removal: fold constants, then prune every planned group with torch-pruning.

Before a group is pruned, the group torch-pruning builds for the chosen indices is checked to
hold exactly the layers the analysis saw; after all removals every layer's parameters are
checked against its declared shape, so a corrupted layer is never handed on.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mtlexport.errors import VerificationError
from mtlexport.surgery.analysis import Fold
from mtlexport.surgery.policy import GroupPlan, RemovalPlan


def apply_plan(dg: Any, plan: RemovalPlan) -> None:
    """Remove the planned channels from the traced model in place."""
    for gp in plan.groups:
        for fold in gp.folds:
            fold_constant(fold)
        prune_group(dg, gp)


def fold_constant(fold: Fold) -> None:
    """Add a constant input channel's contribution to the consumer's bias or following norm."""
    module = fold.module
    with torch.no_grad():
        w = module.weight.detach().double()
        column = w[:, fold.channel].reshape(w.shape[0], -1).sum(dim=1) * fold.value
        if fold.norm is not None:
            # bn(y + d) == bn'(y) with running_mean' = running_mean - d
            fold.norm.running_mean.sub_(column.to(fold.norm.running_mean.dtype))
        else:
            module.bias.add_(column.to(module.bias.dtype))


def prune_group(dg: Any, gp: GroupPlan) -> None:
    """Prune ``gp.remove`` from its group after checking torch-pruning couples the same layers."""
    group = gp.group
    tp_group = dg.get_pruning_group(group.root_module, group.root_fn, list(gp.remove))
    chosen = set(gp.remove)
    expected = {
        (id(m.module), m.fn): {i for i, r in zip(m.idxs, m.root_idxs) if r in chosen}
        for m in group.members if m.role in ("producer", "consumer", "depthwise", "norm")
    }
    for item in tp_group:
        module = item.dep.target.module
        if not isinstance(module, (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)):
            continue
        want = expected.get((id(module), item.dep.handler))
        if want is None or set(int(i) for i in item.idxs) != want:
            raise VerificationError(
                f"group rooted at {group.root}: torch-pruning maps the removal differently from the "
                f"analysis at a layer of type {type(module).__name__}; refusing to prune, nothing was written"
            )
    tp_group.prune(record_history=False)


def check_layers(model: nn.Module) -> None:
    """Raise VerificationError naming the first layer whose parameters do not match its shape."""
    for name, mod in model.named_modules():
        problem = _layer_problem(mod)
        if problem:
            raise VerificationError(f"layer {name!r} is inconsistent after surgery ({problem}); nothing was written")


def _layer_problem(mod: nn.Module) -> str:
    if isinstance(mod, nn.Conv2d):
        if mod.in_channels < 1 or mod.out_channels < 1:
            return "no channels left"
        if mod.in_channels % mod.groups or mod.out_channels % mod.groups:
            return f"groups={mod.groups} does not divide {mod.in_channels}->{mod.out_channels}"
        want = (mod.out_channels, mod.in_channels // mod.groups, *mod.kernel_size)
        if tuple(mod.weight.shape) != want:
            return f"weight {tuple(mod.weight.shape)} != {want}"
        if mod.bias is not None and tuple(mod.bias.shape) != (mod.out_channels,):
            return "bias size"
    elif isinstance(mod, nn.Linear):
        if tuple(mod.weight.shape) != (mod.out_features, mod.in_features) or min(mod.weight.shape) < 1:
            return f"weight {tuple(mod.weight.shape)} != {(mod.out_features, mod.in_features)}"
        if mod.bias is not None and tuple(mod.bias.shape) != (mod.out_features,):
            return "bias size"
    elif isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
        n = mod.num_features
        for t in (mod.weight, mod.bias, mod.running_mean, mod.running_var):
            if t is not None and tuple(t.shape) != (n,):
                return f"parameter of size {tuple(t.shape)} != ({n},)"
    return ""
