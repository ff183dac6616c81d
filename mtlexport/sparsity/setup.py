"""One trace of the model for a group-sparse run: its group structure and its MACs model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from mtlexport.sparsity.coupled import GroupStructure, build_structure, trace_groups
from mtlexport.sparsity.macs import MacsModel, build_macs_model

__all__ = ["sparsity_setup"]


def sparsity_setup(model: nn.Module, config: Any, input_shape: tuple[int, int, int],
                   stored: Mapping[str, Any] | None = None) -> tuple[GroupStructure, MacsModel, Any]:
    """(structure, MACs model, graph) for ``model`` under an ``OptimizerConfig``.

    ``stored`` is a checkpoint's saved structure (``--resume``): it is used as it is instead of
    rebuilding the groups, so a resumed run optimises exactly the groups it started with.
    """
    device = next(model.parameters()).device
    example = torch.zeros(2, *input_shape, device=device)
    graph = trace_groups(model, example)
    if stored is not None:
        structure = GroupStructure.from_dict(stored)
    else:
        structure = build_structure(model, config.grouping, config.group_scope, norms=config.coupled_norms,
                                    graph=graph)
    params = dict(model.named_parameters())
    grouped = [params[n] for n in structure.names if n in params]
    macs = build_macs_model(model, graph[1], input_shape, grouped)
    return structure, macs, graph
