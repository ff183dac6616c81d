"""Policy: which removable channels are actually removed (protection, round-to, minimum width).

Pure bookkeeping over ``GroupAnalysis`` results; nothing here touches a module.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from mtlexport.errors import ConfigError
from mtlexport.surgery.analysis import Fold, GroupAnalysis
from mtlexport.surgery.graph import ChannelGroup

# Reasons a removable channel is kept, as reported in SlimReport.kept.
KEPT_REASONS = ("protected", "output", "grouped", "unsupported", "round_to", "min_keep")


@dataclass(frozen=True)
class GroupPlan:
    """Channels (root indices) to remove from one group, and the constants to fold first."""

    group: ChannelGroup
    remove: tuple[int, ...]
    folds: tuple[Fold, ...] = ()


@dataclass(frozen=True)
class RemovalPlan:
    """The whole plan: per-group removals and why removable channels were kept."""

    groups: tuple[GroupPlan, ...]
    kept: dict[str, int]
    removable: int
    folded: int
    unfoldable: int

    @property
    def removed(self) -> int:
        """Channels removed over all groups."""
        return sum(len(g.remove) for g in self.groups)


def plan_removal(analyses: list[GroupAnalysis], round_to: int = 1, protected: Collection[str] = ()) -> RemovalPlan:
    """Decide removals: protected / observable / grouped / unsupported groups keep everything,
    every group keeps at least one channel, and widths stay multiples of ``round_to``."""
    if round_to < 1:
        raise ConfigError(f"round_to must be a positive integer, got {round_to}")
    protected = set(protected)
    kept = dict.fromkeys(KEPT_REASONS, 0)
    plans: list[GroupPlan] = []
    removable = folded = unfoldable = 0
    for a in analyses:
        group = a.group
        candidates = list(a.dead) + list(a.constant)
        removable += len(candidates)
        unfoldable += a.unfoldable
        reason = _blocked(group, protected)
        if reason:
            kept[reason] += len(candidates)
            continue
        # Dead channels first: removing them needs no folding.
        order = sorted(a.dead) + sorted(a.constant)
        count = min(len(order), group.width - 1)
        kept["min_keep"] += len(order) - count
        rounded = _round_count(group.width, count, round_to)
        kept["round_to"] += count - rounded
        remove = tuple(sorted(order[:rounded]))
        if not remove:
            continue
        chosen = set(remove)
        folds = tuple(f for f in a.folds if f.channel in chosen)
        folded += len({f.channel for f in folds})
        plans.append(GroupPlan(group=group, remove=remove, folds=folds))
    return RemovalPlan(groups=tuple(plans), kept=kept, removable=removable, folded=folded, unfoldable=unfoldable)


def _blocked(group: ChannelGroup, protected: set[str]) -> str:
    if any(m.name in protected for m in group.members if m.role in ("producer", "depthwise", "norm")):
        return "protected"
    if group.observable:
        return "output"
    if group.grouped:
        return "grouped"
    if group.unsupported:
        return "unsupported"
    return ""


def _round_count(width: int, count: int, multiple: int) -> int:
    """Largest r <= count with (width - r) a positive multiple of ``multiple`` (0 if none)."""
    for r in range(count, 0, -1):
        if (width - r) % multiple == 0 and width - r >= 1:
            return r
    return 0
