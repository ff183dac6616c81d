"""Proximal optimizers for the channel-wise group lasso, and the optimizer registry.

``ProxAdam`` is AdamW followed, for param groups with ``group_lasso=True``, by the proximal
step of ``lam * sum_g sqrt(n_g) * ||W_g||_2`` (Less is More, eq. 3/6; Deleu & Bengio,
arXiv 2102.03869). The prox is the last operation of a step, so it owns the exact zeros.

Choice of the preconditioner ``D`` (differs from the reference code on purpose):
AdamW moves ``w`` (after the decoupled decay ``w <- (1 - lr*wd) * w``) to

    z = w - lr * m_hat / D,   m_hat = m / (1 - b1^t),   D = sqrt(v / (1 - b2^t)) + eps,

which is the minimiser of the quadratic model ``<m_hat, x - w> + 1/(2 lr) * sum_i D_i (x_i - w_i)^2``.
Adding the penalty and completing the square gives the proximal step in the same metric:

    x = argmin_x 1/(2 lr) * sum_i D_i (x_i - z_i)^2 + lam * sqrt(n_g) * ||x||
      = argmin_x 0.5 * sum_i D_i (x_i - z_i)^2 + tau * ||x||,   tau = lr * lam * sqrt(n_g),

so ``D`` is exactly AdamW's denominator and ``tau`` uses the learning rate of the step taken,
i.e. the *scheduled* ``lr`` of the param group at that step (the reference code also used the
scheduler's current value). The reference uses
``D_ref = sqrt(v) + eps`` (no bias correction of ``v``) with the same ``tau``, while its own step
``lr*sqrt(1-b2^t)/(1-b1^t) * m / D_ref`` corresponds to the metric ``D_ref / sqrt(1 - b2^t)``:
its prox over-thresholds by ``1/sqrt(1 - b2^t)`` early on (x31.6 at t=1, x3.2 at t=100,
-> 1 after a few thousand steps). Our choice is consistent with the step actually taken and
makes ``lam = 0`` reproduce ``torch.optim.AdamW`` exactly (same eps semantics, default 1e-8;
the reference used 1e-6).

Other departures from the reference: the penalty is not also added to the loss (it was counted
twice there); the optimizer is built once, so Adam's moments persist across epochs (the
reference rebuilt it every epoch, resetting them); AdamW's decoupled weight decay also acts on
the grouped weights, before the step and the prox (``z`` is taken after the decay).

Groups may span several tensors (``layout: "segments"``, from a ``GroupStructure``: coupled
groups), and ``freeze_zero_groups`` keeps the groups that are zero at that moment exactly zero
from then on (no gradient, zeroed moments). With ``lam > 0`` on float32 CPU parameters, AdamW's
arithmetic runs in torch's fused CPU kernel; ``lam = 0`` keeps the foreach path, bit-identical
to ``torch.optim.AdamW(foreach=True)``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from mtlexport.errors import ConfigError
from mtlexport.registry import Registry
from mtlexport.sparsity.groups import LAYOUTS
from mtlexport.sparsity.prox import prox_segments
from mtlexport.sparsity.segments import Segments

__all__ = ["OPTIMIZERS", "PROX_MODES", "ProxAdam", "ProxSGD", "build_optimizer"]

PROX_MODES = ("adaptive", "uniform")


def _check(lr: float, lam: float, prox: str) -> None:
    if lr < 0:
        raise ConfigError(f"learning rate must be >= 0, got {lr}")
    if lam < 0:
        raise ConfigError(f"group lasso strength lam must be >= 0, got {lam}")
    if prox not in PROX_MODES:
        raise ConfigError(f"unknown prox mode {prox!r}; valid modes: {', '.join(PROX_MODES)}")


@dataclass(eq=False)
class _Plan:
    """A group-lasso param group's layout on its device, rebuilt when shapes or freezing change."""

    key: tuple
    seg: Segments
    sqrt_sizes: Tensor  # (G,) float64: the penalty weights sqrt(n_g)
    frozen: Tensor | None  # (G,) bool on the device
    frozen_slices: list[Tensor | None]  # per parameter: slice indices of frozen groups
    keep: Tensor | None  # (G,) set ids for the keep-one rule (coupled groups)
    num_sets: int


