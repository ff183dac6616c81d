"""Proximal operators of the group lasso penalty ``tau_g * ||x_g||_2``, over groups that may span
several tensors.

``prox_segments`` is the engine: it works in place on a list of tensors whose slices a
``Segments`` layout assigns to groups (a group may hold slices of several tensors: the input
slices of every reader of one removable channel). Per-group sums are one reduction per tensor
and one ``index_add_``; nothing loops over groups in Python. ``prox_group_l2`` and
``prox_group_l2_uniform`` are the single-tensor forms (groups along ``group_dim``), pure
functions returning a new tensor (or writing ``out``, which may be ``z``).

Accuracy: element-wise work runs in float32 (float64 for float64 inputs); per-group scalars
are float64. Sums of squares fall back to float64 for tensors whose float32 sums overflow or
lose precision (entries near 1e20 or 1e-20). ``tau = 0`` never zeroes a group. Newton stops
on the error of ``theta = ||x||`` scaled to the error it causes in ``x`` (relative to
``||x||``), so groups with a badly conditioned metric are solved as accurately as the others.

Host synchronisation: with ``sync_free`` (the default on CUDA) nothing reads a device value on
the host; the groups that need Newton run a fixed number of masked iterations over the full
tensors. Otherwise (CPU) they are compacted first, which is cheaper there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from mtlexport.sparsity.segments import Segments

__all__ = ["group_sum", "prox_group_l2", "prox_group_l2_uniform", "prox_segments"]

_F64 = torch.float64
_TINY = torch.finfo(_F64).tiny
# Float32 sums of squares below this may have lost precision to underflow: recomputed in float64.
_F32_SAFE_MIN = 1e-30
# Newton runs on a compact copy of the unsolved groups when they hold at most this share of the
# elements; otherwise one more pass over everything (the bound theta1) is cheaper.
_COMPACT_SHARE = 0.25


def _default_tol(dtype: torch.dtype) -> float:
    return 1e-12 if dtype == _F64 else 1e-6


def _slice_sums(x3: Tensor) -> Tensor:
    """Per-slice sums of a contiguous (A, S, B) tensor, shape (S,), in its dtype.

    Reduces the long dimension A first (a fast column reduction), then B.
    """
    A, S, B = x3.shape
    if A == 1:
        return x3.view(S, B).sum(1)
    cols = x3.view(A, S * B).sum(0)
    return cols.view(S, B).sum(1) if B > 1 else cols


def _slice_sumsq(x3: Tensor, work: Tensor, exact: bool) -> Tensor:
    """Per-slice sums of squares; ``exact`` squares in float64 (no overflow or underflow)."""
    if exact:
        return torch.linalg.vector_norm(x3, dim=(0, 2), dtype=_F64).square()
    return _slice_sums(torch.mul(x3, x3, out=work[: x3.numel()].view(x3.shape)))


def _sumsq(views: Sequence[Tensor], seg: Segments, work: Tensor, exact: bool, tau: Tensor) -> Tensor:
    """Per-group sums of squares over every tensor of the layout, float64 (G,).

    Float32 sums that overflowed, lost precision, or are 0 where a tiny ``tau`` could tell an
    underflowed group from a zero one, are recomputed in float64 (NaN propagates as it should).
    """
    sums = seg.reduce([_slice_sumsq(v, work, exact) for v in views])
    if exact:
        return sums
    bad = ~torch.isfinite(sums) | ((sums > 0) & (sums < _F32_SAFE_MIN))
    bad |= (sums == 0) & (tau > 0) & (tau < _F32_SAFE_MIN ** 0.5)
    if bool(bad.any()):
        return _sumsq(views, seg, work, True, tau)
    return sums


def _scratch(work: Tensor | None, views: Sequence[Tensor]) -> Tensor:
    n = max((v.numel() for v in views), default=0)
    like = views[0] if views else torch.empty(0)
    if work is None or work.numel() < n or work.dtype != like.dtype or work.device != like.device:
        return torch.empty(n, dtype=like.dtype, device=like.device)
    return work.view(-1)


def _rescue(active: Tensor, score: Tensor, tau: Tensor, keep: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Keep the strongest group of every set (``keep[g]`` = set id, -1 none) that would lose all.

    Mirrors the surgeon's rule that a layer keeps one channel: a coupled channel set (``n``
    sets) whose every group the prox would zero keeps the group with the largest ``score``
    (``||D z|| / tau``) unshrunk (its tau set to 0). Groups with ``tau = inf`` (frozen) are never
    rescued.
    """
    if n == 0:
        return active, tau
    idx = torch.where(keep < 0, torch.full_like(keep, n), keep)
    alive = torch.zeros(n + 1, dtype=_F64, device=tau.device).index_add_(0, idx, active.to(_F64))
    score = torch.where(torch.isinf(tau) | (keep < 0), torch.full_like(score, -1.0), score)
    best = torch.full((n + 1,), -math.inf, dtype=_F64, device=tau.device).scatter_reduce_(0, idx, score, "amax")
    rescue = (alive[idx] == 0) & (score == best[idx]) & (score >= 0) & (keep >= 0)
    return active | rescue, torch.where(rescue, torch.zeros_like(tau), tau)


