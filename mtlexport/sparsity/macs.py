"""The MACs a slimmed model would have, predicted from which channels are dead right now.

``MacsModel`` is built once from the dependency graph: every removable channel of every coupled
channel group is a variable, and every convolution, linear layer and batch norm is a term of
``mtlexport slim``'s MAC count (torch-pruning's counter) written in its live input and output
widths: ``k * in_live * out_live + b * out_live`` (convolutions, linear layers), ``k * live``
(depthwise convolutions, batch norms); activation, pooling and upsampling modules add to ``b`` of
the layer that runs just before them. What the model does not cover (such a module after an
operation that changes the channel count) is held at its dense value. A channel is removed when every
reader's input slice is exactly zero, and each channel set keeps at least one channel, as the
surgeon does. Evaluating the prediction is a handful of small tensor operations, cheap enough
for a controller that runs during training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mtlexport.sparsity.coupled import protected_layers, removable

__all__ = ["MacsModel", "build_macs_model"]

_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.PReLU, nn.ELU, nn.LeakyReLU, nn.GELU)
_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.MaxPool1d, nn.AvgPool1d,
          nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d)

_F64 = torch.float64


@dataclass(frozen=True, eq=False)
class MacsModel:
    """Predicted per-sample MACs as a function of the dead channels (see the module docstring)."""

    dense_macs: int  # counted on the dense model
    fixed: float  # MACs the layer terms do not cover (held constant)
    set_of: Tensor  # (N,) channel -> its set
    num_sets: int
    can_die: Tensor  # (N,) bool: channels the grouping can zero (readers all grouped)
    coef: Tensor  # (L,) k per layer
    bias: Tensor  # (L,) b per layer
    bilinear: Tensor  # (L,) bool: k * in * out (else k * out)
    in_fixed: Tensor
    out_fixed: Tensor
    in_pairs: tuple[Tensor, Tensor]  # (layer, channel) for each input slice of a variable channel
    out_pairs: tuple[Tensor, Tensor]
    readers: tuple[tuple[nn.Parameter, Tensor, Tensor], ...]  # (weight, input index, channel)
    graph_offsets: dict[int, int]  # channel group index in the traced graph -> its first channel

    def channels_of(self, structure: Any) -> Tensor:
        """(G,) the channel of every group of a coupled ``GroupStructure`` (-1 if none)."""
        out = torch.full((structure.num_groups,), -1, dtype=torch.long)
        sets = structure.sets
        for set_id, cg in enumerate(structure.graph_sets):
            members = torch.nonzero(sets == set_id).flatten()
            if cg in self.graph_offsets:
                out[members] = self.graph_offsets[cg] + torch.arange(members.numel())
        return out

    @property
    def num_channels(self) -> int:
        return int(self.set_of.numel())

    def dead_channels(self) -> Tensor:
        """(N,) bool: channels every reader currently sees through an all-zero weight slice."""
        live = torch.zeros(self.num_channels, dtype=_F64)
        with torch.no_grad():
            for weight, idx, ch in self.readers:
                w = weight.detach()
                nz = (w != 0).reshape(w.shape[0], w.shape[1], -1).any(dim=2).any(dim=0).cpu()
                live.index_add_(0, ch, nz[idx].to(_F64))
        return live == 0

    def removed(self, dead: Tensor) -> Tensor:
        """(N,) bool: dead channels the surgeon removes (every set keeps at least one channel)."""
        dead = dead.bool().cpu()
        count = torch.zeros(self.num_sets, dtype=torch.long).index_add_(0, self.set_of, dead.long())
        width = torch.bincount(self.set_of, minlength=self.num_sets)
        order = torch.arange(self.num_channels)
        first = torch.full((self.num_sets,), self.num_channels, dtype=torch.long).scatter_reduce_(
            0, self.set_of, order, "amin")
        keep = (count == width)[self.set_of] & (order == first[self.set_of])  # an all-dead set keeps one
        return dead & ~keep

    def macs(self, dead: Tensor) -> float:
        """Predicted MACs per sample with the ``dead`` channels (N,) removed."""
        live = (~self.removed(dead)).to(_F64)
        L = self.coef.numel()
        in_live = self.in_fixed.clone().index_add_(0, self.in_pairs[0], live[self.in_pairs[1]]) if L else self.in_fixed
        out_live = self.out_fixed.clone().index_add_(0, self.out_pairs[0], live[self.out_pairs[1]]) if L else self.out_fixed
        terms = torch.where(self.bilinear, self.coef * in_live * out_live, self.coef * out_live) + self.bias * out_live
        return float(self.fixed + terms.sum())

    def ratio(self, dead: Tensor) -> float:
        """Predicted slim MACs / dense MACs per sample."""
        return self.macs(dead) / self.dense_macs if self.dense_macs > 0 else 1.0

    def min_ratio(self) -> float:
        """The smallest ratio the grouping can reach: every channel it can zero removed."""
        return self.ratio(self.can_die)


def build_macs_model(model: nn.Module, channel_groups: Sequence[Any], input_shape: tuple[int, int, int],
                     grouped: Sequence[nn.Parameter]) -> MacsModel:
    """The ``MacsModel`` of ``model`` (traced into ``channel_groups``) at ``input_shape`` (C, H, W).

    ``grouped`` are the weights the group lasso acts on; a channel can die when every reader's
    input slice lies in one of them.
    """
    from mtlexport.models.profile import profile_model

    dense = profile_model(model, input_shape).macs
    layers, coef, bias, bilinear, in_total, out_total = _layer_terms(model, input_shape)
    index = {id(m): i for i, m in enumerate(layers)}
    protected = protected_layers(model)
    grouped_ids = {id(p) for p in grouped}
    set_of: list[int] = []
    can_die: list[bool] = []
    in_l, in_c, out_l, out_c = [], [], [], []
    readers: dict[int, tuple[nn.Parameter, list[int], list[int]]] = {}
    offsets: dict[int, int] = {}
    num_sets = 0
    for cg in channel_groups:
        if not removable(cg, protected):
            continue
        base = len(set_of)
        offsets[cg.index] = base
        set_of.extend([num_sets] * cg.width)
        num_sets += 1
        consumers = cg.by_role("consumer")
        die = all(id(m.module.weight) in grouped_ids for m in consumers)
        can_die.extend([die] * cg.width)
        for m in cg.members:
            li = index.get(id(m.module))
            if m.role == "consumer":
                entry = readers.setdefault(id(m.module.weight), (m.module.weight, [], []))
                entry[1].extend(m.idxs)
                entry[2].extend(base + r for r in m.root_idxs)
                if li is not None:
                    in_l.extend([li] * len(m.idxs))
                    in_c.extend(base + r for r in m.root_idxs)
            elif m.role in ("producer", "depthwise", "norm") and li is not None:
                out_l.extend([li] * len(m.idxs))
                out_c.extend(base + r for r in m.root_idxs)
    long = torch.long
    in_pairs = (torch.tensor(in_l, dtype=long), torch.tensor(in_c, dtype=long))
    out_pairs = (torch.tensor(out_l, dtype=long), torch.tensor(out_c, dtype=long))
    L = len(layers)
    in_fixed = torch.tensor(in_total, dtype=_F64) - torch.zeros(L, dtype=_F64).index_add_(
        0, in_pairs[0], torch.ones(len(in_l), dtype=_F64))
    out_fixed = torch.tensor(out_total, dtype=_F64) - torch.zeros(L, dtype=_F64).index_add_(
        0, out_pairs[0], torch.ones(len(out_l), dtype=_F64))
    coef_t, bias_t = torch.tensor(coef, dtype=_F64), torch.tensor(bias, dtype=_F64)
    bilinear_t = torch.tensor(bilinear, dtype=torch.bool)
    in_t, out_t = torch.tensor(in_total, dtype=_F64), torch.tensor(out_total, dtype=_F64)
    modelled = float((torch.where(bilinear_t, coef_t * in_t * out_t, coef_t * out_t) + bias_t * out_t).sum())
    return MacsModel(
        dense_macs=int(dense), fixed=float(dense) - modelled, set_of=torch.tensor(set_of, dtype=long),
        num_sets=num_sets, can_die=torch.tensor(can_die, dtype=torch.bool), coef=coef_t, bias=bias_t,
        bilinear=bilinear_t, in_fixed=in_fixed, out_fixed=out_fixed, in_pairs=in_pairs, out_pairs=out_pairs,
        readers=tuple((w, torch.tensor(i, dtype=long), torch.tensor(c, dtype=long)) for w, i, c in readers.values()),
        graph_offsets=offsets,
    )


def _layer_terms(model: nn.Module, input_shape: tuple[int, int, int]):
    """Per counted layer: module, k, b, bilinear flag, input and output widths (one forward, batch 1)."""
    stats: dict[int, list[float]] = {}  # id -> [positions, per-channel cost of the modules that follow]
    mods: dict[int, nn.Module] = {}
    hooks = []
    last: list[nn.Module] = []

    def hook(mod: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        if isinstance(mod, nn.Linear):
            positions = inputs[0].numel() / mod.in_features
        elif isinstance(mod, nn.Conv2d):
            positions = output.numel() / mod.out_channels
        else:
            positions = inputs[0].numel() / mod.num_features
        mods[id(mod)] = mod
        stats.setdefault(id(mod), [0.0, 0.0])[0] += positions
        last[:] = [mod]

    def follower(mod: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        # Activation / pooling / upsampling modules (counted per element by torch-pruning) scale
        # with the width of the layer that ran just before them, when the channel counts agree.
        x = inputs[0] if isinstance(mod, _POOLS) else output
        if not last or not isinstance(x, Tensor) or x.dim() < 2:
            return
        prev = last[0]
        width = getattr(prev, "out_channels", None) or getattr(prev, "num_features", None) or getattr(
            prev, "out_features", None)
        if width and x.shape[1] == width:
            stats[id(prev)][1] += x.numel() / width

    for mod in model.modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)):
            hooks.append(mod.register_forward_hook(hook))
        elif isinstance(mod, (*_ACTIVATIONS, *_POOLS, nn.Upsample)):
            hooks.append(mod.register_forward_hook(follower))
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    layers, coef, bias, bilinear, ins, outs, follow = [], [], [], [], [], [], []
    for key, mod in mods.items():
        pos = stats[key][0]
        follow.append(stats[key][1])
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * pos
            depthwise = mod.groups > 1 and mod.groups == mod.in_channels == mod.out_channels
            coef.append(k if depthwise else k / mod.groups)
            bilinear.append(not depthwise)
            bias.append(pos if mod.bias is not None else 0.0)
            ins.append(mod.in_channels)
            outs.append(mod.out_channels)
        elif isinstance(mod, nn.Linear):
            coef.append(pos)  # torch-pruning counts numel(input) * out_features, + out_features for the bias
            bilinear.append(True)
            bias.append(1.0 if mod.bias is not None else 0.0)
            ins.append(mod.in_features)
            outs.append(mod.out_features)
        else:
            coef.append(pos * (2.0 if mod.affine else 1.0))
            bilinear.append(False)
            bias.append(0.0)
            ins.append(mod.num_features)
            outs.append(mod.num_features)
        layers.append(mod)
    return layers, coef, [b + f for b, f in zip(bias, follow)], bilinear, ins, outs