def _layout_of(group: dict[str, Any], params: list[Tensor]) -> tuple[list[int], list[Tensor] | None, int]:
    """Group dims and per-slice ids of ``params`` (ids None: every slice its own group)."""
    layout = group.get("layout", "in_channel")
    if layout == "segments":
        positions = {id(p): i for i, p in enumerate(group["params"])}
        pick = [positions[id(p)] for p in params]
        return [group["group_dims"][i] for i in pick], [group["group_ids"][i] for i in pick], group["num_groups"]
    if layout not in LAYOUTS:
        valid = ", ".join([*LAYOUTS, "segments"])
        raise ConfigError(f"unknown group layout {layout!r}; valid layouts: {valid}")
    dim = LAYOUTS[layout]
    for p in params:
        if p.dim() <= dim:
            raise ConfigError(f"a {layout} group-lasso parameter needs >{dim} dims, got {tuple(p.shape)}")
    return [dim] * len(params), None, sum(p.shape[dim] for p in params)


def _build_plan(group: dict[str, Any], params: list[Tensor], key: tuple) -> _Plan:
    dims, ids, num_groups = _layout_of(group, params)
    shapes = [tuple(p.shape) for p in params]
    device = params[0].device
    if ids is None:
        seg = Segments.per_slice(shapes, dims, device=device)
    else:
        seg = Segments.build(shapes, dims, ids, num_groups, device=device)
    frozen = group.get("frozen")
    frozen_slices: list[Tensor | None] = [None] * len(params)
    frozen_dev = None
    if frozen is not None and bool(frozen.any()):
        frozen_dev = frozen.to(device)
        for i, mask in enumerate(seg.slice_mask(frozen_dev)):
            idx = torch.nonzero(mask).flatten()
            frozen_slices[i] = idx if idx.numel() else None
    keep = group.get("group_sets")
    num_sets = int(group.get("num_sets", 0))
    return _Plan(key, seg, seg.sizes.sqrt(), frozen_dev, frozen_slices,
                 keep.to(device) if keep is not None and num_sets else None, num_sets)


def _compute_copies(params: list[Tensor]) -> tuple[list[Tensor], list[int]]:
    """Contiguous float32/64 tensors to run the prox on (the parameters themselves when possible)."""
    xs, copied = [], []
    for i, p in enumerate(params):
        if p.dtype in (torch.float32, torch.float64) and p.is_contiguous():
            xs.append(p)
        else:
            dtype = torch.float64 if p.dtype == torch.float64 else torch.float32
            xs.append(p.to(dtype=dtype, memory_format=torch.contiguous_format, copy=True))
            copied.append(i)
    return xs, copied


