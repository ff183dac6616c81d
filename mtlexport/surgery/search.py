"""Latency-aware widths: price every slimmable group's candidate widths with a per-layer latency
table and choose the combination that minimises the model's predicted latency.

``width_problem`` turns the traced groups into data: each slimmable group's ``WidthBounds``
and, for every conv / linear layer a group touches, how its input and output widths follow the
groups' widths (a consumer reading a concatenation follows several groups; a linear layer after
a flatten reads ``H*W`` features per channel). A layer's latency depends on two groups at once
(its input and its output), so the model's latency is not a sum of per-group terms; the search
is a coordinate descent: start from the best fixed multiple (as the table predicts it), then
give each group in turn the candidate width that minimises the latency of the layers it
touches, the others fixed, until a full pass changes nothing. Every move strictly lowers the
prediction, so the result is never predicted slower than the best fixed multiple.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from mtlexport.surgery.analysis import GroupAnalysis
from mtlexport.surgery.graph import ChannelGroup
from mtlexport.surgery.latency import LayerShape
from mtlexport.surgery.policy import WidthBounds, width_bounds

MAX_PASSES = 6
MIN_GAIN = 0.02


class Table(Protocol):
    """What the search needs from a latency table (``LatencyTable``)."""

    def ensure(self, shapes: Iterable[LayerShape]) -> int: ...

    def latency(self, shape: LayerShape) -> float: ...


@dataclass(frozen=True)
class LayerTerm:
    """One timed layer: its dense shape and the groups its input / output widths follow,
    each as (group root, layer channels per group channel)."""

    name: str
    shape: LayerShape
    ins: tuple[tuple[str, int], ...]
    outs: tuple[tuple[str, int], ...]

    def at(self, widths: Mapping[str, int], bounds: Mapping[str, WidthBounds]) -> LayerShape:
        """The layer's shape when every group has the width ``widths`` gives it."""
        cin = self.shape.in_channels - sum(k * (bounds[g].dense - widths[g]) for g, k in self.ins)
        cout = self.shape.out_channels - sum(k * (bounds[g].dense - widths[g]) for g, k in self.outs)
        return self.shape.with_widths(cin, cout)


@dataclass(frozen=True)
class WidthProblem:
    """Slimmable groups (root -> bounds) and the timed layers they touch."""

    bounds: dict[str, WidthBounds]
    layers: tuple[LayerTerm, ...]

    def dense(self) -> dict[str, int]:
        return {g: b.dense for g, b in self.bounds.items()}

    def fixed(self, multiple: int) -> dict[str, int]:
        """What ``--round-to multiple`` gives every group."""
        return {g: b.fixed(multiple) for g, b in self.bounds.items()}

    def shapes(self, widths: Mapping[str, int], layers: Sequence[LayerTerm] | None = None) -> list[LayerShape]:
        return [t.at(widths, self.bounds) for t in (self.layers if layers is None else layers)]

    def touching(self, root: str) -> list[LayerTerm]:
        """The layers whose input or output width follows group ``root``."""
        return [t for t in self.layers if any(g == root for g, _ in t.ins + t.outs)]

    def layer_ms(self, widths: Mapping[str, int], table: Table) -> float:
        """Predicted latency of the timed layers (ms) at ``widths``."""
        shapes = self.shapes(widths)
        table.ensure(shapes)
        return sum(table.latency(s) for s in shapes)


@dataclass(frozen=True)
class SearchResult:
    """The chosen widths, the best fixed multiple as predicted, and the search's effort."""

    widths: dict[str, int]
    best_multiple: int
    passes: int
    moves: int


def width_problem(model: nn.Module, groups: Sequence[ChannelGroup], analyses: Sequence[GroupAnalysis],
                  protected: Iterable[str], input_shape: tuple[int, ...]) -> WidthProblem:
    """Bounds of the slimmable groups and the layers they touch, at a batch of ``input_shape``."""
    bounds = width_bounds(list(analyses), protected)
    shapes = _input_shapes(model, input_shape)
    terms: dict[str, dict[str, Any]] = {}
    for group in groups:
        if group.root not in bounds:
            continue
        per: dict[tuple[str, str], int] = {}
        modules: dict[str, nn.Module] = {}
        for mem in group.members:
            sides = {"consumer": ("ins",), "producer": ("outs",), "depthwise": ("ins", "outs")}.get(mem.role, ())
            for side in sides:
                per[(mem.name, side)] = per.get((mem.name, side), 0) + len(set(mem.idxs))
                modules[mem.name] = mem.module
        for (name, side), count in per.items():
            if name not in shapes:
                continue  # not called in the forward (never timed, never costs time)
            entry = terms.setdefault(name, {"module": modules[name], "ins": [], "outs": []})
            entry[side].append((group.root, count // group.width))
    layers = tuple(LayerTerm(name=name, shape=LayerShape.of(e["module"], shapes[name]),
                             ins=tuple(e["ins"]), outs=tuple(e["outs"])) for name, e in terms.items())
    return WidthProblem(bounds=bounds, layers=layers)


def search_widths(problem: WidthProblem, table: Table, multiples: Sequence[int],
                  max_passes: int = MAX_PASSES, min_gain: float = MIN_GAIN) -> SearchResult:
    """Coordinate descent over candidate widths from the best fixed multiple (see the module).

    A group moves only when that lowers the latency of the layers it touches by more than
    ``min_gain`` (a share), so that timing noise alone does not move it."""
    starts = {m: problem.fixed(m) for m in multiples}
    table.ensure(s for widths in (problem.dense(), *starts.values()) for s in problem.shapes(widths))
    predicted = {m: problem.layer_ms(w, table) for m, w in starts.items()}
    best = min(starts, key=lambda m: (predicted[m], m))
    current = dict(starts[best])
    # Groups with the most channels to gain first.
    order = sorted(problem.bounds, key=lambda g: (problem.bounds[g].live - problem.bounds[g].dense, g))
    touching = {g: problem.touching(g) for g in order}
    passes = moves = 0
    for _ in range(max_passes):
        passes += 1
        changed = False
        for g in order:
            terms = touching[g]
            if not terms:
                continue
            trials = {w: {**current, g: w} for w in problem.bounds[g].candidates(multiples)}
            table.ensure(s for trial in trials.values() for s in problem.shapes(trial, terms))
            local = {w: sum(table.latency(s) for s in problem.shapes(trial, terms)) for w, trial in trials.items()}
            pick = min(local, key=lambda w: (local[w], w))
            if pick != current[g] and local[pick] < local[current[g]] * (1 - min_gain):
                current[g] = pick
                moves += 1
                changed = True
        if not changed:
            break
    return SearchResult(widths=current, best_multiple=best, passes=passes, moves=moves)


def _input_shapes(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """The input shape of every conv / linear layer's first call on a zero batch."""
    names = {mod: name for name, mod in model.named_modules() if isinstance(mod, (nn.Conv2d, nn.Linear))}
    found: dict[str, tuple[int, ...]] = {}

    def hook(mod: nn.Module, args: tuple[Any, ...]) -> None:
        found.setdefault(names[mod], tuple(int(s) for s in args[0].shape))

    handles = [mod.register_forward_pre_hook(hook) for mod in names]
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros(input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return found
