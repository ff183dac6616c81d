"""DiSparse (Sun et al., CVPR 2022): per-task saliencies, one arbitrated mask.

For task t the saliency of every unit it can see (shared units and its own head's) comes from
task t's loss alone (paper eq. 6-17); each task keeps its top units and the arbiter
(``arbiter.py``) decides the shared ones. Variants (``sparsifier.variant``):

- ``static``: SNIP at initialisation, ``|g * w|`` with ``g`` the task's gradient summed over
  ``options.batches`` batches (eq. 6-7; the public code uses 50 batches; eq. 7's normalisation
  does not change a task's ranking and is left out);
- ``pretrained``: ``|g| * w^2`` (eq. 15, GraSP-free "gradient flow" score) on the dense
  checkpoint ``sparsifier.init_from``, pruned once and fine-tuned for the run's epochs;
  ``options.score: magnitude`` uses plain ``|w|``, what the public code runs for NYUv2;
- ``dynamic``: RigL-style from a random ERK mask: every ``options.update_every`` steps until
  ``options.stop_at`` (default ``sparsifier.target_at``) drop the smallest active units by
  magnitude at the cosine-decayed rate ``drop_fraction / 2 * (1 + cos(pi * t / T_end))`` and
  regrow by each task's gradient magnitude on the current batch, through the arbiter.

Channel variant (``structure: channel``): a unit's saliency is the mean over its weights
(``options.channel_score: sum`` for the plain sum: it grows with the group's size, so the small
groups go first, e.g. every ASPP branch of a head on the quick config, which kills the head;
the mean ranks channels by saliency per weight, i.e. per MAC removed). Every layer (channel
set, or weight tensor) keeps its most salient unit, so no layer collapses.
Per-task keep ratios are calibrated (``arbiter.calibrate``) so the arbitrated mask meets the
target exactly (within one unit); regrowth is calibrated to restore it. The layer-wise IoU of
the task masks (the paper's "watershed" analysis) is kept in ``report``/``state_dict``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mtlexport.errors import CheckpointError, ConfigError
from mtlexport.schema import choice, fraction, integer, optional
from mtlexport.sparsity.methods.arbiter import calibrate
from mtlexport.sparsity.methods.base import SPARSIFIERS, RunContext, Sparsifier, parse_options, task_gradients
from mtlexport.sparsity.methods.units import UnitSpace, build_units

__all__ = ["DiSparse", "DiSparseOptions", "layer_iou", "saliency"]


@dataclass(frozen=True)
class DiSparseOptions:
    """``batches`` for the saliencies; ``score`` of the pretrained variant; the dynamic
    variant's ``update_every`` (steps), ``drop_fraction`` and ``stop_at`` (fraction of training)."""

    batches: int = 10
    score: str = "gradflow"
    update_every: int = 50
    drop_fraction: float = 0.5
    stop_at: float | None = None
    channel_score: str = "mean"

    _checks = {"batches": integer(1), "score": choice("gradflow", "magnitude"), "update_every": integer(1),
               "drop_fraction": fraction, "stop_at": optional(fraction), "channel_score": choice("mean", "sum")}


def saliency(variant: str, grad: Tensor, weight: Tensor, score: str = "gradflow") -> Tensor:
    """Per-weight saliency: static ``|g * w|``; pretrained ``|g| * w^2`` (or ``|w|``); dynamic ``|g|``."""
    if variant == "static":
        return (grad * weight).abs()
    if variant == "pretrained":
        return weight.abs() if score == "magnitude" else grad.abs() * weight.square()
    return grad.abs()


def layer_iou(task_keep: Tensor, space: UnitSpace) -> dict[str, float]:
    """Per layer, |intersection| / |union| of the tasks' keep masks over its shared units."""
    shared = space.owner == -1
    inter = task_keep.all(dim=0) & shared
    union = task_keep.any(dim=0) & shared
    n = len(space.layers)
    i = torch.bincount(space.layer[inter], minlength=n).double()
    u = torch.bincount(space.layer[union], minlength=n).double()
    return {space.layers[k]: float(i[k] / u[k]) for k in range(n) if u[k] > 0}


