"""Which weight slices form each group-lasso group: the paper's channel groups or coupled groups.

``GroupStructure`` is the grouping as plain data (parameter names, the group dimension of each,
and one group id per slice), built once at the start of training and stored in checkpoints so
that ``--resume`` optimises exactly the same groups.

- ``channel`` (the paper's, ``collect_grouped_params``): one group per input channel of every
  grouped convolution in scope.
- ``coupled``: one group per *removable channel* of the dependency graph, i.e. exactly the unit
  ``mtlexport slim`` removes: the input slices of every layer that reads the channel (across
  residual sums, concatenation offsets, pooling and flattening into linear layers), plus the
  slices of the depthwise convolutions it passes through (they belong to that channel alone).
  A zero group is therefore always a channel the surgeon removes. The producers' filters are not
  in the group: a filter row of a convolution is also an input slice of the group of the
  channel that convolution reads, so adding it would make groups overlap (the prox is then no
  longer separable). BatchNorm entries belong to one channel only and can be added with
  ``norms=True`` (measured choice in the README). Channels that the surgeon never removes (task
  output layers, grouped convolutions, unsupported operations, channels that reach an output)
  are not grouped; with ``scope="backbone"`` only channels written inside the backbone are
  (their readers in the heads included, or the channel could never be removed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mtlexport.errors import CheckpointError, ConfigError
from mtlexport.sparsity.groups import LAYOUTS, _scope_modules, collect_grouped_params

__all__ = ["GROUPINGS", "GroupStructure", "build_structure"]

GROUPINGS = ("channel", "coupled")


@dataclass(frozen=True, eq=False)
class GroupStructure:
    """Group-lasso groups as data: slice ``s`` along ``dims[i]`` of parameter ``names[i]``
    belongs to group ``ids[i][s]`` (-1: not grouped). ``sets[g]`` is the removable channel set
    (coupled channel group) of group ``g`` (-1 for the channel grouping)."""

    grouping: str
    scope: str
    names: tuple[str, ...]
    dims: tuple[int, ...]
    ids: tuple[Tensor, ...]
    num_groups: int
    sets: Tensor
    num_sets: int
    labels: tuple[str, ...] = ()  # per set: its root layer
    graph_sets: tuple[int, ...] = ()  # per set: the index of its channel group in the traced graph

    def to_dict(self) -> dict[str, Any]:
        """Weights-only loadable mapping (names, ints and tensors)."""
        return {"grouping": self.grouping, "scope": self.scope, "names": list(self.names),
                "dims": list(self.dims), "ids": [t.clone() for t in self.ids], "num_groups": self.num_groups,
                "sets": self.sets.clone(), "num_sets": self.num_sets, "labels": list(self.labels),
                "graph_sets": list(self.graph_sets)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GroupStructure:
        try:
            return cls(grouping=str(data["grouping"]), scope=str(data["scope"]), names=tuple(data["names"]),
                       dims=tuple(int(d) for d in data["dims"]), ids=tuple(torch.as_tensor(t) for t in data["ids"]),
                       num_groups=int(data["num_groups"]), sets=torch.as_tensor(data["sets"]),
                       num_sets=int(data["num_sets"]), labels=tuple(data.get("labels", ())),
                       graph_sets=tuple(int(i) for i in data.get("graph_sets", ())))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"the checkpoint's group structure is malformed ({exc}); "
                                  "start a new run instead of --resume") from None

    def param_group(self, model: nn.Module) -> dict[str, Any]:
        """The optimizer param group of these groups over ``model``'s parameters (layout "segments")."""
        params = dict(model.named_parameters())
        missing = [n for n in self.names if n not in params]
        if missing:
            raise CheckpointError(f"the group structure names parameter {missing[0]!r}, which the model lacks; "
                                  "the checkpoint belongs to another architecture")
        chosen = [params[n] for n in self.names]
        for name, p, d, ids in zip(self.names, chosen, self.dims, self.ids):
            if p.dim() <= d or p.shape[d] != ids.numel():
                raise CheckpointError(f"the group structure does not fit parameter {name!r} {tuple(p.shape)}; "
                                      "the checkpoint belongs to another architecture")
        return {"params": chosen, "group_lasso": True, "layout": "segments", "group_dims": list(self.dims),
                "group_ids": [t.clone() for t in self.ids], "num_groups": self.num_groups,
                "group_sets": self.sets.clone(), "num_sets": self.num_sets,
                "frozen": torch.zeros(self.num_groups, dtype=torch.bool)}


