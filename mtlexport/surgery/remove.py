"""Physical removal: fold constants, then prune every planned group with torch-pruning.

Before a group is pruned, the group torch-pruning builds for the chosen indices is checked to
hold exactly the layers and channels the analysis saw. The analysis indexes the dense model;
once an earlier group is pruned, layers it shares (a concatenation read in several places, a
dense block) hold fewer channels, so ``Survivors`` maps each analysed index to where that channel
sits now. After all removals every layer's parameters are checked against its declared shape, so
a corrupted layer is never handed on.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, NoReturn

import torch
from torch import nn

from mtlexport.errors import VerificationError
from mtlexport.surgery.analysis import Fold
from mtlexport.surgery.graph import Member
from mtlexport.surgery.policy import GroupPlan, RemovalPlan

_LAYERS = ("producer", "consumer", "depthwise", "norm")


class Survivors:
    """Per layer dimension, the dense-model channel indices still present (ascending)."""

    def __init__(self) -> None:
        self._left: dict[tuple[int, str], list[int]] = {}

    @staticmethod
    def key(mem: Member) -> tuple[int, str]:
        # Depthwise convolutions and norms lose a channel on every side at once.
        side = {"producer": "out", "consumer": "in"}.get(mem.role, "all")
        return id(mem.module), side

    def current(self, mem: Member, original: set[int]) -> set[int] | None:
        """Where ``original`` channels of ``mem`` sit now; None if one was already removed.

        Call before the group is pruned: a dimension seen for the first time is still dense."""
        left = self._left.setdefault(self.key(mem), list(range(_size(mem))))
        out: set[int] = set()
        for i in original:
            pos = bisect_left(left, i)
            if pos == len(left) or left[pos] != i:
                return None
            out.add(pos)
        return out

    def remove(self, mem: Member, original: set[int]) -> None:
        """Record that ``original`` channels (dense indices) of ``mem`` are gone."""
        key = self.key(mem)
        self._left[key] = [i for i in self._left[key] if i not in original]


def _size(mem: Member) -> int:
    mod = mem.module
    if isinstance(mod, nn.Conv2d):
        return mod.in_channels if mem.role == "consumer" else mod.out_channels
    if isinstance(mod, nn.Linear):
        return mod.in_features if mem.role == "consumer" else mod.out_features
    return mod.num_features


def apply_plan(dg: Any, plan: RemovalPlan) -> None:
    """Remove the planned channels from the traced model in place."""
    survivors = Survivors()
    for gp in plan.groups:
        for fold in gp.folds:
            fold_constant(fold)
        prune_group(dg, gp, survivors)


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


def prune_group(dg: Any, gp: GroupPlan, survivors: Survivors | None = None) -> None:
    """Prune ``gp.remove`` from its group after checking torch-pruning couples the same layers
    and channels as the analysis (``survivors``: what earlier groups removed, see ``Survivors``)."""
    survivors = survivors or Survivors()
    group = gp.group
    chosen = set(gp.remove)
    original: dict[tuple[int, Any], tuple[Member, set[int]]] = {}
    for m in group.members:
        if m.role in _LAYERS:
            mem, idxs = original.get((id(m.module), m.fn), (m, set()))
            idxs.update(i for i, r in zip(m.idxs, m.root_idxs) if r in chosen)
            original[(id(m.module), m.fn)] = (mem, idxs)
    expected: dict[tuple[int, Any], set[int] | None] = {
        key: survivors.current(mem, idxs) for key, (mem, idxs) in original.items()}
    root = next((mem for mem, _ in original.values()
                 if mem.module is group.root_module and mem.fn == group.root_fn), None)
    root_idxs = survivors.current(root, chosen) if root is not None else chosen
    if root_idxs is None:
        _refuse(group.root, type(group.root_module).__name__)
    tp_group = dg.get_pruning_group(group.root_module, group.root_fn, sorted(root_idxs))
    found: dict[tuple[int, Any], set[int]] = {}
    for item in tp_group:
        module = item.dep.target.module
        if isinstance(module, (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)):
            found.setdefault((id(module), item.dep.handler), set()).update(int(i) for i in item.idxs)
            if (id(module), item.dep.handler) not in expected:
                _refuse(group.root, type(module).__name__)
    for key, want in expected.items():
        if want is None or found.get(key, set()) != want:
            _refuse(group.root, type(original[key][0].module).__name__)
    tp_group.prune(record_history=False)
    for mem, idxs in original.values():
        survivors.remove(mem, idxs)


def _refuse(root: str, kind: str) -> NoReturn:
    raise VerificationError(
        f"group rooted at {root}: torch-pruning maps the removal differently from the "
        f"analysis at a layer of type {kind}; refusing to prune, nothing was written"
    )


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