class _Scratch:
    """One reusable flat buffer per (device, dtype), as large as the largest parameter seen.

    Lives beside the optimizer state, never in it: ``state_dict()`` stays weights-only loadable
    and identical with or without it, and the prox overwrites the buffer before reading it, so
    results do not depend on its contents (resume stays exact).
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple[torch.device, torch.dtype], Tensor] = {}

    def get(self, p: Tensor) -> Tensor:
        dtype = torch.float64 if p.dtype == torch.float64 else torch.float32
        key = (p.device, dtype)
        buf = self._buffers.get(key)
        if buf is None or buf.numel() < p.numel():
            buf = torch.empty(p.numel(), dtype=dtype, device=p.device)
            self._buffers[key] = buf
        return buf


def _dim_of(p: Tensor, view: tuple[int, int, int]) -> int:
    """The dimension of ``p`` that its (A, S, B) view groups along."""
    a = 1
    for d, n in enumerate(p.shape):
        if a == view[0] and n == view[1]:
            return d
        a *= n
    raise ValueError(f"no group dimension of size {view[1]} in shape {tuple(p.shape)}")


def _slice_nonzero(p: Tensor, view: tuple[int, int, int]) -> Tensor:
    """Per-slice count of non-zero elements of ``p`` viewed as (A, S, B)."""
    return (p.reshape(view) != 0).sum(dim=(0, 2))


def _adamw_functional(*args: Any, **kwargs: Any) -> None:
    from torch.optim.adamw import adamw

    adamw(*args, **kwargs)


def _use_fused(group: dict[str, Any], params: list[Tensor]) -> bool:
    """The fused AdamW kernel: for group-lasso groups with lam > 0, float32 CPU parameters."""
    return (group.get("group_lasso", False) and group["lam"] != 0 and group["lr"] != 0
            and all(p.device.type == "cpu" and p.dtype == torch.float32 for p in params))


def _grads_of(group: dict[str, Any]) -> tuple[list[Tensor], list[Tensor]]:
    params, grads = [], []
    for p in group["params"]:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            raise RuntimeError("sparse gradients are not supported")
        params.append(p)
        grads.append(p.grad)
    return params, grads


class _ProxOptimizer(Optimizer, ABC):
    """A gradient update (``_update``, returning the metric ``D`` or None for the identity)
    followed by the proximal step on the group-lasso param groups."""

    _scratch: _Scratch

    @abstractmethod
    def _update(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor]) -> list[Tensor] | None:
        """Apply the gradient update in place; return the per-element metric ``D`` (or None)."""

    _plans: dict[int, _Plan]
    _metric_scale: float = 1.0  # the D that ``_update`` returned is the true metric times this

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One optimizer step, then the proximal step on the group-lasso param groups."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads = _grads_of(group)
            if not params:
                continue
            plan = self._plan(group, params) if group.get("group_lasso", False) else None
            if plan is not None and plan.frozen is not None:
                # Frozen groups: zero gradient and zero moments, so weights and moments stay 0.
                for g, p, idx, d in zip(grads, params, plan.frozen_slices, plan.seg.shapes):
                    if idx is not None:
                        g.index_fill_(_dim_of(p, d), idx, 0.0)
            denoms = self._update(group, params, grads)
            if plan is not None:
                self._prox(group, plan, params, denoms)
        return loss

    def _plan(self, group: dict[str, Any], params: list[Tensor]) -> _Plan:
        if not hasattr(self, "_plans"):
            self._plans = {}
        key = (tuple(id(p) for p in params), tuple(p.shape for p in params), params[0].device,
               id(group.get("frozen")))
        plan = self._plans.get(id(group))
        if plan is None or plan.key != key:
            plan = _build_plan(group, params, key)
            self._plans[id(group)] = plan
        return plan

    def _prox(self, group: dict[str, Any], plan: _Plan, params: list[Tensor], denoms: list[Tensor] | None) -> None:
        """Replace the group-lasso groups of ``params`` by their prox, in place."""
        lam, lr = group["lam"], group["lr"]
        if lam == 0 or lr == 0:
            return
        tau = plan.sqrt_sizes * (lr * lam * (self._metric_scale if denoms is not None else 1.0))
        if plan.frozen is not None:
            tau = torch.where(plan.frozen, torch.full_like(tau, math.inf), tau)
        xs, copied = _compute_copies(params)
        Ds = None
        if denoms is not None:
            Ds = [d if d.dtype == x.dtype and d.is_contiguous() else
                  d.to(dtype=x.dtype, memory_format=torch.contiguous_format) for d, x in zip(denoms, xs)]
        uniform = group.get("prox", "adaptive") == "uniform"
        prox_segments(xs, Ds, tau, plan.seg, uniform=uniform, keep=plan.keep, num_sets=plan.num_sets,
                      work=self._scratch.get(max(xs, key=lambda t: t.numel())),
                      memo=group.setdefault("prox_memo", {"skip": 0}))
        for i in copied:
            params[i].copy_(xs[i])

    @torch.no_grad()
    def freeze_zero_groups(self) -> int:
        """Freeze every group that is exactly zero now: from here on it gets no gradient, its
        moments are zero and it stays exactly zero. Returns the number of newly frozen groups."""
        newly = 0
        for group in self.param_groups:
            if not group.get("group_lasso", False) or not group["params"]:
                continue
            params = list(group["params"])
            plan = self._plan(group, params)
            zero = self.zero_groups(group, plan)
            old = group.get("frozen")
            frozen = zero.cpu() if old is None else (old.to(torch.bool) | zero.cpu())
            newly += int(frozen.sum()) - (int(old.sum()) if old is not None else 0)
            group["frozen"] = frozen
            plan = self._plan(group, params)
            for p, idx, d in zip(params, plan.frozen_slices, plan.seg.shapes):
                if idx is None:
                    continue
                for buf in self.state.get(p, {}).values():
                    if isinstance(buf, Tensor) and buf.shape == p.shape:
                        buf.index_fill_(_dim_of(p, d), idx, 0.0)
        return newly

    @torch.no_grad()
    def zero_groups(self, group: dict[str, Any], plan: _Plan | None = None) -> Tensor:
        """(G,) bool: the groups of a group-lasso param group whose every element is 0.0 now."""
        params = list(group["params"])
        plan = plan or self._plan(group, params)
        nonzero = [_slice_nonzero(p.detach(), shape) for p, shape in zip(params, plan.seg.shapes)]
        return plan.seg.reduce(nonzero) == 0


class ProxAdam(_ProxOptimizer):
    """AdamW plus an adaptive proximal step for param groups with ``group_lasso=True``.

    Param-group keys: ``lr, betas, eps, weight_decay`` (as AdamW), ``lam`` (penalty strength),
    ``prox`` ("adaptive": exact prox in AdamW's diagonal metric; "uniform": per-group mean of
    that metric, a faster closed-form approximation), ``group_lasso`` and ``layout``
    (see ``split_param_groups``). With ``lam = 0`` it is ``torch.optim.AdamW``.
    The moments persist across epochs: build it once per run.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        *,
        lam: float = 0.0,
        prox: str = "adaptive",
    ) -> None:
        _check(lr, lam, prox)
        if not 0.0 <= betas[0] < 1.0 or not 0.0 <= betas[1] < 1.0:
            raise ConfigError(f"betas must lie in [0, 1), got {betas}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, lam=lam,
                        prox=prox, group_lasso=False, layout="in_channel")
        super().__init__(params, defaults)
        self._scratch = _Scratch()
        self._plans = {}

    def _update(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor]) -> list[Tensor]:
        """AdamW's multi-tensor update (same operations as torch's foreach path); returns ``D``."""
        beta1, beta2 = group["betas"]
        lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
        exp_avgs, exp_avg_sqs, steps = [], [], []
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = torch.tensor(0.0, dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        if _use_fused(group, params):
            # With the group lasso on, AdamW's own arithmetic runs in torch's fused CPU kernel (one
            # pass per tensor instead of eight); D is then rebuilt from the new second moment, as
            # that kernel computes it. lam = 0 keeps the foreach path below: bit-identical to AdamW.
            _adamw_functional(params, grads, exp_avgs, exp_avg_sqs, [], steps, fused=True, amsgrad=False,
                                    beta1=beta1, beta2=beta2, lr=lr, weight_decay=wd, eps=eps, maximize=False)
            # D = sqrt(v) / c + eps with c = sqrt(1 - beta2^t). The prox only depends on D / tau, so
            # when every tensor is at the same step t, c * D = sqrt(v) + c * eps with tau * c saves a pass.
            counts = [s.item() for s in steps]
            corr = [(1 - beta2**t) ** 0.5 for t in counts]
            denoms = torch._foreach_sqrt(exp_avg_sqs)
            if len(set(counts)) == 1:
                torch._foreach_add_(denoms, corr[0] * eps)
                self._metric_scale = corr[0]
            else:
                torch._foreach_div_(denoms, corr)
                torch._foreach_add_(denoms, eps)
                self._metric_scale = 1.0
            return list(denoms)
        self._metric_scale = 1.0
        torch._foreach_add_(steps, 1.0)
        if wd != 0:
            torch._foreach_mul_(params, 1 - lr * wd)
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
        counts = [s.item() for s in steps]
        step_size = [(lr / (1 - beta1**t)) * -1 for t in counts]
        bias_correction2_sqrt = [(1 - beta2**t) ** 0.5 for t in counts]
        denoms = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denoms, bias_correction2_sqrt)
        torch._foreach_add_(denoms, eps)
        torch._foreach_addcdiv_(params, exp_avgs, denoms, step_size)
        return list(denoms)