def prox_segments(
    xs: Sequence[Tensor],
    Ds: Sequence[Tensor] | None,
    tau: Tensor,
    seg: Segments,
    *,
    uniform: bool = False,
    keep: Tensor | None = None,
    num_sets: int = 0,
    tol: float | None = None,
    max_iter: int = 30,
    sync_free: bool | None = None,
    work: Tensor | None = None,
    memo: dict | None = None,
) -> Tensor:
    """In place, replace the groups of ``xs`` (holding ``z``) by the group lasso prox.

    Solves ``x_g = argmin 0.5 * sum_i D_i (x_i - z_i)^2 + tau_g * ||x_g||_2`` per group
    (``Ds``: the per-element metric ``D > 0``, one tensor per ``xs`` entry; ``None``: the identity).
    A group is exactly zero when ``||D z_g|| <= tau_g``; otherwise ``x_i = theta / (theta +
    tau / D_i) * z_i`` where ``theta = ||x_g||`` solves ``sum_i z_i^2 / (theta + tau / D_i)^2 = 1``
    (Deleu & Bengio, arXiv 2102.03869). ``uniform`` replaces ``D`` by its per-group mean (a
    closed-form soft-threshold). ``tau`` is float64 (G,); ``inf`` zeroes a group, ``0`` leaves it.
    Ungrouped slices are left as they are. ``keep`` (long (G,), ids of ``num_sets`` channel sets,
    -1 for none) enables the rescue rule of ``_rescue``. ``memo`` (a dict the caller keeps
    between calls on the same groups) remembers when the cheap interval bound did not settle the
    groups, and then skips its passes for a few calls: the result stays within ``tol`` but takes
    another path, so a caller that needs bit-exact replays (resume) must save the memo with its
    state (ProxAdam keeps it in the param group). ``xs`` must be contiguous float32/float64
    tensors matching ``seg``.
    Returns the (G,) boolean mask of the groups that are now zero.
    """
    if sync_free is None:
        sync_free = bool(xs) and xs[0].device.type == "cuda"
    cdt = xs[0].dtype if xs else torch.float32
    tol = _default_tol(cdt) if tol is None else tol
    views = seg.views(xs)
    dviews = seg.views(Ds) if Ds is not None else None
    W = _scratch(work, views)
    tau = tau.to(_F64)
    zz = _sumsq(views, seg, W, sync_free, tau)
    z_norm = zz.sqrt()
    if uniform or dviews is None:
        d = seg.reduce([_slice_sums(D3) for D3 in dviews]) / seg.sizes if dviews is not None else torch.ones_like(zz)
        score = d * z_norm
        active = ~(score <= tau) | (tau == 0)
        if keep is not None:
            active, tau = _rescue(active, score / tau, tau, keep, num_sets)
        scale = torch.where(active, 1.0 - tau / score.clamp_min(_TINY), torch.zeros_like(tau)).clamp_min(0.0)
        scale = torch.where(tau == 0, torch.ones_like(scale), scale)
        for x3, s in zip(views, seg.spread(scale, cdt, fill=1.0)):
            x3.mul_(s)
        return ~active

    # Ungrouped slices are restored bit for bit at the end (D z / D may differ from z by an ulp).
    kept = [None if u is None else x3.index_select(1, u) for x3, u in zip(views, seg.ungrouped)]
    for x3, D3 in zip(views, dviews):
        x3.mul_(D3)  # a = D z; x3 holds a until the final division
    a_norm = _sumsq(views, seg, W, sync_free, tau).sqrt()
    # ``~(<=)`` so that a NaN group propagates (as it would in AdamW) instead of being zeroed.
    active = ~(a_norm <= tau) | (tau == 0)
    if keep is not None:
        active, tau = _rescue(active, a_norm / tau, tau, keep, num_sets)
    shrink = active & (tau > 0)
    one = torch.ones_like(a_norm)
    ratio = torch.where(shrink, tau / a_norm, torch.zeros_like(a_norm))  # in [0, 1) where shrinking
    # psi(theta) = s(theta)^(-1/2) - 1 (s = sum_i z_i^2 / (theta + tau / D_i)^2) is concave and
    # increasing with psi(0) = ratio - 1 and psi' >= 1/||z||. theta0, the root of the line
    # through (0, psi(0)) of slope 1/||z||, is an upper bound of the root; one step of slope
    # 1/||z|| from it gives theta1, a lower bound, and by concavity root - theta1 <= e1 with
    # e1 = (theta0 - theta1)^2 / theta0.
    theta0 = torch.where(shrink, z_norm * (1.0 - ratio), one)
    # An error de in theta moves x_i by |z_i| c_i theta / (theta + c_i)^2 * de / theta (c_i = tau / D_i),
    # so ||dx|| / ||x|| <= de / theta * q with q = c_max / (theta + c_max): the criterion in x.
    eps = torch.finfo(cdt).eps
    use_range = sync_free or memo is None or memo.get("skip", 0) <= 0
    if use_range:
        d_min = -seg.reduce_max([-_slice_amin(D3) for D3 in dviews])
        c_max = tau / d_min.clamp_min(_TINY)
    else:
        # Skipping the pass over D for its minimum: c_max = inf makes every q below equal 1, its
        # upper bound, so the accuracy criteria only get stricter.
        c_max = torch.full_like(tau, math.inf)
    lower = z_norm - c_max
    todo = shrink
    if use_range:
        # Without evaluating s: the root lies in [max(||z|| - c_max, (||D z|| - tau) / max(D)), theta0]
        # (s(theta) >= ||z||^2 / (theta + c_max)^2 and >= ||D z||^2 / (max(D) theta + tau)^2). When
        # that interval is already tight enough (small shrinkage: most groups in training), theta0 is used.
        lower = _lower_bound(lower, a_norm, tau, seg.reduce_max([_slice_amax(D3) for D3 in dviews]))
        q0 = c_max / (lower.clamp_min(0.0) + c_max).clamp_min(_TINY)
        noise0 = 4 * eps * z_norm / theta0.clamp_min(_TINY)
        by_range = (lower > 0) & (((theta0 - lower) / lower.clamp_min(_TINY) + noise0) * q0 <= tol)
        todo = shrink & ~by_range
    theta = theta0
    pending = not sync_free and bool(todo.any())
    compact = use_range and pending and _share(seg, todo) <= _COMPACT_SHARE
    if memo is not None and not sync_free:
        # When the bound leaves too much for Newton, skip its pass for the next calls.
        memo["skip"] = (0 if compact or not pending else 8) if use_range else memo["skip"] - 1
    if compact:
        # Few groups left: Newton on a compact copy of just those, from a lower bound.
        theta = _newton_compact(views, dviews, seg, tau, theta0, lower, theta, q0, todo, max_iter, 0.01 * tol)
    elif sync_free or pending:
        s0 = _ratio_sumsq(views, dviews, seg, theta0, tau, W, cdt)
        theta1 = torch.where(shrink, theta0 - z_norm * (s0.rsqrt() - 1.0), theta0)
        rel = (theta0 - theta1).square() / theta0 / theta1.clamp_min(_TINY)
        q = torch.where(torch.isinf(c_max), torch.ones_like(c_max),
                        c_max / (theta1.clamp_min(0.0) + c_max).clamp_min(_TINY))
        # theta1 inherits the working precision of s0 amplified by ||z|| / theta (heavy shrinkage).
        noise = 4 * eps * z_norm / theta1.clamp_min(_TINY)
        certified = (theta1 > 0) & (rel < 0.5) & ((rel + noise) * q <= tol)
        theta = torch.where(todo, theta1, theta0)
        todo = todo & ~certified & ~torch.isnan(theta1)
        lower = torch.maximum(theta1, lower).clamp_min(0.0)
        if sync_free:
            theta = _newton_masked(views, dviews, seg, tau, theta0, lower, theta, q, todo, max_iter,
                                   0.01 * tol)
        elif bool(todo.any()):
            theta = _newton_compact(views, dviews, seg, tau, theta0, lower, theta, q, todo, max_iter,
                                    0.01 * tol)
    # x = theta a / (D theta + tau) = a / (D + tau / theta). Zeroed groups: kappa = inf -> exact zeros
    # (-0.0 for negative entries, which equals 0.0). tau = 0: x = a / D = z.
    kappa = torch.where(active, tau / theta, torch.full_like(theta, math.inf))
    kappa = torch.where(tau == 0, torch.zeros_like(kappa), kappa)
    for x3, D3, k in zip(views, dviews, seg.spread(kappa, cdt, fill=0.0)):
        x3.div_(torch.add(D3, k, out=W[: x3.numel()].view(x3.shape)))
    for x3, u, orig in zip(views, seg.ungrouped, kept):
        if u is not None:
            x3.index_copy_(1, u, orig)
    return ~active


