"""``SlimReport``: what the surgery removed, what it kept and why, and the proof it is exact."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from mtlexport.surgery.analysis import GroupAnalysis, zero_input_slices
from mtlexport.surgery.verify import OutputCheck

EXAMPLE_ROOTS = 3


@dataclass(frozen=True)
class LayerChange:
    """Input and output channels of one conv / linear layer before and after slimming."""

    name: str
    kind: str
    in_before: int
    in_after: int
    out_before: int
    out_after: int

    @property
    def changed(self) -> bool:
        return (self.in_before, self.out_before) != (self.in_after, self.out_after)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "in_before": self.in_before, "in_after": self.in_after,
                "out_before": self.out_before, "out_after": self.out_after}


@dataclass(frozen=True)
class GroupSkip:
    """Unsupported groups kept whole because of one layer or op type (``blocker``).

    ``channels``: removable (dead or foldable) channels they kept, None when some group's
    channel indices are unknown (torch-pruning could not map them); ``reason``: one example in
    words; ``roots``: the first few groups' root layers.
    """

    blocker: str
    reason: str
    groups: int
    channels: int | None
    roots: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"blocker": self.blocker, "reason": self.reason, "groups": self.groups,
                "channels": self.channels, "roots": list(self.roots)}


def group_skips(analyses: Iterable[GroupAnalysis]) -> tuple[GroupSkip, ...]:
    """Unsupported groups by blocking type, most removable channels kept first."""
    by: dict[str, list[GroupAnalysis]] = {}
    for a in analyses:
        if a.group.unsupported:
            by.setdefault(a.group.blocker or a.group.unsupported, []).append(a)
    skips = [GroupSkip(blocker=blocker, reason=items[0].group.unsupported, groups=len(items),
                       channels=None if any(a.group.unmapped for a in items)
                       else sum(len(a.dead) + len(a.constant) for a in items),
                       roots=tuple(a.group.root for a in items[:EXAMPLE_ROOTS]))
             for blocker, items in by.items()]
    # Uncountable first, then by channels kept.
    return tuple(sorted(skips, key=lambda s: (s.channels is not None, -(s.channels or 0), -s.groups, s.blocker)))


@dataclass(frozen=True)
class SlimReport:
    """Result of ``slim_model`` / ``slim_checkpoint``.

    ``group_sparsity``: share of zero input-channel groups of the backbone convolutions and
    Linear layers before surgery; ``realised``: share of their input channels physically removed.
    ``kept`` counts removable channels that were kept, by reason (protected, output, grouped,
    unsupported, round_to, min_keep); ``skipped`` says which layer or op types made groups
    unsupported (``skipped_groups``: group count per reason in words). MACs are per sample at
    ``input_shape``.
    """

    layers: tuple[LayerChange, ...]
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    input_shape: tuple[int, ...]
    group_sparsity: float
    realised: float
    groups: int
    removable: int
    removed: int
    folded: int
    kept: dict[str, int]
    unfoldable: int
    checks: tuple[OutputCheck, ...]
    tol: float
    dtype: str
    round_to: int | str
    seconds: dict[str, float]
    notices: tuple[str, ...] = ()
    skipped_groups: dict[str, int] = field(default_factory=dict)
    skipped: tuple[GroupSkip, ...] = ()
    source: str = ""
    output: str = ""
    auto: Any = None  # surgery.auto.AutoReport with --round-to auto (round_to is then "auto")
    # The training's own group-lasso groups (checkpoints of group-sparse runs): grouping,
    # zero_groups, groups. With coupled groups every zero group is a removed channel.
    trained_groups: dict[str, Any] = field(default_factory=dict)

    @property
    def max_rel_error(self) -> float:
        """Largest relative error over every output and input set."""
        return max((c.max_rel for c in self.checks), default=0.0)

    @property
    def passed(self) -> bool:
        """True when every output check is within ``tol``."""
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "output": self.output,
            "params_before": self.params_before, "params_after": self.params_after,
            "macs_before": self.macs_before, "macs_after": self.macs_after, "input_shape": list(self.input_shape),
            "group_sparsity": self.group_sparsity, "realised": self.realised,
            "groups": self.groups, "removable": self.removable, "removed": self.removed, "folded": self.folded,
            "kept": dict(self.kept), "unfoldable": self.unfoldable, "skipped_groups": dict(self.skipped_groups),
            "skipped": [s.to_dict() for s in self.skipped],
            "verification": {"tol": self.tol, "dtype": self.dtype, "passed": self.passed,
                             "max_rel_error": self.max_rel_error, "checks": [c.to_dict() for c in self.checks]},
            "round_to": self.round_to, "seconds": dict(self.seconds), "notices": list(self.notices),
            "layers": [layer.to_dict() for layer in self.layers],
            "auto": self.auto.to_dict() if self.auto is not None else None,
            "trained_groups": dict(self.trained_groups),
        }


def layer_channels(model: nn.Module) -> dict[str, tuple[str, int, int]]:
    """(kind, in, out) of every conv and linear layer."""
    out: dict[str, tuple[str, int, int]] = {}
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d):
            out[name] = ("conv", mod.in_channels, mod.out_channels)
        elif isinstance(mod, nn.Linear):
            out[name] = ("linear", mod.in_features, mod.out_features)
    return out


def layer_changes(before: dict[str, tuple[str, int, int]], after: dict[str, tuple[str, int, int]]) -> tuple[LayerChange, ...]:
    """Per-layer before/after channel counts, in module order."""
    return tuple(LayerChange(name, kind, cin, after[name][1], cout, after[name][2])
                 for name, (kind, cin, cout) in before.items() if name in after)


def shared_convs(model: nn.Module, prefix: str = "backbone.") -> dict[str, nn.Module]:
    """The layers group sparsity is measured on: the backbone's convolutions and Linear layers
    (ConvNeXt-style MLPs are Linear), or the whole model's when there is no backbone."""
    layers = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    shared = {n: m for n, m in layers.items() if n.startswith(prefix)}
    return shared or layers


def input_group_sparsity(layers: dict[str, nn.Module]) -> tuple[int, int]:
    """(zero input-channel groups, all input-channel groups) over ``layers`` (conv / Linear)."""
    zero = sum(int(zero_input_slices(m).sum()) for m in layers.values())
    return zero, sum(int(m.weight.shape[1] * getattr(m, "groups", 1)) for m in layers.values())
