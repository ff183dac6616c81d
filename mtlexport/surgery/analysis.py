"""Which channels of a coupled group are provably dead, and which are foldable constants.

Dead: every consumer's input slice for the channel is exactly zero, so removing the channel
does not change any output, whatever its producers compute.

Constant (``--fold-constants``): the channel's source filter is exactly zero, so it carries
``act(bn(bias))`` everywhere. Removing it is exact only after adding that constant's
contribution to each consumer's bias (or, for a bias-free consumer followed by a batch norm, to
that norm's running mean), and only when every consumer sees the constant at every position
(no zero padding, no residual sum, no concatenation). Otherwise the channel is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from mtlexport.surgery.graph import ChannelGroup, Member

# Single-input ops that map a constant map to a constant map.
_CONSTANT_PRESERVING = ("MaxPool2DWithIndicesBackward0", "AdaptiveAvgPool2DBackward0",
                        "AdaptiveMaxPool2DBackward0", "MeanBackward1", "ExpandBackward0", "CloneBackward0")


@dataclass(frozen=True)
class Fold:
    """Channel ``channel`` reaches ``consumer`` (input index ``channel``) as the constant ``value``."""

    consumer: str
    channel: int
    value: float
    module: Any = field(default=None, compare=False, repr=False)
    norm: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class GroupAnalysis:
    """Removal candidates of one group: ``dead`` and (fold mode) ``constant`` root channels."""

    group: ChannelGroup
    dead: tuple[int, ...]
    constant: tuple[int, ...] = ()
    folds: tuple[Fold, ...] = ()
    unfoldable: int = 0


def zero_input_slices(module: nn.Module) -> Tensor:
    """Boolean per input channel of a conv / linear layer: True where its weight slice is all zero."""
    w = module.weight.detach()
    if isinstance(module, nn.Linear):
        return ~(w != 0).any(dim=0)
    groups = module.groups
    out_per, in_per = w.shape[0] // groups, w.shape[1]
    live = (w.reshape(groups, out_per, in_per, -1) != 0).any(dim=3).any(dim=1)
    return ~live.reshape(groups * in_per)


def zero_output_filters(module: nn.Module) -> Tensor:
    """Boolean per output channel: True where the filter (weight row) is all zero."""
    w = module.weight.detach()
    return ~(w.reshape(w.shape[0], -1) != 0).any(dim=1)


def dead_channels(group: ChannelGroup) -> tuple[int, ...]:
    """Root channels that every consumer of the group reads through an all-zero weight slice
    (none when the group's indices are ``unmapped``: they say nothing about the weights)."""
    consumers = group.by_role("consumer")
    if not consumers or group.unmapped:
        return ()
    live: set[int] = set()
    for mem in consumers:
        zero = zero_input_slices(mem.module).tolist()
        live.update(root for idx, root in zip(mem.idxs, mem.root_idxs) if not zero[idx])
    return tuple(c for c in range(group.width) if c not in live)


def analyse_group(dg: Any, group: ChannelGroup, fold_constants: bool = False) -> GroupAnalysis:
    """Dead channels of ``group`` and, with ``fold_constants``, foldable constant channels."""
    dead = dead_channels(group)
    if not fold_constants or group.unsupported or group.grouped or group.observable:
        return GroupAnalysis(group=group, dead=dead)
    source = _constant_source(group)
    if source is None:
        return GroupAnalysis(group=group, dead=dead)
    constant_like = _zero_filter_channels(group) - set(dead)
    zero = zero_output_filters(source.module).tolist()
    candidates = [c for c in range(group.width) if zero[c] and c not in dead]
    reached = _walk_constants(dg, source) if candidates else None
    consumers = {id(m.module) for m in group.by_role("consumer")}
    if reached is None or {id(mod) for mod, _, _ in reached} != consumers:
        return GroupAnalysis(group=group, dead=dead, unfoldable=len(constant_like))
    folds = [Fold(consumer=_name(group, mod), channel=c, value=float(values[c]), module=mod, norm=norm)
             for mod, norm, values in reached for c in candidates]
    return GroupAnalysis(group=group, dead=dead, constant=tuple(candidates), folds=tuple(folds),
                         unfoldable=len(constant_like - set(candidates)))


def _zero_filter_channels(group: ChannelGroup) -> set[int]:
    """Channels that some single source (the producer, or a depthwise stage) outputs as a constant."""
    producers = group.by_role("producer")
    sources = group.by_role("depthwise") + (producers if len(producers) == 1 else [])
    out: set[int] = set()
    for mem in sources:
        zero = zero_output_filters(mem.module).tolist()
        out.update(r for i, r in zip(mem.idxs, mem.root_idxs) if zero[i])
    return out


def _constant_source(group: ChannelGroup) -> Member | None:
    """The one layer whose zero filter makes a channel constant, in a chain the fold can handle."""
    if any(m.role == "op" and m.op in ("CatBackward0", "ViewBackward0", "ReshapeAliasBackward0",
                                       "UnsafeViewBackward0", "AddBackward0", "SubBackward0",
                                       "MulBackward0", "DivBackward0") for m in group.members):
        return None
    if any(m.idxs != m.root_idxs for m in group.members):
        return None
    depthwise = group.by_role("depthwise")
    if len(depthwise) == 1:
        return depthwise[0]
    producers = group.by_role("producer")
    if not depthwise and len(producers) == 1:
        return producers[0]
    return None


def _walk_constants(dg: Any, source: Member) -> list[tuple[nn.Module, Any, Tensor]] | None:
    """From ``source``, carry per-channel constants through norms and activations to consumers.

    Returns (consumer, batch norm to fold into or None, constant per channel) for every consumer
    reached, or None when the path holds anything that does not keep a constant map constant.
    """
    from torch_pruning import ops

    start = dg.module2node[source.module]
    mod = source.module
    base = mod.bias.detach().double() if mod.bias is not None else torch.zeros(_out_features(mod), dtype=torch.float64)
    found: list[tuple[nn.Module, Any, Tensor]] = []
    stack = [(n, base) for n in start.outputs]
    while stack:
        node, value = stack.pop()
        module = node.module
        name = node.grad_fn.name() if node.grad_fn is not None and hasattr(node.grad_fn, "name") else ""
        if node.type in (ops.OPTYPE.CONV, ops.OPTYPE.LINEAR) and module is not source.module:
            target = _fold_target(node)
            if target is None:
                return None
            found.append((module, target if target is not module else None, value))
            continue
        if len(node.inputs) != 1:
            return None
        if node.type == ops.OPTYPE.BN and isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if module.running_mean is None:
                return None
            value = _batch_norm(module, value)
        elif name == "ReluBackward0":
            value = value.clamp(min=0)
        elif name == "HardtanhBackward0":
            value = value.clamp(min=float(node.grad_fn._saved_min_val), max=float(node.grad_fn._saved_max_val))
        elif name.startswith("Upsample") or name in _CONSTANT_PRESERVING:
            pass
        else:
            return None
        stack.extend((n, value) for n in node.outputs)
    return found


def _fold_target(node: Any) -> Any:
    """Where a consumer can absorb a constant input: itself (bias) or its only follower, a batch norm."""
    from torch_pruning import ops

    module = node.module
    if getattr(module, "groups", 1) != 1:
        return None
    if isinstance(module, nn.Conv2d):
        pad = module.padding
        # Zero padding would show the constant only inside the border: not foldable exactly.
        if pad != "valid" and (isinstance(pad, str) or any(p != 0 for p in pad)):
            return None
    if module.bias is not None:
        return module
    outs = node.outputs
    if len(outs) == 1 and outs[0].type == ops.OPTYPE.BN and len(outs[0].inputs) == 1:
        norm = outs[0].module
        if isinstance(norm, (nn.BatchNorm1d, nn.BatchNorm2d)) and norm.running_mean is not None:
            return norm
    return None


def _batch_norm(bn: nn.Module, x: Tensor) -> Tensor:
    mean = bn.running_mean.detach().double()
    var = bn.running_var.detach().double()
    y = (x - mean) / torch.sqrt(var + bn.eps)
    if bn.affine:
        y = y * bn.weight.detach().double() + bn.bias.detach().double()
    return y


def _out_features(mod: nn.Module) -> int:
    return mod.out_channels if isinstance(mod, nn.Conv2d) else mod.out_features


def _name(group: ChannelGroup, module: nn.Module) -> str:
    for m in group.members:
        if m.module is module:
            return m.name
    return type(module).__name__