def _slice_amin(D3: Tensor) -> Tensor:
    """Per-slice minimum, reducing the long dimension A first (as ``_slice_sums``)."""
    A, S, B = D3.shape
    cols = D3.view(A, S * B).amin(0) if A > 1 else D3.view(S * B)
    return cols.view(S, B).amin(1) if B > 1 else cols


def _slice_amax(D3: Tensor) -> Tensor:
    A, S, B = D3.shape
    cols = D3.view(A, S * B).amax(0) if A > 1 else D3.view(S * B)
    return cols.view(S, B).amax(1) if B > 1 else cols


def _ratio_sumsq(views: Sequence[Tensor], dviews: Sequence[Tensor], seg: Segments, theta: Tensor, tau: Tensor,
                 W: Tensor, cdt: torch.dtype) -> Tensor:
    """Per-group ``sum_i (a_i / (D_i theta + tau))^2`` with ``a = D z`` held in ``views``."""
    parts = []
    for x3, D3, th, ta in zip(views, dviews, seg.spread(theta, cdt, 1.0), seg.spread(tau, cdt, 0.0)):
        w = W[: x3.numel()].view(x3.shape)
        torch.addcmul(ta, D3, th, out=w)
        torch.div(x3, w, out=w)
        parts.append(_slice_sums(w.mul_(w)))
    return seg.reduce(parts)


