from __future__ import annotations

import pytest
import torch

from mtlexport.sparsity.prox import group_sum, prox_group_l2, prox_group_l2_uniform


def _random_problem(dtype: torch.dtype, groups: int = 64, n: int = 50, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(groups, n, generator=gen, dtype=torch.float64)
    # Adam-like preconditioners spanning several orders of magnitude.
    D = torch.exp(2.0 * torch.randn(groups, n, generator=gen, dtype=torch.float64))
    dz = (D * z).norm(dim=1)
    tau = dz * 2.0 * torch.rand(groups, generator=gen, dtype=torch.float64)  # ~half the groups die
    return z.to(dtype), D.to(dtype), tau.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_optimality_conditions(dtype: torch.dtype) -> None:
    z, D, tau = _random_problem(dtype)
    x = prox_group_l2(z, D, tau)
    assert x.dtype == dtype and x.shape == z.shape
    z, D, tau, x = z.double(), D.double(), tau.double(), x.double()
    norms = x.norm(dim=1)
    zero = norms == 0
    assert 0 < zero.sum() < len(zero)
    # Zero groups: exactly the ones with ||D z|| <= tau (0 is in the subdifferential).
    assert torch.equal(zero, (D * z).norm(dim=1) <= tau)
    # Non-zero groups: stationarity D (x - z) + tau x / ||x|| = 0.
    live = ~zero
    residual = D[live] * (x[live] - z[live]) + tau[live, None] * x[live] / norms[live, None]
    scale = (D[live] * z[live]).norm(dim=1, keepdim=True)
    assert (residual.norm(dim=1, keepdim=True) / scale).max() < 1e-5


def test_exact_zeros_and_scalar_tau() -> None:
    z, D, _ = _random_problem(torch.float32)
    x = prox_group_l2(z, D, 1e9)
    assert torch.count_nonzero(x) == 0
    torch.testing.assert_close(prox_group_l2(z, D, 0.0), z, rtol=1e-6, atol=1e-7)  # tau = 0: identity


def test_uniform_D_reduces_to_soft_thresholding() -> None:
    z, _, tau = _random_problem(torch.float64)
    d = 0.3
    x = prox_group_l2(z, torch.full_like(z, d), tau)
    expected = torch.clamp(1 - tau / (d * z.norm(dim=1)), min=0)[:, None] * z
    torch.testing.assert_close(x, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(prox_group_l2_uniform(z, d, tau), expected, rtol=1e-12, atol=1e-14)
    d_vec = torch.full((z.shape[0],), d, dtype=z.dtype)
    torch.testing.assert_close(prox_group_l2_uniform(z, d_vec, tau), expected, rtol=1e-12, atol=1e-14)


def test_zero_group_stays_zero_without_nan() -> None:
    z = torch.zeros(3, 4)
    z[1] = 1.0
    D = torch.ones(3, 4)
    for x in (prox_group_l2(z, D, 0.5), prox_group_l2_uniform(z, 1.0, 0.5)):
        assert torch.isfinite(x).all()
        assert torch.count_nonzero(x[0]) == 0 and torch.count_nonzero(x[2]) == 0
        torch.testing.assert_close(x[1], torch.full((4,), 1.0 - 0.5 / 2.0))


def test_group_dim_matches_transposed_layout() -> None:
    gen = torch.Generator().manual_seed(1)
    W = torch.randn(6, 5, 3, 3, generator=gen)
    D = torch.rand(6, 5, 3, 3, generator=gen) + 0.1
    tau = torch.rand(5, generator=gen) * 3
    x = prox_group_l2(W, D, tau, group_dim=1)
    flat = prox_group_l2(W.transpose(0, 1).reshape(5, -1), D.transpose(0, 1).reshape(5, -1), tau)
    torch.testing.assert_close(x, flat.reshape(5, 6, 3, 3).transpose(0, 1), rtol=1e-6, atol=1e-7)


def test_shape_errors() -> None:
    with pytest.raises(ValueError):
        prox_group_l2(torch.ones(2, 3), torch.ones(3, 2), 1.0)
    with pytest.raises(ValueError):
        prox_group_l2(torch.ones(2, 3), torch.ones(2, 3), torch.ones(3))


def test_float32_matches_float64_and_out_in_place() -> None:
    z, D, tau = _random_problem(torch.float64, groups=32, n=300, seed=3)
    W = z.T.reshape(20, 15, 32).permute(0, 2, 1).contiguous()  # groups along dim 1
    DW = D.T.reshape(20, 15, 32).permute(0, 2, 1).contiguous()
    ref = prox_group_l2(W, DW, tau, group_dim=1)
    W32 = W.float()
    x = prox_group_l2(W32, DW.float(), tau.float(), group_dim=1, out=W32)
    assert x is W32
    assert ((x.double() - ref).abs().max() / ref.abs().max()) < 1e-6
    assert torch.equal(x.double() == 0, ref == 0)


def test_group_sum() -> None:
    x = torch.arange(24.0).reshape(2, 3, 4)
    torch.testing.assert_close(group_sum(x, 1), x.sum(dim=(0, 2)).double())
    torch.testing.assert_close(group_sum(x, 0), x.sum(dim=(1, 2)).double())
    torch.testing.assert_close(group_sum(x.transpose(0, 2), 2), x.sum(dim=(1, 2)).double())