class ProxSGD(_ProxOptimizer):
    """SGD (as ``torch.optim.SGD``) plus group soft-thresholding (paper eq. 5).

    After the step, ``x = max(0, 1 - lr * lam * sqrt(n_g) / ||z||) * z`` for every group of a
    param group with ``group_lasso=True``. With ``lam = 0`` it is ``torch.optim.SGD``.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-2,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        lam: float = 0.0,
    ) -> None:
        _check(lr, lam, "uniform")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ConfigError("nesterov momentum requires momentum > 0 and dampening = 0")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, lam=lam, prox="uniform", group_lasso=False, layout="in_channel")
        super().__init__(params, defaults)
        self._scratch = _Scratch()
        self._plans = {}

    def _update(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor]) -> None:
        """``torch.optim.SGD``'s update; the prox then uses the identity metric."""
        lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
        if wd != 0:
            grads = torch._foreach_add(grads, params, alpha=wd)
        if momentum != 0:
            bufs = []
            for p, g in zip(params, grads):
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(g).detach()
                else:
                    state["momentum_buffer"].mul_(momentum).add_(g, alpha=1 - group["dampening"])
                bufs.append(state["momentum_buffer"])
            grads = torch._foreach_add(grads, bufs, alpha=momentum) if group["nesterov"] else bufs
        torch._foreach_add_(params, grads, alpha=-lr)


