"""AdapMTL (Xiang et al., ACM MM 2024): learnable soft thresholds per component, adaptive weights.

**Thresholds.** One learnable ``s_c`` per component (the shared backbone, each task head); the
deployed weights are ``W_eff = sign(W) * relu(|W| - sigmoid(s_c))`` (STR, paper eq. 2) for
elements, and for channel units the group soft threshold
``W_eff_g = W_g * relu(1 - sigmoid(s_c) * sqrt(n_g) / ||W_g||)``: a group dies when its RMS
weight falls below ``sigmoid(s_c)`` (``sqrt(n_g)`` is the group lasso's weighting; without it
``sigmoid < 1`` could never reach groups of norm > 1). The dense ``W`` is trained behind the
model's weights, which always hold ``W_eff``: gradients reach ``W`` and ``s`` through the exact
derivative of the threshold (eq. 4-5), so checkpoints are plain and their zeros exact.

``s`` gets the loss gradient plus a shared upward pull (the role the public code's weight
decay on ``s`` plays; it starts ``s`` at -30.5 and runs ~20k iterations), whose strength a
controller adapts so the overall sparsity follows a ramp to the target by 80% of
``target_at``; each component's loss gradient decides how far its own threshold follows. Once
the target is reached the thresholds stop moving (the paper drops their gradients). At
``target_at`` the run lands: the weakest live units are zeroed if the target was missed, the
mask is fixed and the rest of training fine-tunes ``W_eff``. ``s`` starts at
``options.threshold_init`` (default -8, threshold 3e-4) and moves with its own Adam
(betas (0.5, 0.999), the public code's) at ``options.threshold_lr`` (default: twice the rate
that would carry ``s`` to the threshold that meets the target on the initial weights by the
end of the ramp).

**Adaptive task weights** (``options.task_weights``), after ``options.warmup`` of training, from
each task's loss over a sliding window of ``options.window`` steps (default min(400, steps/8);
paper 400, public code 500), with ``r_t = mean|L_i - L_(i-1)| / mean L_i``:

- ``paper`` (eq. 6): ``beta_t = (r_t / mean_t r_t)^-1 * scale * |W_B| / sum_t |W_t|`` (parameter
  counts; stable tasks weigh more);
- ``code`` (public code): ``beta_t = T * q_t / sum_t q_t`` with ``q_t = mean(|L_i - L_(i-1)| / L_i)``
  (the code hard-codes 3 = its number of tasks; unstable tasks weigh more);
- ``off``: the config's ``loss_weighting``. Otherwise the loss is ``sum_t beta_t * L_t`` (1 before
  the warm-up) and the configured weighting is not used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mtlexport.errors import ConfigError
from mtlexport.schema import choice, fraction, integer, number, optional
from mtlexport.sparsity.methods.arbiter import calibrate
from mtlexport.sparsity.methods.base import SPARSIFIERS, RunContext, Sparsifier, parse_options
from mtlexport.sparsity.methods.units import UnitSpace, build_units

__all__ = ["AdapMTL", "AdapMTLOptions", "adaptive_weights", "soft_threshold"]

_GAIN, _MAX_STEP, _RAMP, _INTERVAL = 3.0, 0.3, 0.8, 4
_PULL_MIN, _PULL_MAX = 1e-9, 1e3


@dataclass(frozen=True)
class AdapMTLOptions:
    """See the module docstring."""

    threshold_init: float = -8.0
    threshold_lr: float | None = None
    task_weights: str = "paper"
    warmup: float = 0.25
    window: int | None = None
    scale: float = 1.0

    _checks = {"threshold_init": number(minimum=-60.0, maximum=10.0), "threshold_lr": optional(number(strict=True)),
               "task_weights": choice("paper", "code", "off"), "warmup": fraction, "window": optional(integer(2)),
               "scale": number(strict=True)}


def adaptive_weights(history: Tensor, mode: str, backbone_params: int, head_params: Sequence[int],
                     scale: float = 1.0) -> Tensor:
    """(T,) task weights from ``history`` (W, T): the last W losses of every task (module docstring)."""
    h = history.double()
    diffs = (h[1:] - h[:-1]).abs()
    eps = 1e-12
    if mode == "code":
        q = (diffs / h[1:].clamp_min(eps)).mean(dim=0)
        return h.shape[1] * q / q.sum().clamp_min(eps)
    r = diffs.mean(dim=0) / h.mean(dim=0).clamp_min(eps)
    relative = r / r.mean().clamp_min(eps)
    return scale * backbone_params / max(sum(head_params), 1) / relative.clamp_min(eps)


def soft_threshold(space: UnitSpace, weights: Sequence[Tensor], alpha: Tensor) -> list[Tensor]:
    """``W_eff`` of every parameter of ``space`` for per-unit thresholds ``alpha`` (U,), differentiable."""
    if space.seg is None:
        out, start = [], 0
        for w in weights:
            a = alpha[start:start + w.numel()].view(w.shape).to(w.dtype)
            out.append(torch.sign(w) * torch.relu(w.abs() - a))
            start += w.numel()
        return out
    seg = space.seg
    views = [w.reshape(shape) for w, shape in zip(weights, seg.shapes)]
    sq = torch.cat([v.square().sum(dim=(0, 2)) for v in views])
    group_sq = torch.zeros(seg.num_groups + 1, dtype=sq.dtype, device=sq.device).index_add(0, seg.index, sq)
    norm = (group_sq[:-1] + 1e-24).sqrt()
    limit = alpha.to(norm.dtype) * seg.sizes.to(norm.dtype).sqrt()
    factor = torch.cat([torch.relu(1.0 - limit / norm), torch.ones(1, dtype=norm.dtype, device=norm.device)])
    per_slice = factor.index_select(0, seg.index)
    out = []
    for v, w, part, (_, s, _) in zip(views, weights, per_slice.split([sh[1] for sh in seg.shapes]), seg.shapes):
        out.append((v * part.view(1, s, 1)).view(w.shape))
    return out


@SPARSIFIERS.register("adapmtl")
class AdapMTL(Sparsifier):
    """See the module docstring."""

    name = "adapmtl"

    def __init__(self, config: Any, ctx: RunContext) -> None:
        super().__init__(config, ctx)
        self.opts: AdapMTLOptions = parse_options(AdapMTLOptions, self.name, config.options)
        stored = ctx.stored or {}
        self.units = build_units(ctx.model, config.structure, config.scope or "all", tuple(ctx.tasks),
                                 ctx.input_shape, stored.get("groups"))
        self.kind, target = config.target
        self.goal = 1.0 - target if self.kind == "macs" else target  # the removed share to reach
        self.total = max(ctx.total_steps, 1)
        self.land_step = max(1, int(round(config.target_at * self.total)))
        self.comp = self.units.component()
        self.num_components = len(ctx.tasks) + 1
        self.s = torch.full((self.num_components,), float(self.opts.threshold_init), dtype=torch.float64)
        self.m = torch.zeros_like(self.s)
        self.v = torch.zeros_like(self.s)
        self.adam_t = 0
        self.pull = 1e-2
        self.lr_s = float(self.opts.threshold_lr or 0.0)
        self.frozen = self.landed = False
        self.keep = torch.ones(self.units.num_units, dtype=torch.bool)
        self.masks: list[Tensor] | None = None
        self.dense = [p.detach().clone() for p in self.units.params]  # W behind W_eff
        self.history: list[list[float]] = []
        self.beta = [1.0] * len(ctx.tasks)
        self.step = 0
        self.current = 0.0
        self._s_grad: Tensor | None = None
        heads = getattr(ctx.model, "heads", None)
        self.head_params = [sum(p.numel() for p in heads[t].parameters()) if heads is not None else 0
                            for t in ctx.tasks]
        backbone = getattr(ctx.model, "backbone", ctx.model)
        self.backbone_params = sum(p.numel() for p in backbone.parameters())
        window = self.opts.window or min(400, max(4, self.total // 8))
        self.window = int(window)
        self.warmup_step = int(self.opts.warmup * self.total)

    # ------------------------------------------------------------------ thresholds
    def alphas(self) -> Tensor:
        """(U,) the current threshold of every unit."""
        return torch.sigmoid(self.s)[self.comp]

    def _write_effective(self) -> None:
        with torch.no_grad():
            alpha = self.alphas().to(self.dense[0].device)
            for p, w in zip(self.units.params, soft_threshold(self.units, self.dense, alpha)):
                p.data.copy_(w)

    def removed(self) -> float:
        """The removed share the target is about, right now: MACs (1 - ratio) or unit sparsity."""
        if self.kind == "macs":
            return 1.0 - self.units.macs.ratio(self.units.macs.dead_channels())
        return 1.0 - float(self.units.alive().sum()) / max(self.units.num_units, 1)

    def setup(self, batches: Any) -> None:
        if not self.opts.threshold_lr:
            self.lr_s = self._default_lr()
        self.dense = [p.detach().clone() for p in self.units.params]
        self._write_effective()

    def _default_lr(self) -> float:
        """Twice the rate that carries ``s`` from its start to the threshold meeting the target on
        the initial weights (all components alike) by the end of the ramp."""
        units = self.units
        rms = units.norms() / units.sizes.sqrt()
        owner = torch.full_like(units.owner, -1)
        if self.kind == "macs":
            def value(keep: Tensor) -> float:
                return units.macs_ratio(keep)
            goal = 1.0 - self.goal
        else:
            def value(keep: Tensor) -> float:
                return 1.0 - units.removed_share(keep)
            goal = 1.0 - self.goal
        keep = calibrate(rms.view(1, -1), owner, value, goal, what="target").keep
        dropped = rms[~keep]
        alpha = float(dropped.max()) if dropped.numel() else float(rms.min())
        alpha = min(max(alpha, 1e-6), 0.999)
        distance = math.log(alpha / (1.0 - alpha)) - self.opts.threshold_init
        return max(2.0 * distance / max(_RAMP * self.land_step, 1.0), 1e-3)

    # ------------------------------------------------------------------ task weights
    def combine(self, losses: Mapping[str, Tensor], weighting: nn.Module) -> Tensor:
        if self.opts.task_weights == "off":
            return weighting(losses)
        names = list(self.ctx.tasks)
        self.history.append([float(losses[n].detach()) for n in names])
        del self.history[:-(self.window + 1)]
        if self.step >= self.warmup_step and len(self.history) > self.window:
            beta = adaptive_weights(torch.tensor(self.history[-self.window - 1:]), self.opts.task_weights,
                                    self.backbone_params, self.head_params, self.opts.scale)
            self.beta = [float(b) for b in beta]
        return sum(b * losses[n] for b, n in zip(self.beta, names))  # type: ignore[return-value]

    # ------------------------------------------------------------------ per step
    def after_backward(self) -> None:
        units = self.units
        grads = [p.grad for p in units.params]
        if self.landed:
            self.units.apply(self.masks, grads)  # type: ignore[arg-type]
            return
        dense = [w.detach().clone().requires_grad_(True) for w in self.dense]
        s = self.s.clone().requires_grad_(True)
        alpha = torch.sigmoid(s)[self.comp].to(dense[0].device)
        eff = soft_threshold(units, dense, alpha)
        pairs = [(e, g) for e, g in zip(eff, grads) if g is not None]
        if not pairs:
            return
        outs = torch.autograd.grad([e for e, _ in pairs], [*dense, s], [g for _, g in pairs], allow_unused=True)
        self._s_grad = outs[-1] if outs[-1] is not None else torch.zeros_like(self.s)
        with torch.no_grad():
            for p, w, g in zip(units.params, self.dense, outs[:-1]):
                p.data.copy_(w)  # the optimizer steps W ...
                p.grad = g if g is not None else torch.zeros_like(w)

    def after_step(self, step: int, batch: Any) -> None:
        self.step = step
        if self.landed:
            self.units.apply(self.masks)  # type: ignore[arg-type]
            return
        for w, p in zip(self.dense, self.units.params):
            w.copy_(p.data)  # ... and the model shows W_eff again
        if not self.frozen and self._s_grad is not None and bool(torch.isfinite(self._s_grad).all()):
            before = self.s.clone()
            self._step_thresholds(self._s_grad.double() - self.pull)
            self._write_effective()
            if self.removed() > self.goal:
                self._stop_at_target(before)
        self._s_grad = None
        self._write_effective()
        self.current = self.removed()
        if step >= self.land_step:
            self._land()
        elif step % _INTERVAL == 0 and not self.frozen:
            ramp = min(1.0, step / (_RAMP * self.land_step))
            error = (self.goal * ramp - self.current) / max(self.goal, 0.05)
            self.pull = min(max(self.pull * math.exp(max(-_MAX_STEP, min(_MAX_STEP, _GAIN * error))), _PULL_MIN),
                            _PULL_MAX)

    def _stop_at_target(self, before: Tensor) -> None:
        """The step crossed the target: take the largest part of it that does not overshoot
        (bisection on the step), then freeze the thresholds."""
        after = self.s.clone()
        lo, hi = 0.0, 1.0
        for _ in range(30):
            mid = (lo + hi) / 2
            self.s = before + mid * (after - before)
            self._write_effective()
            if self.removed() > self.goal:
                hi = mid
            else:
                lo = mid
        self.s = before + lo * (after - before)
        self.frozen = True

    def _step_thresholds(self, grad: Tensor) -> None:
        b1, b2 = 0.5, 0.999
        self.adam_t += 1
        self.m.mul_(b1).add_(grad, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        m_hat = self.m / (1 - b1 ** self.adam_t)
        v_hat = self.v / (1 - b2 ** self.adam_t)
        self.s.sub_(self.lr_s * m_hat / (v_hat.sqrt() + 1e-8))

    @torch.no_grad()
    def _land(self) -> None:
        """Fix the architecture: meet the target by zeroing the weakest live units if needed."""
        units = self.units
        alive = units.alive()
        if self.current < self.goal:
            rms = units.norms() / units.sizes.sqrt()
            owner = torch.full_like(units.owner, -1)
            scores = torch.where(alive, rms, torch.full_like(rms, -1.0))
            if self.kind == "macs":
                def value(keep: Tensor) -> float:
                    return units.macs_ratio(keep)
            else:
                def value(keep: Tensor) -> float:
                    return 1.0 - units.removed_share(keep)
            alive = calibrate(scores.view(1, -1), owner, value, 1.0 - self.goal, candidates=alive,
                              what="target").keep
        self.keep = alive
        self.masks = units.masks(alive)
        units.apply(self.masks)
        self.dense = []
        self.landed = self.frozen = True
        self.current = self.removed()

    # ------------------------------------------------------------------ reporting and resume
    def report(self) -> dict[str, float]:
        out = {"unit_sparsity": 100.0 * (1.0 - float(self.units.alive().sum()) / max(self.units.num_units, 1)),
               "weight_sparsity": 100.0 * self.units.weight_sparsity(), "threshold_pull": self.pull,
               "thresholds_frozen": float(self.frozen)}
        names = ["backbone", *self.ctx.tasks]
        for name, a in zip(names, torch.sigmoid(self.s).tolist()):
            out[f"threshold_{name}"] = a
        for name, b in zip(self.ctx.tasks, self.beta):
            out[f"beta_{name}"] = b
        if self.units.macs is not None:
            out["macs_ratio"] = self.units.macs.ratio(self.units.macs.dead_channels())
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"s": self.s.clone(), "m": self.m.clone(), "v": self.v.clone(), "adam_t": self.adam_t,
                "pull": self.pull, "lr_s": self.lr_s, "frozen": self.frozen, "landed": self.landed,
                "keep": self.keep.clone(), "dense": [w.detach().cpu().clone() for w in self.dense],
                "history": [list(h) for h in self.history], "beta": list(self.beta), "step": self.step,
                "current": self.current, "groups": self.units.groups, "structure": self.units.structure}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("structure") != self.units.structure or torch.as_tensor(state["keep"]).numel() != (
                self.units.num_units):
            raise ConfigError("the checkpoint's AdapMTL state does not fit this model; start a new run")
        self.s = torch.as_tensor(state["s"]).double().clone()
        self.m, self.v = torch.as_tensor(state["m"]).double().clone(), torch.as_tensor(state["v"]).double().clone()
        self.adam_t, self.pull, self.lr_s = int(state["adam_t"]), float(state["pull"]), float(state["lr_s"])
        self.frozen, self.landed = bool(state["frozen"]), bool(state["landed"])
        self.keep = torch.as_tensor(state["keep"]).bool()
        device = self.units.params[0].device
        self.dense = [torch.as_tensor(w).to(device).clone() for w in state["dense"]]
        self.history = [list(h) for h in state["history"]]
        self.beta, self.step = list(state["beta"]), int(state["step"])
        self.current = float(state["current"])
        self.masks = self.units.masks(self.keep) if self.landed else None