def _newton_step(views: Sequence[Tensor], dviews: Sequence[Tensor], seg: Segments, theta: Tensor,
                 tau: Tensor) -> Tensor:
    """``psi(theta) / psi'(theta)`` per group: ``(s^(3/2) - s) / t`` with s = sum (a r)^2,
    t = sum (a r)^2 r D and r = 1 / (D theta + tau)."""
    s_parts, t_parts = [], []
    # Accumulated in float64: with heavy shrinkage theta's accuracy is that of s times ||z|| / theta.
    for a3, D3, th, ta in zip(views, dviews, seg.spread(theta, _F64, 1.0), seg.spread(tau, _F64, 0.0)):
        r = torch.addcmul(ta, D3, th).reciprocal_()
        e2 = torch.mul(a3, r).square_()
        s_parts.append(_slice_sums(e2))
        t_parts.append(_slice_sums(e2.mul_(r).mul_(D3)))
    s, t = seg.reduce(s_parts), seg.reduce(t_parts)
    return (s * s.sqrt() - s) / t.clamp_min(_TINY)


def _newton_update(theta: Tensor, step: Tensor, lower: Tensor, upper: Tensor, q: Tensor, tol: float,
                   eps: float) -> tuple[Tensor, Tensor]:
    """Newton from a lower bound (psi concave, increasing: the iterates rise monotonically)."""
    new = torch.minimum(torch.maximum(theta + step, lower), upper)
    moved = (new - theta).abs()
    done = (moved * q <= tol * new) | (moved <= 4 * eps * new)
    return new, done


