"""The units a sparsifier keeps or removes: single weights (``element``) or removable channels
(``channel``), who owns each unit (the shared backbone or one task head) and how to zero them.

- ``element``: every weight of every convolution and linear layer in scope, one unit each.
- ``channel``: one unit per coupled channel group (``mtlexport.sparsity.coupled``): the input
  slices of every reader of one channel plus its depthwise slices. Zeroing all slices of a unit
  makes the channel removable, so every channel a method removes is one ``mtlexport slim``
  removes, and the MACs the ``MacsModel`` predicts are the surgeon's.

A unit is private to task ``t`` when all its weights lie in ``heads.<t>``, else shared
(owner -1). Per-unit quantities are float64 tensors of shape (U,); ``keep`` masks are bool (U,).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mtlexport.errors import ConfigError
from mtlexport.sparsity.segments import Segments

__all__ = ["STRUCTURES", "UnitSpace", "build_units"]

STRUCTURES = ("channel", "element")
_F64 = torch.float64


@dataclass(eq=False)
class UnitSpace:
    """Units over ``params`` (see the module docstring)."""

    structure: str
    names: tuple[str, ...]
    params: tuple[nn.Parameter, ...]
    tasks: tuple[str, ...]
    owner: Tensor  # (U,) long: -1 shared, t: private to task t
    layer: Tensor  # (U,) long: index into ``layers`` (element: the parameter; channel: the channel set)
    layers: tuple[str, ...]
    seg: Segments | None = None  # channel units
    macs: Any = None  # MacsModel (channel units)
    channels: Tensor | None = None  # (U,) unit -> MacsModel channel (channel units)
    groups: dict[str, Any] | None = None  # the coupled GroupStructure as data (kept for --resume)

    @property
    def num_units(self) -> int:
        return int(self.owner.numel())

    @property
    def sizes(self) -> Tensor:
        """(U,) number of weights in each unit."""
        if self.seg is None:
            return torch.ones(self.num_units, dtype=_F64)
        return self.seg.sizes.cpu()

    def in_space(self, task: int) -> Tensor:
        """(U,) bool: the units task ``task``'s loss can see (shared ones and its own)."""
        return (self.owner == -1) | (self.owner == task)

    def component(self) -> Tensor:
        """(U,) long: 0 for shared (backbone) units, 1 + t for units of head t."""
        return self.owner + 1

    # ------------------------------------------------------------------ per-unit reductions
    def reduce(self, per_param: Sequence[Tensor]) -> Tensor:
        """Sum per-weight values (one tensor shaped like each parameter) into per-unit totals."""
        if self.seg is None:
            return torch.cat([t.detach().reshape(-1).to(_F64).cpu() for t in per_param])
        views = self.seg.views([t.detach().contiguous() for t in per_param])
        return self.seg.reduce([v.sum(dim=(0, 2)) for v in views]).cpu()

    def norms(self, tensors: Sequence[Tensor] | None = None) -> Tensor:
        """(U,) L2 norm of each unit's weights (the parameters' current values by default)."""
        tensors = list(self.params) if tensors is None else list(tensors)
        return self.reduce([t.detach().double().square() for t in tensors]).sqrt()

    def alive(self) -> Tensor:
        """(U,) bool: units with at least one non-zero weight."""
        return self.reduce([(p.detach() != 0).double() for p in self.params]) > 0

    # ------------------------------------------------------------------ masks
    def masks(self, keep: Tensor) -> list[Tensor]:
        """One multiplicative 0/1 mask per parameter (broadcastable to it) that zeroes the
        units not kept; weights outside every unit are kept."""
        keep = keep.bool().cpu()
        out = []
        if self.seg is None:
            start = 0
            for p in self.params:
                n = p.numel()
                out.append(keep[start:start + n].view(p.shape).to(device=p.device, dtype=p.dtype))
                start += n
            return out
        removed = self.seg.slice_mask((~keep).to(self.seg.device))
        for p, r, (a, s, b) in zip(self.params, removed, self.seg.shapes):
            out.append((~r).to(dtype=p.dtype, device=p.device).view(1, s, 1))
        return out

    def apply(self, masks: Sequence[Tensor], tensors: Sequence[Tensor] | None = None) -> None:
        """Multiply ``tensors`` (default: the parameters' data; e.g. their gradients) by ``masks``."""
        tensors = [p.data for p in self.params] if tensors is None else list(tensors)
        shapes = self.seg.shapes if self.seg is not None else [None] * len(tensors)
        with torch.no_grad():
            for t, m, shape in zip(tensors, masks, shapes):
                if t is not None:
                    (t if shape is None else t.view(shape)).mul_(m)

    # ------------------------------------------------------------------ what a mask achieves
    def removed_share(self, keep: Tensor) -> float:
        """Share of weights (element) or of channel units (channel) not kept."""
        return 1.0 - float(keep.bool().sum()) / max(self.num_units, 1)

    def macs_ratio(self, keep: Tensor) -> float:
        """Predicted slim / dense MACs with the units not in ``keep`` zeroed (channel units)."""
        if self.macs is None or self.channels is None:
            raise ConfigError("a MACs target needs sparsifier.structure: channel (element-wise zeros "
                              "remove no MACs); set sparsifier.target_sparsity instead")
        dead = self.macs.dead_channels().clone()
        gone = self.channels[~keep.bool().cpu()]
        gone = gone[gone >= 0]
        if gone.numel():
            dead[gone] = True
        live = self.channels[keep.bool().cpu()]
        live = live[live >= 0]
        if live.numel():
            dead[live] = False
        return self.macs.ratio(dead)

    def weight_sparsity(self) -> float:
        """Share of exactly-zero weights among the parameters of the space."""
        zero = sum(int((p.detach() == 0).sum()) for p in self.params)
        total = sum(p.numel() for p in self.params)
        return zero / max(total, 1)