def build_structure(model: nn.Module, grouping: str = "channel", scope: str = "backbone", *,
                    example: Tensor | None = None, norms: bool = False, graph: Any = None) -> GroupStructure:
    """The groups of ``grouping`` over ``model`` in ``scope``; ``coupled`` traces ``example``
    (or reuses ``graph``, a ``(dg, channel_groups)`` pair from ``mtlexport.surgery.graph``)."""
    if grouping not in GROUPINGS:
        raise ConfigError(f"unknown grouping {grouping!r}; valid groupings: {', '.join(GROUPINGS)}")
    names = {id(p): n for n, p in model.named_parameters()}
    if grouping == "channel":
        grouped = collect_grouped_params(model, scope)
        ids, start = [], 0
        for g in grouped:
            ids.append(torch.arange(start, start + g.num_groups))
            start += g.num_groups
        return GroupStructure("channel", scope, tuple(names[id(g.param)] for g in grouped),
                              tuple(LAYOUTS[g.layout] for g in grouped), tuple(ids), start,
                              torch.full((start,), -1, dtype=torch.long), 0)
    if graph is None:
        if example is None:
            raise ConfigError("coupled groups need an example input to trace the model")
        graph = trace_groups(model, example)
    _, channel_groups = graph
    return _coupled(model, channel_groups, scope, norms, names)


def trace_groups(model: nn.Module, example: Tensor) -> tuple[Any, list[Any]]:
    """The torch-pruning graph and the coupled channel groups of ``model`` (eval-mode trace)."""
    from mtlexport.surgery.graph import build_graph, coupled_groups

    was_training = model.training
    try:
        dg, output_fns = build_graph(model, example)
        return dg, coupled_groups(dg, model, output_fns)
    finally:
        model.train(was_training)


def removable(group: Any, protected: set[str]) -> bool:
    """True when the surgeon may remove channels of ``group`` (its policy's blocking rules)."""
    if group.unsupported or group.grouped or group.observable or not group.by_role("consumer"):
        return False
    return not any(m.name in protected for m in group.members if m.role in ("producer", "depthwise", "norm"))


def protected_layers(model: nn.Module) -> set[str]:
    from mtlexport.surgery.slim import output_layers

    return set(output_layers(model))


def _coupled(model: nn.Module, channel_groups: list[Any], scope: str, norms: bool,
             names: dict[int, str]) -> GroupStructure:
    in_scope = _scope_modules(model, scope)
    protected = protected_layers(model)
    slices: dict[str, tuple[int, Tensor]] = {}  # param name -> (dim, ids)
    sets: list[int] = []
    labels: list[str] = []
    graph_sets: list[int] = []
    num_groups = 0

    def assign(param: nn.Parameter, dim: int, idxs: tuple[int, ...], groups: list[int]) -> None:
        name = names[id(param)]
        if name not in slices:
            slices[name] = (dim, torch.full((param.shape[dim],), -1, dtype=torch.long))
        d, ids = slices[name]
        if d != dim:
            raise ConfigError(f"coupled groups: parameter {name} is grouped along two dimensions")
        for i, g in zip(idxs, groups):
            ids[i] = g

    for cg in channel_groups:
        if not removable(cg, protected):
            continue
        writers = [m for m in cg.members if m.role in ("producer", "depthwise")]
        if in_scope is not None and not all(id(m.module) in in_scope for m in writers):
            continue
        trainable = [m for m in cg.members if m.role in ("consumer", "depthwise")]
        if not all(m.module.weight.requires_grad for m in trainable):
            continue
        base = num_groups
        num_groups += cg.width
        set_id = len(labels)
        labels.append(cg.root)
        graph_sets.append(cg.index)
        sets.extend([set_id] * cg.width)
        for m in cg.members:
            groups = [base + r for r in m.root_idxs]
            if m.role == "consumer":
                assign(m.module.weight, 1, m.idxs, groups)
            elif m.role == "depthwise":
                assign(m.module.weight, 0, m.idxs, groups)
            elif m.role == "norm" and norms and getattr(m.module, "affine", False):
                assign(m.module.weight, 0, m.idxs, groups)
                assign(m.module.bias, 0, m.idxs, groups)
    order = [n for n, _ in model.named_parameters() if n in slices]
    return GroupStructure("coupled", scope, tuple(order), tuple(slices[n][0] for n in order),
                          tuple(slices[n][1] for n in order), num_groups,
                          torch.tensor(sets, dtype=torch.long), len(labels), tuple(labels), tuple(graph_sets))