@SPARSIFIERS.register("disparse")
class DiSparse(Sparsifier):
    """See the module docstring."""

    name = "disparse"

    def __init__(self, config: Any, ctx: RunContext) -> None:
        super().__init__(config, ctx)
        self.opts: DiSparseOptions = parse_options(DiSparseOptions, self.name, config.options)
        stored = ctx.stored or {}
        self.units = build_units(ctx.model, config.structure, config.scope or "all", tuple(ctx.tasks),
                                 ctx.input_shape, stored.get("groups"))
        self.kind, target = config.target
        self.goal = target if self.kind == "macs" else 1.0 - target  # value(keep) <= goal
        stop = self.opts.stop_at if self.opts.stop_at is not None else config.target_at
        self.stop_step = max(1, int(round(stop * ctx.total_steps)))
        self.keep = torch.ones(self.units.num_units, dtype=torch.bool)
        self.masks = self.units.masks(self.keep)
        self.landed = config.variant != "dynamic"
        self.keep_ratio = 1.0
        self.updates = 0
        self.iou: dict[str, float] = {}

    # ------------------------------------------------------------------ masks
    def value(self, keep: Tensor) -> float:
        """The target quantity of a mask: the MACs ratio, or the kept share of units."""
        if self.kind == "macs":
            return self.units.macs_ratio(keep)
        return 1.0 - self.units.removed_share(keep)

    def _set_keep(self, keep: Tensor) -> None:
        self.keep = keep.bool().clone()
        self.masks = self.units.masks(self.keep)
        self.units.apply(self.masks)

    def _scores(self, grads: list[list[Tensor]], variant: str | None = None) -> Tensor:
        params = self.units.params
        variant, score = variant or self.config.variant, self.opts.score
        scores = torch.stack([self.units.reduce([saliency(variant, g, p.detach(), score)
                                                 for g, p in zip(gs, params)]) for gs in grads])
        if self.units.seg is not None and self.opts.channel_score == "mean":
            scores = scores / self.units.sizes.view(1, -1)
        return scores

    def _floor(self, scores: Tensor) -> Tensor:
        """(U,) the most salient unit of every layer (summed over tasks of score / task maximum)."""
        total = (scores / scores.amax(dim=1, keepdim=True).clamp_min(1e-30)).sum(dim=0)
        n = len(self.units.layers)
        best = torch.full((n,), -1.0, dtype=torch.float64).scatter_reduce(0, self.units.layer, total.double(),
                                                                           "amax")
        first = torch.full((n,), self.units.num_units, dtype=torch.long).scatter_reduce(
            0, self.units.layer, torch.where(total.double() == best[self.units.layer],
                                             torch.arange(self.units.num_units),
                                             torch.full_like(self.units.layer, self.units.num_units)), "amin")
        floor = torch.zeros(self.units.num_units, dtype=torch.bool)
        floor[first[first < self.units.num_units]] = True
        return floor

    def _calibrate(self, scores: Tensor, base: Tensor | None = None, **kwargs: Any) -> Any:
        what = "MACs target" if self.kind == "macs" else "sparsity target"
        floor = self._floor(scores)
        base = floor if base is None else base | floor
        return calibrate(scores, self.units.owner, self.value, self.goal, rule=self.config.arbiter, what=what,
                         base=base, **kwargs)

    # ------------------------------------------------------------------ lifecycle
    def setup(self, batches: Iterable[Mapping[str, Tensor]]) -> None:
        variant = self.config.variant
        if variant == "pretrained":
            self._load_pretrained()
        if variant == "dynamic":
            self._set_keep(self._random_keep())
            return
        grads = task_gradients(self.ctx.model, self.ctx.tasks, batches, self.units.params, self.ctx.device,
                               self.opts.batches)
        cal = self._calibrate(self._scores(grads))
        self.keep_ratio = cal.keep_ratio
        self.iou = layer_iou(cal.task_keep, self.units)
        self._set_keep(cal.keep)

    def _load_pretrained(self) -> None:
        from mtlexport.train.checkpoint import load_checkpoint, state_dict_mismatch

        ckpt = load_checkpoint(self.config.init_from)
        problem = state_dict_mismatch(self.ctx.model.state_dict(), ckpt.state_dict)
        if problem:
            raise CheckpointError(f"sparsifier.init_from {self.config.init_from} does not fit this model: {problem}; "
                                  "give a dense checkpoint trained with the same model section")
        self.ctx.model.load_state_dict(ckpt.state_dict)

    def _random_keep(self) -> Tensor:
        """A random mask meeting the target: ERK-weighted for elements (a layer's keep
        probability grows with (sum of its dims) / (its size), Evci et al. 2020), uniform for channels."""
        gen = torch.Generator().manual_seed(self.ctx.seed)
        u = torch.rand(self.units.num_units, generator=gen, dtype=torch.float64).clamp_min(1e-12)
        if self.units.structure == "element":
            erk = torch.tensor([sum(p.shape) / p.numel() for p in self.units.params], dtype=torch.float64)
            key = u.log() / erk[self.units.layer]  # weighted sampling without replacement: keep the largest keys
        else:
            key = u
        owner = torch.full_like(self.units.owner, -1)
        return calibrate(key.view(1, -1), owner, self.value, self.goal, what="target").keep

    def after_backward(self) -> None:
        if not bool(self.keep.all()):
            self.units.apply(self.masks, [p.grad for p in self.units.params])

    def after_step(self, step: int, batch: Mapping[str, Tensor]) -> None:
        if not self.landed:
            if step >= self.stop_step:
                self.landed = True
            elif step % self.opts.update_every == 0:
                self._update(step, batch)
        self.units.apply(self.masks)

    def _update(self, step: int, batch: Mapping[str, Tensor]) -> None:
        """One drop-and-grow round (RigL with per-task growth through the arbiter)."""
        units = self.units
        rate = self.opts.drop_fraction / 2.0 * (1.0 + math.cos(math.pi * step / self.stop_step))
        active = self.keep
        rms = units.norms() / units.sizes.sqrt()
        # Magnitudes relative to the layer's mean over active units, so that drop is global
        # across layers without emptying the layers with small weights.
        n = len(units.layers)
        total = torch.zeros(n, dtype=torch.float64).index_add_(0, units.layer[active], rms[active])
        count = torch.bincount(units.layer[active], minlength=n).double().clamp_min(1.0)
        rel = rms / (total / count).clamp_min(1e-30)[units.layer]
        n_drop = int(rate * int(active.sum()))
        if n_drop == 0:
            return
        candidates = torch.nonzero(active).flatten()
        order = torch.sort(rel[candidates], stable=True).indices[:n_drop]
        dropped = torch.zeros_like(active)
        dropped[candidates[order]] = True
        after = active & ~dropped
        grads = task_gradients(self.ctx.model, self.ctx.tasks, [batch], units.params, self.ctx.device, 1)
        scores = self._scores(grads, "dynamic")
        cal = self._calibrate(scores, base=after, candidates=~after & ~dropped)
        self.iou = layer_iou(cal.task_keep | after.view(1, -1), units)
        self.updates += 1
        self._set_keep(cal.keep)

    # ------------------------------------------------------------------ reporting and resume
    def report(self) -> dict[str, float]:
        out = {"unit_sparsity": 100.0 * self.units.removed_share(self.keep),
               "weight_sparsity": 100.0 * self.units.weight_sparsity(), "keep_ratio": self.keep_ratio,
               "mask_updates": float(self.updates)}
        if self.units.macs is not None:
            out["macs_ratio"] = self.units.macs.ratio(self.units.macs.dead_channels())
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"keep": self.keep.clone(), "groups": self.units.groups, "landed": self.landed,
                "keep_ratio": self.keep_ratio, "updates": self.updates, "iou": dict(self.iou),
                "structure": self.units.structure}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        keep = torch.as_tensor(state["keep"]).bool()
        if keep.numel() != self.units.num_units or state.get("structure") != self.units.structure:
            raise ConfigError("the checkpoint's DiSparse mask does not fit this model; start a new run")
        self.landed, self.keep_ratio = bool(state["landed"]), float(state["keep_ratio"])
        self.updates, self.iou = int(state["updates"]), dict(state.get("iou", {}))
        self.keep = keep
        self.masks = self.units.masks(keep)