def _task_of(name: str, tasks: Sequence[str]) -> int:
    parts = name.split(".")
    if len(parts) > 1 and parts[0] == "heads" and parts[1] in tasks:
        return tasks.index(parts[1])
    return -1


def _element_params(model: nn.Module, scope: str) -> list[tuple[str, nn.Parameter]]:
    from mtlexport.sparsity.groups import _scope_modules

    in_scope = _scope_modules(model, scope)
    out, seen = [], set()
    for name, mod in model.named_modules():
        if not isinstance(mod, (nn.Conv2d, nn.Linear)) or (in_scope is not None and id(mod) not in in_scope):
            continue
        w = mod.weight
        if w.requires_grad and id(w) not in seen:
            seen.add(id(w))
            out.append((f"{name}.weight", w))
    return out


def build_units(model: nn.Module, structure: str, scope: str, tasks: Sequence[str],
                input_shape: tuple[int, int, int], stored: Any = None) -> UnitSpace:
    """The ``UnitSpace`` of ``model``; ``stored`` is a checkpoint's coupled group structure
    (``--resume``), reused so that the units do not change."""
    tasks = tuple(tasks)
    if structure not in STRUCTURES:
        raise ConfigError(f"sparsifier.structure must be one of {', '.join(STRUCTURES)}, got {structure!r}")
    if structure == "element":
        named = _element_params(model, scope)
        if not named:
            raise ConfigError(f"no convolution or linear weight in scope {scope!r} to sparsify")
        owner = torch.cat([torch.full((p.numel(),), _task_of(n, tasks), dtype=torch.long) for n, p in named])
        layer = torch.cat([torch.full((p.numel(),), i, dtype=torch.long) for i, (_, p) in enumerate(named)])
        return UnitSpace("element", tuple(n for n, _ in named), tuple(p for _, p in named), tasks, owner, layer,
                         tuple(n for n, _ in named))
    from mtlexport.sparsity.coupled import GroupStructure, build_structure, trace_groups
    from mtlexport.sparsity.macs import build_macs_model

    device = next(model.parameters()).device
    graph = trace_groups(model, torch.zeros(2, *input_shape, device=device))
    gs = GroupStructure.from_dict(stored) if stored is not None else build_structure(
        model, "coupled", scope, graph=graph)
    if gs.num_groups == 0:
        raise ConfigError(f"no removable channel in scope {scope!r}; use sparsifier.scope: all")
    params = dict(model.named_parameters())
    chosen = tuple(params[n] for n in gs.names)
    seg = Segments.build([p.shape for p in chosen], gs.dims, gs.ids, gs.num_groups, device)
    codes = [_task_of(n, tasks) for n in gs.names]
    big = len(tasks)
    lo = torch.full((gs.num_groups,), big + 1, dtype=torch.long)
    hi = torch.full((gs.num_groups,), -2, dtype=torch.long)
    for ids, code in zip(gs.ids, codes):
        sel = ids[ids >= 0]
        c = torch.full_like(sel, big if code < 0 else code)
        lo.scatter_reduce_(0, sel, c, "amin")
        hi.scatter_reduce_(0, sel, c, "amax")
    owner = torch.where((lo == hi) & (lo < big), lo, torch.full_like(lo, -1))
    macs = build_macs_model(model, graph[1], input_shape, list(chosen))
    # Layers (channel sets, named by their root layer) in model order, for per-layer figures.
    position = {name: i for i, (name, _) in enumerate(model.named_modules())}
    order = sorted(range(gs.num_sets), key=lambda k: position.get(gs.labels[k], len(position)))
    rank = torch.empty(max(gs.num_sets, 1), dtype=torch.long)
    rank[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))
    return UnitSpace("channel", gs.names, chosen, tasks, owner, rank[gs.sets], tuple(gs.labels[k] for k in order),
                     seg=seg, macs=macs, channels=macs.channels_of(gs), groups=gs.to_dict())
