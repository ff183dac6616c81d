"""DiSparse's arbiter and the calibration that replaces hand-tuned keep ratios.

Each task ranks the units it can see (shared units and its own head's) by its own saliency and
keeps its top ``gamma_t``; a task-private unit follows its task, a shared unit the arbiter:

- ``unanimous`` (paper eq. 18, the element-wise OR of the keep masks): a shared unit is removed
  only if every task removes it;
- ``majority`` (paper eq. 19): removed when more than half of the tasks remove it (with an even
  number of tasks a tie keeps it).

The OR keeps more than any one task, so the real density is above the per-task keep ratio (the
public code hand-tunes keep ratios such as 0.08 for 90% sparsity). ``calibrate`` instead finds
the per-task keep ratio ``k`` (``gamma_t = floor(k * m_t)``, the same ``k`` for every task, as
in the paper) that makes the arbitrated mask hit a target. As ``k`` grows, the ``gamma_t`` step
up one at a time (ties in ``k`` broken by task order), and each step adds at most one unit to
the arbitrated mask, so a bisection over these steps lands within one unit of the target.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from mtlexport.errors import ConfigError

__all__ = ["ARBITERS", "Calibration", "arbitrate", "calibrate", "task_ranks"]

ARBITERS = ("unanimous", "majority")


def arbitrate(keeps: Tensor, owner: Tensor, rule: str = "unanimous") -> Tensor:
    """(U,) bool: the final keep mask from per-task keep masks ``keeps`` (T, U) and ``owner`` (U,)
    (-1 shared, t private to task t; a task's entries outside its space are ignored)."""
    if rule not in ARBITERS:
        raise ConfigError(f"sparsifier.arbiter must be one of {', '.join(ARBITERS)}, got {rule!r}")
    keeps = keeps.bool()
    num_tasks = keeps.shape[0]
    votes = keeps.sum(dim=0)
    shared = votes > 0 if rule == "unanimous" else 2 * votes >= num_tasks
    private = keeps.gather(0, owner.clamp(min=0).view(1, -1)).view(-1)
    return torch.where(owner < 0, shared, private)


def task_ranks(scores: Tensor, owner: Tensor, candidates: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Per task, the rank (0 = most salient) of every unit in its space among ``candidates``
    (others get a rank past the end), and the size ``m_t`` of that space: ((T, U), (T,))."""
    num_tasks, num_units = scores.shape
    cand = torch.ones(num_units, dtype=torch.bool) if candidates is None else candidates.bool()
    ranks = torch.full((num_tasks, num_units), num_units + 1, dtype=torch.long)
    sizes = torch.zeros(num_tasks, dtype=torch.long)
    for t in range(num_tasks):
        space = torch.nonzero(((owner == -1) | (owner == t)) & cand).flatten()
        # Stable descending sort: equal scores keep unit order, so ranks are reproducible.
        order = torch.sort(scores[t, space].double(), descending=True, stable=True).indices
        ranks[t, space[order]] = torch.arange(space.numel())
        sizes[t] = space.numel()
    return ranks, sizes


@dataclass(frozen=True)
class Calibration:
    """The outcome of ``calibrate``: the mask, per-task keep counts and ratio, the value hit."""

    keep: Tensor
    task_keep: Tensor  # (T, U) per-task keep masks
    gammas: tuple[int, ...]
    keep_ratio: float
    value: float


def calibrate(scores: Tensor, owner: Tensor, value: Callable[[Tensor], float], goal: float, *,
              rule: str = "unanimous", base: Tensor | None = None, candidates: Tensor | None = None,
              what: str = "target") -> Calibration:
    """The most-kept arbitrated mask whose ``value(keep)`` is <= ``goal``.

    ``scores`` (T, U) are the per-task saliencies; ``value`` must not decrease as units are
    added (the kept share, or the MACs ratio). ``base`` units are always kept and only
    ``candidates`` compete (dynamic regrowth); by default every unit competes.
    """
    num_tasks, num_units = scores.shape
    base = torch.zeros(num_units, dtype=torch.bool) if base is None else base.bool()
    ranks, sizes = task_ranks(scores, owner, candidates)
    # One event per (task, j): task t's keep count reaches j + 1 at k = (j + 1) / m_t.
    ks = torch.cat([torch.arange(1, int(m) + 1, dtype=torch.float64) / float(m) for m in sizes.tolist() if m > 0]
                   or [torch.zeros(0, dtype=torch.float64)])
    who = torch.cat([torch.full((int(m),), t, dtype=torch.long) for t, m in enumerate(sizes.tolist()) if m > 0]
                    or [torch.zeros(0, dtype=torch.long)])
    order = _lexsort(ks, who)  # ties in k broken by task order
    who_sorted = who[order]
    ks_sorted = ks[order]

    def masks(n: int) -> tuple[Tensor, Tensor, Tensor]:
        gam = torch.bincount(who_sorted[:n], minlength=num_tasks)
        task_keep = ranks < gam.view(-1, 1)
        return arbitrate(task_keep, owner, rule) | base, task_keep, gam

    def at(n: int) -> float:
        return value(masks(n)[0])

    if at(0) > goal:
        raise ConfigError(f"the {what} {goal:g} cannot be reached: removing every unit the method may remove "
                          f"still gives {at(0):.4f}; choose a larger target or a wider sparsifier.scope")
    lo, hi = 0, int(who_sorted.numel())  # invariant: at(lo) <= goal
    if at(hi) <= goal:
        lo = hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if at(mid) <= goal:
            lo = mid
        else:
            hi = mid
    keep, task_keep, gam = masks(lo)
    ratio = float(ks_sorted[lo - 1]) if lo > 0 else 0.0
    return Calibration(keep, task_keep, tuple(int(g) for g in gam), ratio, value(keep))


def _lexsort(primary: Tensor, secondary: Tensor) -> Tensor:
    """Indices sorting by ``primary`` then ``secondary`` (both stable)."""
    first = torch.sort(secondary, stable=True).indices
    second = torch.sort(primary[first], stable=True).indices
    return first[second]