# --- registry ---------------------------------------------------------------------------

OptimizerFactory = Callable[..., Optimizer]
OPTIMIZERS: Registry[OptimizerFactory] = Registry("optimizer")


@OPTIMIZERS.register("adamw")
def _adamw(param_groups: list[dict], *, lr: float, weight_decay: float, betas: tuple[float, float],
           eps: float, momentum: float, lam: float, prox: str) -> Optimizer:
    if lam != 0:
        raise ConfigError("adamw does not apply the group lasso (lam > 0); use proxadam or proxsgd")
    return torch.optim.AdamW(param_groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


@OPTIMIZERS.register("proxadam")
def _proxadam(param_groups: list[dict], *, lr: float, weight_decay: float, betas: tuple[float, float],
              eps: float, momentum: float, lam: float, prox: str) -> Optimizer:
    return ProxAdam(param_groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, lam=lam, prox=prox)


@OPTIMIZERS.register("proxsgd")
def _proxsgd(param_groups: list[dict], *, lr: float, weight_decay: float, betas: tuple[float, float],
             eps: float, momentum: float, lam: float, prox: str) -> Optimizer:
    return ProxSGD(param_groups, lr=lr, momentum=momentum, weight_decay=weight_decay, lam=lam)


def build_optimizer(
    name: str,
    param_groups: list[dict],
    *,
    lr: float,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    momentum: float = 0.0,
    lam: float = 0.0,
    prox: str = "adaptive",
) -> Optimizer:
    """Build the optimizer registered as ``name`` (adamw, proxadam, proxsgd) over ``param_groups``.

    ``param_groups`` normally comes from ``split_param_groups``; options a given optimizer
    does not use (``momentum`` for Adam, ``betas``/``eps``/``prox`` for SGD) are ignored.
    """
    factory = OPTIMIZERS.get(name)
    _check(lr, lam, prox)
    return factory(param_groups, lr=lr, weight_decay=weight_decay, betas=tuple(betas), eps=eps,
                   momentum=momentum, lam=lam, prox=prox)
