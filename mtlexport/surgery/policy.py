"""Policy: which removable channels are actually removed (protection, round-to, minimum width,
or one width per group chosen elsewhere, e.g. by measured latency).

Pure bookkeeping over ``GroupAnalysis`` results; nothing here touches a module. Keeping extra
dead channels never changes the function, so every slimmable group may take any width between
its live count (``WidthBounds.live``) and its dense width.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from mtlexport.errors import ConfigError
from mtlexport.surgery.analysis import Fold, GroupAnalysis
from mtlexport.surgery.graph import ChannelGroup

# Reasons a removable channel is kept, as reported in SlimReport.kept.
KEPT_REASONS = ("protected", "output", "grouped", "unsupported", "round_to", "min_keep", "latency")


@dataclass(frozen=True)
class WidthBounds:
    """The widths a slimmable group can take: from ``live`` (its live channels, at least one)
    up to ``dense`` (nothing removed)."""

    root: str
    live: int
    dense: int

    def fixed(self, multiple: int) -> int:
        """The width ``--round-to multiple`` gives this group."""
        return fixed_width(self.live, self.dense, multiple)

    def candidates(self, multiples: Iterable[int]) -> tuple[int, ...]:
        """Ascending widths worth trying: each multiple's width, and the dense width."""
        return tuple(sorted({self.fixed(m) for m in multiples} | {self.dense}))


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


def plan_removal(analyses: list[GroupAnalysis], round_to: int = 1, protected: Collection[str] = (),
                 widths: Mapping[str, int] | None = None) -> RemovalPlan:
    """Decide removals: protected / observable / grouped / unsupported groups keep everything,
    every group keeps at least one channel, and widths stay multiples of ``round_to``, except
    for the groups ``widths`` gives a width (keyed by root layer; it must lie within the
    group's ``WidthBounds``)."""
    if round_to < 1:
        raise ConfigError(f"round_to must be a positive integer, got {round_to}")
    widths = dict(widths or {})
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
        if group.root in widths:
            rounded = group.width - _checked_width(group.root, widths.pop(group.root), group.width - count, group.width)
            kept["latency"] += count - rounded
        else:
            rounded = _round_count(group.width, count, round_to)
            kept["round_to"] += count - rounded
        remove = tuple(sorted(order[:rounded]))
        if not remove:
            continue
        chosen = set(remove)
        folds = tuple(f for f in a.folds if f.channel in chosen)
        folded += len({f.channel for f in folds})
        plans.append(GroupPlan(group=group, remove=remove, folds=folds))
    if widths:
        raise ConfigError(f"widths given for groups that cannot be slimmed: {', '.join(sorted(widths))}")
    return RemovalPlan(groups=tuple(plans), kept=kept, removable=removable, folded=folded, unfoldable=unfoldable)


def width_bounds(analyses: list[GroupAnalysis], protected: Collection[str] = ()) -> dict[str, WidthBounds]:
    """The groups ``plan_removal`` can narrow (root layer -> bounds), with the same protection,
    blocking and one-channel rules; groups with nothing removable are left out."""
    protected = set(protected)
    out: dict[str, WidthBounds] = {}
    for a in analyses:
        group = a.group
        if _blocked(group, protected):
            continue
        count = min(len(a.dead) + len(a.constant), group.width - 1)
        if count > 0:
            out[group.root] = WidthBounds(root=group.root, live=group.width - count, dense=group.width)
    return out


def fixed_width(live: int, dense: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is at least ``live``, or ``dense`` when it would
    exceed the dense width (what ``round_to`` does to a group)."""
    if multiple < 1:
        raise ConfigError(f"width multiples must be positive integers, got {multiple}")
    width = -(-live // multiple) * multiple
    return width if width <= dense else dense


def _checked_width(root: str, width: int, live: int, dense: int) -> int:
    if not live <= width <= dense:
        raise ConfigError(f"width {width} for group {root} is outside its live..dense range {live}..{dense}")
    return width


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
    return width - fixed_width(width - count, width, multiple)