def _share(seg: Segments, todo: Tensor) -> float:
    """Share of all elements that lie in the groups of ``todo``."""
    total = float(seg.sizes.sum())
    return float(seg.sizes[todo].sum()) / total if total else 0.0


def _lower_bound(lower: Tensor, a_norm: Tensor, tau: Tensor, d_max: Tensor) -> Tensor:
    # (||D z|| - tau) / max(D) is a lower bound too (s >= ||D z||^2 / (max(D) theta + tau)^2).
    return torch.maximum(lower, (a_norm - tau) / d_max)


def _newton_masked(views, dviews, seg, tau, upper, lower, theta, q, todo, max_iter, tol) -> Tensor:
    """Fixed masked Newton iterations over the full tensors: no host synchronisation."""
    eps = torch.finfo(views[0].dtype).eps
    theta = torch.where(todo, lower, theta)
    for _ in range(min(max_iter, 8)):
        step = _newton_step(views, dviews, seg, torch.where(todo, theta, torch.ones_like(theta)), tau)
        new, _ = _newton_update(theta, step, theta, upper, q, tol, eps)
        theta = torch.where(todo, new, theta)
    return theta


def _newton_compact(views, dviews, seg, tau, upper, lower, theta, q, todo, max_iter, tol) -> Tensor:
    """Newton on a compact copy of only the slices of the groups in ``todo`` (host-driven)."""
    groups = torch.nonzero(todo).flatten()
    k = groups.numel()
    remap = torch.full((seg.num_groups + 1,), -1, dtype=torch.long, device=tau.device)
    remap[groups] = torch.arange(k, device=tau.device)
    local = remap[seg.index]
    sub_views, sub_d, shapes, ids = [], [], [], []
    for part, a3, D3 in zip(local.split([s for _, s, _ in seg.shapes]), views, dviews):
        pick = torch.nonzero(part >= 0).flatten()
        if pick.numel() == 0:
            continue
        sub_views.append(a3.index_select(1, pick))
        sub_d.append(D3.index_select(1, pick))
        shapes.append(tuple(sub_views[-1].shape))
        ids.append(part[pick])
    sub = Segments.build(shapes, [1] * len(shapes), [i.cpu() for i in ids], k, device=tau.device)
    eps = torch.finfo(sub_views[0].dtype).eps
    t_tau, t_q, t_upper = tau[groups], q[groups], upper[groups]
    t_theta = lower[groups]
    done = torch.zeros(k, dtype=torch.bool, device=tau.device)
    for _ in range(max_iter):
        step = _newton_step(sub_views, sub_d, sub, t_theta, t_tau)
        new, finished = _newton_update(t_theta, step, t_theta, t_upper, t_q, tol, eps)
        t_theta = torch.where(done, t_theta, new)
        done |= finished
        if bool(done.all()):
            break
    out = theta.clone()
    out[groups] = t_theta
    return out


