"""A sparsity target instead of a lambda sweep, and dead groups that stay dead.

``SparsityController`` runs beside a proximal optimizer during training:

- **Freeze** (``freeze_at``, a fraction of training): from then on the groups that are exactly
  zero stay zero (``freeze_zero_groups``: no gradient, no moments). Without it, late in a
  decaying schedule dead groups revive faster than live ones die (a dead group revives when
  ``||m_hat|| > lambda * sqrt(n_g)``, independent of the learning rate, while killing a live
  group needs steps of size ~lr).
- **Target** (``target_macs`` R: slim MACs / dense MACs, whole model; or
  ``target_group_sparsity`` S: share of zero groups): lambda starts at the configured value and
  is adapted multiplicatively every ``interval`` steps towards a target that ramps from dense
  to R over the first 80% of ``[0, target_at]`` and then stays at R. At ``target_at`` the run
  *lands*: if it is still above the target, the weakest live units (by RMS weight) are zeroed
  until the target is met (one unit of MACs at most below it); then every zero group is frozen
  and lambda is set to 0, so the remaining training fine-tunes the slim architecture and the
  ratio holds exactly to the end.

The MACs ratio is the surgeon's (``MacsModel``), so what the controller sees is what
``mtlexport slim`` will give. All decisions read only the model's weights and the step count,
so every process of a distributed run takes the same ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from mtlexport.errors import ConfigError
from mtlexport.sparsity.macs import MacsModel

__all__ = ["ControllerSettings", "SparsityController"]

_GAIN, _MAX_STEP = 3.0, 0.3
_LAM_MIN, _LAM_MAX = 1e-7, 10.0
_RAMP = 0.8


@dataclass(frozen=True)
class ControllerSettings:
    """What the controller aims for: at most one of ``target_macs`` / ``target_group_sparsity``."""

    target_macs: float | None = None
    target_group_sparsity: float | None = None
    target_at: float = 0.75
    freeze_at: float | None = None
    lam: float = 1e-3

    @property
    def kind(self) -> str | None:
        if self.target_macs is not None:
            return "macs"
        if self.target_group_sparsity is not None:
            return "group_sparsity"
        return None

    @property
    def target(self) -> float | None:
        return self.target_macs if self.target_macs is not None else self.target_group_sparsity


class SparsityController:
    """Adapts the group-lasso strength of ``optimizer`` to a target and freezes dead groups."""

    def __init__(self, settings: ControllerSettings, optimizer: Optimizer, total_steps: int,
                 macs: MacsModel | None, *, group_channels: Tensor | None = None, interval: int = 4) -> None:
        self.settings, self.optimizer, self.total = settings, optimizer, max(int(total_steps), 1)
        self.macs, self.interval = macs, max(int(interval), 1)
        self.group_channels = group_channels  # coupled groups: group -> MacsModel channel
        self.lam = float(settings.lam) if settings.kind is None else float(settings.lam or 1e-3)
        self.frozen = False
        self.landed = False
        self.last: dict[str, float] = {}
        if settings.kind == "macs":
            if macs is None:
                raise ConfigError("optimizer.target_macs needs the model's MACs model")
            lowest = macs.min_ratio()
            if settings.target_macs < lowest + 0.01:
                raise ConfigError(
                    f"optimizer.target_macs {settings.target_macs:g} cannot be reached: with this grouping and "
                    f"group_scope the slim model keeps at least {lowest:.3f} of the MACs (the layers the group "
                    f"lasso cannot shrink); choose target_macs >= {lowest + 0.01:.2f} or group_scope: all")
        self._apply_lam(self.lam)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {"lam": self.lam, "frozen": self.frozen, "landed": self.landed, "last": dict(self.last)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lam = float(state["lam"])
        self.frozen, self.landed = bool(state["frozen"]), bool(state["landed"])
        self.last = dict(state.get("last", {}))
        self._apply_lam(self.lam)

    # ------------------------------------------------------------------ measurements
    def _groups(self) -> list[dict[str, Any]]:
        return [g for g in self.optimizer.param_groups if g.get("group_lasso", False)]

    def zero_groups(self) -> tuple[int, int]:
        """(zero groups, all groups) over the optimizer's group-lasso param groups."""
        zero = total = 0
        for group in self._groups():
            mask = self.optimizer.zero_groups(group)  # type: ignore[attr-defined]
            zero += int(mask.sum())
            total += int(mask.numel())
        return zero, total

    def measure(self) -> dict[str, float]:
        """Zero groups, removable channels and the predicted MACs ratio, right now."""
        zero, total = self.zero_groups()
        out = {"zero_groups": float(zero), "groups": float(total),
               "group_share": zero / total if total else 0.0, "lambda": self.lam}
        if self.macs is not None:
            dead = self.macs.dead_channels()
            out["removable_channels"] = float(self.macs.removed(dead).sum())
            out["macs_ratio"] = self.macs.ratio(dead)
        return out

    def _current(self, m: dict[str, float]) -> float:
        return m["macs_ratio"] if self.settings.kind == "macs" else 1.0 - m["group_share"]

    def _goal(self) -> float:
        kind = self.settings.kind
        return self.settings.target_macs if kind == "macs" else 1.0 - self.settings.target_group_sparsity

    # ------------------------------------------------------------------ the loop's hook
    def after_step(self, step: int) -> dict[str, float] | None:
        """Call after optimizer step number ``step`` (1-based). Returns a measurement when it acted."""
        t = step / self.total
        s = self.settings
        acted: dict[str, float] | None = None
        if s.kind is not None and not self.landed:
            if t >= s.target_at:
                acted = self._land()
            elif step % self.interval == 0:
                acted = self._adapt(t)
        if s.freeze_at is not None and not self.frozen and t >= s.freeze_at:
            self.optimizer.freeze_zero_groups()  # type: ignore[attr-defined]
            self.frozen = True
            acted = acted or self.measure()
        if acted is not None:
            self.last = acted
        return acted

    def _adapt(self, t: float) -> dict[str, float]:
        m = self.measure()
        goal = self._goal()
        ramp = min(1.0, t / (_RAMP * self.settings.target_at))
        target_now = 1.0 - (1.0 - goal) * ramp
        error = (self._current(m) - target_now) / max(1.0 - goal, 0.05)
        self.lam = min(max(self.lam * math.exp(max(-_MAX_STEP, min(_MAX_STEP, _GAIN * error))), _LAM_MIN), _LAM_MAX)
        self._apply_lam(self.lam)
        m["lambda"], m["target_now"] = self.lam, target_now
        return m

    def _land(self) -> dict[str, float]:
        goal = self._goal()
        m = self.measure()
        if self._current(m) > goal:
            self._snap(goal)
        self.optimizer.freeze_zero_groups()  # type: ignore[attr-defined]
        self.frozen = self.landed = True
        self.lam = 0.0
        self._apply_lam(0.0)
        m = self.measure()
        m["landed"] = 1.0
        return m

    def _apply_lam(self, lam: float) -> None:
        for group in self._groups():
            group["lam"] = lam

    # ------------------------------------------------------------------ landing
    @torch.no_grad()
    def _snap(self, goal: float) -> None:
        """Zero the weakest live units until the current value reaches ``goal``."""
        units = self._units()
        if not units:
            return
        scores = torch.tensor([u[0] for u in units], dtype=torch.float64)
        order = torch.argsort(scores).tolist()
        k = self._how_many(units, order, goal)
        for i in order[:k]:
            for weight, dim, idx in units[i][1]:
                weight.index_fill_(dim, idx, 0.0)

    def _how_many(self, units: list[tuple[float, list, int]], order: list[int], goal: float) -> int:
        """Smallest number of weakest units whose removal reaches ``goal`` (bisection)."""
        if self.settings.kind == "macs":
            dead = self.macs.dead_channels()  # type: ignore[union-attr]

            def value(k: int) -> float:
                d = dead.clone()
                chans = [units[i][2] for i in order[:k] if units[i][2] >= 0]
                if chans:
                    d[torch.tensor(chans)] = True
                return self.macs.ratio(d)  # type: ignore[union-attr]
        else:
            zero, total = self.zero_groups()

            def value(k: int) -> float:
                return 1.0 - (zero + k) / total
        lo, hi = 0, len(order)
        while lo < hi:
            mid = (lo + hi) // 2
            if value(mid) <= goal:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def _units(self) -> list[tuple[float, list[tuple[Tensor, int, Tensor]], int]]:
        """Live units that can be zeroed: (RMS weight, slices to zero, MacsModel channel or -1).

        Coupled groups are units themselves; with the channel grouping a unit is a removable
        channel (every reader's input slice), or a single group when only the share of zero
        groups is targeted.
        """
        units: list[tuple[float, list[tuple[Tensor, int, Tensor]], int]] = []
        coupled = self.group_channels is not None
        if coupled or self.settings.kind != "macs":
            for group in self._groups():
                units.extend(self._group_units(group))
            return units
        macs = self.macs
        assert macs is not None
        dead = macs.dead_channels()
        sq = torch.zeros(macs.num_channels, dtype=torch.float64)
        n = torch.zeros(macs.num_channels, dtype=torch.float64)
        for weight, idx, ch in macs.readers:
            w = weight.detach()
            per = w.double().square().reshape(w.shape[0], w.shape[1], -1).sum(dim=(0, 2)).cpu()
            sq.index_add_(0, ch, per[idx])
            n.index_add_(0, ch, torch.full((idx.numel(),), float(w[:, 0].numel()), dtype=torch.float64))
        slices: dict[int, list[tuple[Tensor, int, Tensor]]] = {}
        for weight, idx, ch in macs.readers:
            for c in torch.unique(ch).tolist():
                sel = idx[ch == c].to(weight.device)
                slices.setdefault(c, []).append((weight, 1, sel))
        for c in torch.nonzero(macs.can_die & ~dead).flatten().tolist():
            units.append((math.sqrt(float(sq[c]) / max(float(n[c]), 1.0)), slices.get(c, []), c))
        return units

    def _group_units(self, group: dict[str, Any]) -> list[tuple[float, list[tuple[Tensor, int, Tensor]], int]]:
        plan = self.optimizer._plan(group, list(group["params"]))  # type: ignore[attr-defined]
        seg = plan.seg
        params = list(group["params"])
        views = seg.views([p.detach().contiguous() for p in params])
        sq = seg.reduce([v.double().square().sum(dim=(0, 2)) for v in views]).cpu()
        zero = self.optimizer.zero_groups(group, plan).cpu()  # type: ignore[attr-defined]
        sizes = seg.sizes.cpu()
        index = seg.index.cpu()
        bounds = torch.tensor([0] + [s for _, s, _ in seg.shapes]).cumsum(0).tolist()
        members: dict[int, list[tuple[Tensor, int, Tensor]]] = {}
        from mtlexport.sparsity.optim import _dim_of

        for i, (p, shape) in enumerate(zip(params, seg.shapes)):
            local = index[bounds[i]:bounds[i + 1]]
            for g in torch.unique(local).tolist():
                if g >= seg.num_groups:
                    continue
                members.setdefault(g, []).append((p.data, _dim_of(p, shape), torch.nonzero(local == g).flatten()
                                                  .to(p.device)))
        channels = self.group_channels
        out = []
        for g in torch.nonzero(~zero).flatten().tolist():
            ch = int(channels[g]) if channels is not None and g < channels.numel() else -1
            out.append((math.sqrt(float(sq[g]) / float(sizes[g])), members.get(g, []), ch))
        return out
