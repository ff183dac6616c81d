"""Which parameters form channel groups, and the optimizer param groups built from them.

One group per input channel ``c`` of every ``nn.Conv2d`` weight ``W`` (O x I x kh x kw) in the
chosen scope: ``W[:, c]``, of size ``n_g = O*kh*kw`` and penalty weight ``sqrt(n_g)``
(layout ``"in_channel"``). A depthwise conv (``groups == in == out``, weight C x 1 x kh x kw)
has one group per channel, ``W[c]`` of size ``kh*kw`` (layout ``"depthwise"``).

Other grouped convs (``1 < groups < in_channels``, or depthwise with a channel multiplier) are
left ungrouped and get plain AdamW: input channel ``c`` only feeds the filters of its own conv
group, so a dead channel could only be removed if the *same* position died in every conv
group; independent per-channel zeros would not shrink the layer and the surgeon must not cut
such layers asymmetrically. BatchNorm, biases, linear layers, heads (unless ``scope="all"``)
and loss-weighting parameters are never grouped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from torch import nn

from mtlexport.errors import ConfigError

__all__ = [
    "LAYOUTS",
    "SCOPES",
    "GroupedParam",
    "classify_conv",
    "collect_grouped_params",
    "split_param_groups",
]

#: Layout name -> the weight dimension that indexes the groups.
LAYOUTS: dict[str, int] = {"in_channel": 1, "depthwise": 0}
SCOPES = ("backbone", "all")


@dataclass(frozen=True, eq=False)
class GroupedParam:
    """A conv weight split into channel groups for the group lasso penalty."""

    name: str  # qualified module name, e.g. "backbone.layer1.0.conv1"
    param: nn.Parameter
    layout: str  # "in_channel" or "depthwise"
    num_groups: int
    group_size: int  # n_g, the same for every group of this weight

    @property
    def group_dim(self) -> int:
        """The dimension of ``param`` that indexes the groups."""
        return LAYOUTS[self.layout]

    @property
    def group_weight(self) -> float:
        """The penalty weight ``sqrt(n_g)``."""
        return math.sqrt(self.group_size)


def classify_conv(conv: nn.Conv2d) -> str | None:
    """The group layout of ``conv``'s weight, or ``None`` when it is not grouped."""
    if conv.groups == 1:
        return "in_channel"
    if conv.groups == conv.in_channels == conv.out_channels:
        return "depthwise"
    return None


def _scope_modules(model: nn.Module, scope: str) -> set[int] | None:
    """Ids of the modules in scope, or ``None`` for the whole model."""
    if scope not in SCOPES:
        raise ConfigError(f"unknown sparsity scope {scope!r}; valid scopes: {', '.join(SCOPES)}")
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, nn.Module):
        return None  # a plain nn.Module: every conv is in scope
    roots = [backbone]
    heads = getattr(model, "heads", None)
    if scope == "all" and isinstance(heads, nn.Module):
        roots.append(heads)
    return {id(m) for root in roots for m in root.modules()}


def collect_grouped_params(model: nn.Module, scope: str = "backbone") -> list[GroupedParam]:
    """Every grouped conv weight of ``model`` in ``scope`` ("backbone" or "all"), in module order.

    ``scope="backbone"`` takes the convs inside ``model.backbone`` (stem and downsample convs
    included); ``"all"`` adds those inside ``model.heads``. A model without a ``backbone``
    attribute has all of its convs in scope either way. Frozen weights are skipped.
    """
    in_scope = _scope_modules(model, scope)
    seen: set[int] = set()
    grouped: list[GroupedParam] = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Conv2d) or (in_scope is not None and id(module) not in in_scope):
            continue
        weight = module.weight
        layout = classify_conv(module)
        if layout is None or not weight.requires_grad or id(weight) in seen:
            continue
        seen.add(id(weight))
        num_groups = weight.shape[LAYOUTS[layout]]
        grouped.append(GroupedParam(name, weight, layout, num_groups, weight.numel() // num_groups))
    return grouped


def split_param_groups(
    model: nn.Module, scope: str = "backbone", extra_params: Iterable[nn.Parameter] = (), *,
    structure: Any = None,
) -> list[dict]:
    """Optimizer param groups: the group-lasso groups, then one plain group.

    Without ``structure``, grouped conv weights go to ``{"params": [...], "group_lasso": True,
    "layout": layout}``, one param group per layout. With a ``GroupStructure`` (channel or
    coupled groups, ``mtlexport.sparsity.coupled``) its parameters form one param group of
    layout ``"segments"``. Every other trainable parameter of ``model`` and of ``extra_params``
    (e.g. the uncertainty weights of the loss) goes to ``{"params": [...], "group_lasso": False}``.
    Each trainable parameter appears exactly once; empty groups are left out.
    """
    if structure is not None:
        lasso = structure.param_group(model)
        groups: list[dict] = [lasso] if lasso["params"] else []
        taken = {id(p) for p in lasso["params"]}
    else:
        grouped = collect_grouped_params(model, scope)
        taken = {id(g.param) for g in grouped}
        by_layout: dict[str, list[nn.Parameter]] = {}
        for g in grouped:
            by_layout.setdefault(g.layout, []).append(g.param)
        groups = [{"params": params, "group_lasso": True, "layout": layout} for layout, params in by_layout.items()]
    plain: list[nn.Parameter] = []
    for p in [*model.parameters(), *extra_params]:
        if p.requires_grad and id(p) not in taken:
            taken.add(id(p))
            plain.append(p)
    if plain:
        groups.append({"params": plain, "group_lasso": False})
    return groups
