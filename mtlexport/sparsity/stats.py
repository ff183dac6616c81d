"""Group and parameter sparsity of the grouped conv weights.

A group counts as zero only when every element is exactly 0.0: the proximal step is the last
operation of an optimizer step, so dead groups are exact zeros, never merely small.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mtlexport.errors import CheckpointError, ConfigError
from mtlexport.sparsity.groups import LAYOUTS, collect_grouped_params

__all__ = [
    "LayerSparsity",
    "SparsityReport",
    "layer_sparsity",
    "sparsity_report",
    "sparsity_report_from_state_dict",
]


def _percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


class _Ratios:
    """Group and parameter sparsity in percent, from ``zero_groups / num_groups`` and
    ``zero_params / params`` (fields of a layer, sums over layers for the report)."""

    num_groups: int
    zero_groups: int
    params: int
    zero_params: int

    @property
    def group_sparsity(self) -> float:
        """Zero groups in percent of all groups."""
        return _percent(self.zero_groups, self.num_groups)

    @property
    def param_sparsity(self) -> float:
        """Parameters in zero groups in percent of all grouped parameters."""
        return _percent(self.zero_params, self.params)


@dataclass(frozen=True)
class LayerSparsity(_Ratios):
    """Sparsity of one grouped conv weight."""

    name: str
    layout: str
    in_channels: int
    out_channels: int
    num_groups: int
    zero_groups: int
    params: int
    zero_params: int  # parameters inside zero groups

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "group_sparsity": self.group_sparsity, "param_sparsity": self.param_sparsity}


@dataclass(frozen=True)
class SparsityReport(_Ratios):
    """Per-layer and total group sparsity over the grouped conv weights."""

    layers: tuple[LayerSparsity, ...]

    @property
    def num_groups(self) -> int:
        return sum(layer.num_groups for layer in self.layers)

    @property
    def zero_groups(self) -> int:
        return sum(layer.zero_groups for layer in self.layers)

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def zero_params(self) -> int:
        return sum(layer.zero_params for layer in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_groups": self.num_groups,
            "zero_groups": self.zero_groups,
            "params": self.params,
            "zero_params": self.zero_params,
            "group_sparsity": self.group_sparsity,
            "param_sparsity": self.param_sparsity,
            "layers": [layer.to_dict() for layer in self.layers],
        }


@torch.no_grad()
def layer_sparsity(name: str, weight: Tensor, layout: str) -> LayerSparsity:
    """Count the exactly-zero groups of one conv weight (O x I x kh x kw) in ``layout``."""
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown group layout {layout!r}; valid layouts: {', '.join(LAYOUTS)}")
    if weight.dim() != 4:
        raise ConfigError(f"{name}: expected a 4-d conv weight, got shape {tuple(weight.shape)}")
    group_dim = LAYOUTS[layout]
    dims = tuple(d for d in range(4) if d != group_dim)
    zero = int((weight == 0).all(dim=dims).sum())
    num_groups = weight.shape[group_dim]
    group_size = weight.numel() // num_groups
    out_channels = weight.shape[0]
    in_channels = weight.shape[1] if layout == "in_channel" else out_channels
    return LayerSparsity(name, layout, in_channels, out_channels, num_groups, zero,
                         weight.numel(), zero * group_size)


def sparsity_report(model: nn.Module, scope: str = "backbone") -> SparsityReport:
    """Sparsity of the conv weights that ``collect_grouped_params(model, scope)`` groups."""
    return SparsityReport(tuple(
        layer_sparsity(g.name, g.param.detach(), g.layout) for g in collect_grouped_params(model, scope)
    ))


def sparsity_report_from_state_dict(state_dict: Mapping[str, Tensor], layouts: Mapping[str, str]) -> SparsityReport:
    """Sparsity from a ``state_dict``; ``layouts`` maps conv module names to their layout."""
    layers = []
    for name, layout in layouts.items():
        key = f"{name}.weight"
        if key not in state_dict:
            raise CheckpointError(f"state_dict has no {key!r}")
        layers.append(layer_sparsity(name, state_dict[key], layout))
    return SparsityReport(tuple(layers))