# ----------------------------------------------------------------------------- single tensors
def _single(z: Tensor, group_dim: int, out: Tensor | None) -> tuple[Tensor, Segments, Tensor]:
    """A contiguous compute copy of ``z`` (float32/64), its per-slice layout, and where it goes."""
    if z.dim() == 0:
        raise ValueError("expected a tensor with a group dimension")
    if out is not None and out.shape != z.shape:
        raise ValueError(f"out must have z's shape {tuple(z.shape)}, got {tuple(out.shape)}")
    cdt = _F64 if z.dtype == _F64 else torch.float32
    x = z.to(dtype=cdt, memory_format=torch.contiguous_format, copy=True)
    seg = Segments.per_slice([tuple(z.shape)], [group_dim % z.dim()], device=z.device)
    return x, seg, out


def _finish(x: Tensor, z: Tensor, out: Tensor | None) -> Tensor:
    if out is not None:
        return out.copy_(x)
    return x if x.dtype == z.dtype else x.to(z.dtype)


def _group_vector(value: Tensor | float, groups: int, device: torch.device, name: str) -> Tensor:
    t = torch.as_tensor(value, dtype=_F64, device=device)
    if t.dim() != 0 and t.shape != (groups,):
        raise ValueError(f"expected a scalar or shape ({groups},) {name}, got {tuple(t.shape)}")
    return t.expand(groups).clone()


def group_sum(x: Tensor, group_dim: int = 0) -> Tensor:
    """Sum of each group's elements (groups along ``group_dim``), float64 of shape (G,)."""
    shape = Segments.view_shape(x.shape, group_dim)
    return _slice_sums(x.contiguous().view(shape)).to(_F64)


def prox_group_l2_uniform(
    z: Tensor, d: Tensor | float, tau: Tensor | float, *, group_dim: int = 0, out: Tensor | None = None,
    work: Tensor | None = None,
) -> Tensor:
    """Group soft-thresholding: ``argmin_x 0.5*d*||x - z||^2 + tau*||x||`` per group.

    ``x = (1 - tau / (d * ||z||))_+ * z``; ``d > 0`` and ``tau`` are scalars or of shape (G,).
    """
    x, seg, out = _single(z, group_dim, out)
    G = seg.num_groups
    d64 = _group_vector(d, G, z.device, "d")
    tau64 = _group_vector(tau, G, z.device, "tau")
    # Solve in the metric d: ||d z|| <= tau zeroes, else scale by 1 - tau / (d ||z||).
    prox_segments([x], None, tau64 / d64, seg, work=work)
    return _finish(x, z, out)


def prox_group_l2(
    z: Tensor,
    D: Tensor,
    tau: Tensor | float,
    *,
    group_dim: int = 0,
    max_iter: int = 30,
    tol: float | None = None,
    out: Tensor | None = None,
    work: Tensor | None = None,
) -> Tensor:
    """Group lasso prox in a diagonal metric for every group of one tensor (see ``prox_segments``).

    ``D > 0`` has ``z``'s shape; ``tau >= 0`` is a scalar or of shape (G,). ``tol`` bounds the
    relative error of every non-zero group, ``||x - x*|| / ||x*||`` (default 1e-6 for float32
    inputs, 1e-12 for float64). ``out`` (may be ``z`` itself) receives the result.
    """
    if z.shape != D.shape:
        raise ValueError(f"z and D must have the same shape, got {tuple(z.shape)} and {tuple(D.shape)}")
    x, seg, out = _single(z, group_dim, out)
    tau64 = _group_vector(tau, seg.num_groups, z.device, "tau")
    Dc = D.to(dtype=x.dtype, memory_format=torch.contiguous_format)
    prox_segments([x], [Dc], tau64, seg, tol=tol, max_iter=max_iter, work=work)
    return _finish(x, z, out)
