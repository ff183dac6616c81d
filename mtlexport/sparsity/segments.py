"""Groups that span several tensors: which slice of which tensor belongs to which group.

A ``Segments`` layout views tensor ``i`` as ``(A_i, S_i, B_i)`` around its group dimension
``dims[i]`` (``A`` = the dims before it, ``B`` = the dims after it) and assigns each of its ``S_i``
slices to one of ``num_groups`` groups, or to none (index ``num_groups``, the "ungrouped" slot).
Per-group quantities are then computed for every tensor at once: a per-slice reduction per
tensor, one concatenation and one ``index_add_`` (no Python loop over groups, no host sync),
and per-group scalars are broadcast back with one ``index_select``.

The paper's channel groups are the special case where every slice of every tensor is its own
group (``Segments.per_slice``); coupled groups (``mtlexport.sparsity.coupled``) join the input
slices of every reader of one removable channel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Segments"]

_F64 = torch.float64


@dataclass(frozen=True, eq=False)
class Segments:
    """Slices of tensors (``shapes[i]`` viewed as (A, S, B)) mapped to ``num_groups`` groups.

    ``index`` (long, on the tensors' device) holds one group id per slice of every tensor, in
    tensor order; ``num_groups`` marks an ungrouped slice. ``sizes`` (float64) is each group's
    total element count ``n_g``.
    """

    shapes: tuple[tuple[int, int, int], ...]
    index: Tensor
    num_groups: int
    sizes: Tensor
    ungrouped: tuple[Tensor | None, ...] = ()  # per tensor: indices of its ungrouped slices (None: all grouped)

    @staticmethod
    def view_shape(shape: Sequence[int], dim: int) -> tuple[int, int, int]:
        """(A, S, B) of a tensor of ``shape`` around ``dim``."""
        dim %= len(shape)
        return math.prod(shape[:dim]), int(shape[dim]), math.prod(shape[dim + 1:])

    @classmethod
    def build(cls, shapes: Sequence[Sequence[int]], dims: Sequence[int], ids: Sequence[Tensor | Sequence[int]],
              num_groups: int, device: torch.device | str = "cpu") -> Segments:
        """A layout from each tensor's shape, group dim and per-slice group ids (-1: ungrouped)."""
        views = tuple(cls.view_shape(s, d) for s, d in zip(shapes, dims))
        parts = []
        for (_, S, _), idx in zip(views, ids):
            t = torch.as_tensor(idx, dtype=torch.long).flatten()
            if t.numel() != S:
                raise ValueError(f"expected {S} group ids for a tensor with {S} slices, got {t.numel()}")
            if t.numel() and (int(t.max()) >= num_groups or int(t.min()) < -1):
                raise ValueError(f"group ids must lie in [-1, {num_groups}), got {int(t.min())}..{int(t.max())}")
            parts.append(torch.where(t < 0, torch.full_like(t, num_groups), t))
        index = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)
        per_slice = torch.repeat_interleave(torch.tensor([float(a * b) for a, _, b in views], dtype=_F64),
                                            torch.tensor([s for _, s, _ in views], dtype=torch.long))
        sizes = torch.zeros(num_groups + 1, dtype=_F64).index_add_(0, index, per_slice)[:num_groups]
        ungrouped = []
        for part in parts:
            idx = torch.nonzero(part == num_groups).flatten()
            ungrouped.append(idx.to(device) if idx.numel() else None)
        return cls(views, index.to(device), num_groups, sizes.to(device), tuple(ungrouped))

    @classmethod
    def per_slice(cls, shapes: Sequence[Sequence[int]], dims: Sequence[int],
                  device: torch.device | str = "cpu") -> Segments:
        """Every slice of every tensor its own group (the paper's channel groups)."""
        ids, start = [], 0
        for s, d in zip(shapes, dims):
            n = int(s[d % len(s)])
            ids.append(torch.arange(start, start + n))
            start += n
        return cls.build(shapes, dims, ids, start, device)

    @property
    def device(self) -> torch.device:
        return self.index.device

    def views(self, tensors: Sequence[Tensor]) -> list[Tensor]:
        """Each (contiguous) tensor viewed as its (A, S, B)."""
        return [t.view(shape) for t, shape in zip(tensors, self.shapes)]

    def reduce(self, per_slice: Sequence[Tensor]) -> Tensor:
        """Sum per-slice values (one (S_i,) tensor per tensor) into float64 per-group totals (G,)."""
        flat = torch.cat([p.reshape(-1) for p in per_slice]).to(_F64)
        out = torch.zeros(self.num_groups + 1, dtype=_F64, device=flat.device)
        return out.index_add_(0, self.index, flat)[: self.num_groups]

    def reduce_max(self, per_slice: Sequence[Tensor]) -> Tensor:
        """Per-group maximum of per-slice values, float64 (G,) (-inf for a group with no slice)."""
        flat = torch.cat([p.reshape(-1) for p in per_slice]).to(_F64)
        out = torch.full((self.num_groups + 1,), -math.inf, dtype=_F64, device=flat.device)
        return out.scatter_reduce_(0, self.index, flat, "amax")[: self.num_groups]

    def spread(self, per_group: Tensor, dtype: torch.dtype, fill: float = 0.0) -> list[Tensor]:
        """Per-group values (G,) as one tensor per tensor that broadcasts against its (A, S, B)
        view, in ``dtype``: (1, S, B), materialised over B (a broadcast along the middle
        dimension is several times slower on CPU than one along rows). Ungrouped slices get ``fill``.
        """
        padded = torch.cat([per_group.to(dtype), torch.full((1,), fill, dtype=dtype, device=per_group.device)])
        flat = padded.index_select(0, self.index)
        sizes = [s for _, s, _ in self.shapes]
        out = []
        for part, (_, s, b) in zip(flat.split(sizes), self.shapes):
            v = part.view(1, s, 1)
            out.append(v.expand(1, s, b).contiguous() if b > 1 else v)
        return out

    def slice_mask(self, per_group: Tensor) -> list[Tensor]:
        """A boolean per-group mask as one (S_i,) mask per tensor (ungrouped slices False)."""
        padded = torch.cat([per_group.bool(), torch.zeros(1, dtype=torch.bool, device=per_group.device)])
        flat = padded.index_select(0, self.index)
        return list(flat.split([s for _, s, _ in self.shapes]))
