"""AdapMTL: adaptive task weights (paper eq. 6 and the public code's), soft thresholds by hand."""

from __future__ import annotations

import math

import pytest
import torch

from mtlexport.sparsity.methods.adapmtl import adaptive_weights, soft_threshold
from mtlexport.sparsity.methods.units import UnitSpace
from mtlexport.sparsity.segments import Segments


def _history(tasks: int) -> tuple[torch.Tensor, list[float], list[float]]:
    """Losses over a window of 4 steps; per task r = mean|dL| / mean L and q = mean(|dL| / L)."""
    rows = []
    for t in range(tasks):
        base = 1.0 + t
        step = 0.1 * (t + 1) ** 2
        rows.append([base + step * ((-1) ** i) for i in range(4)])  # alternates: |dL| = 2 * step
    h = torch.tensor(rows, dtype=torch.float64).t()  # (W, T)
    r = [2 * (0.1 * (t + 1) ** 2) / float(h[:, t].mean()) for t in range(tasks)]
    q = [sum(2 * (0.1 * (t + 1) ** 2) / float(h[i, t]) for i in range(1, 4)) / 3 for t in range(tasks)]
    return h, r, q


@pytest.mark.parametrize("tasks", [2, 3, 4])
def test_paper_weights(tasks: int) -> None:
    h, r, _ = _history(tasks)
    heads = [100 * (t + 1) for t in range(tasks)]
    beta = adaptive_weights(h, "paper", 1000, heads, scale=0.5)
    mean_r = sum(r) / tasks
    expected = [(r_t / mean_r) ** -1 * 0.5 * 1000 / sum(heads) for r_t in r]
    assert beta.tolist() == pytest.approx(expected)
    # the most stable task (task 0) weighs most
    assert int(beta.argmax()) == 0


@pytest.mark.parametrize("tasks", [2, 3, 4])
def test_code_weights(tasks: int) -> None:
    h, _, q = _history(tasks)
    beta = adaptive_weights(h, "code", 1000, [1] * tasks)
    assert beta.tolist() == pytest.approx([tasks * q_t / sum(q) for q_t in q])
    assert float(beta.sum()) == pytest.approx(tasks)  # the public code's hard-coded 3 for three tasks
    assert int(beta.argmax()) == tasks - 1  # the least stable task weighs most


def test_constant_losses_do_not_divide_by_zero() -> None:
    beta = adaptive_weights(torch.ones(5, 3), "paper", 10, [1, 1, 1])
    assert torch.isfinite(beta).all()


def _space(params: list[torch.nn.Parameter]) -> UnitSpace:
    seg = Segments.build([p.shape for p in params], [1, 1], [[0, 1], [0, 1]], 2)
    return UnitSpace("channel", ("p", "q"), tuple(params), ("t",), torch.tensor([-1, -1]), torch.tensor([0, 1]),
                     ("x", "y"), seg=seg)


def test_element_soft_threshold_by_hand() -> None:
    w = torch.tensor([[0.5, -0.05], [-0.3, 0.1]])
    space = UnitSpace("element", ("w",), (torch.nn.Parameter(w),), ("t",), torch.full((4,), -1),
                      torch.zeros(4, dtype=torch.long), ("w",))
    (eff,) = soft_threshold(space, [w], torch.full((4,), 0.1))
    assert torch.allclose(eff, torch.tensor([[0.4, 0.0], [-0.2, 0.0]]))  # sign(w) * relu(|w| - 0.1)


def test_group_soft_threshold_by_hand() -> None:
    p = torch.tensor([[3.0, 0.1], [0.0, -0.1]])  # slices p[:, j] and q[:, j] form group j (n_g = 3)
    q = torch.tensor([[4.0, 0.1]])
    space = _space([torch.nn.Parameter(p), torch.nn.Parameter(q)])
    alpha = torch.tensor([0.5, 0.5])
    eff_p, eff_q = soft_threshold(space, [p, q], alpha)
    factor = 1 - 0.5 * math.sqrt(3) / 5.0  # group 0: norm 5; group 1: rms 0.1 < 0.5, dies
    assert torch.allclose(eff_p, torch.tensor([[3.0 * factor, 0.0], [0.0, 0.0]]))
    assert torch.allclose(eff_q, torch.tensor([[4.0 * factor, 0.0]]))
    assert int((eff_p[:, 1] != 0).sum()) == 0 and float(eff_q[0, 1]) == 0.0  # exact zeros


def test_soft_threshold_gradients_match_finite_differences() -> None:
    gen = torch.Generator().manual_seed(0)
    p = torch.randn(2, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    q = torch.randn(1, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    s = torch.tensor([-1.0, -0.5], dtype=torch.float64, requires_grad=True)
    space = _space([torch.nn.Parameter(p.detach()), torch.nn.Parameter(q.detach())])

    def fn(p: torch.Tensor, q: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(soft_threshold(space, [p, q], torch.sigmoid(s)))

    assert torch.autograd.gradcheck(fn, (p, q, s))
