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


# ----------------------------------------------------------------------------- accuracy
def _ill_conditioned(seed: int, groups: int = 300, n: int = 24):
    """Groups whose scale and metric span many orders of magnitude, rounded to float32."""
    gen = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    z = torch.randn(groups, n, generator=gen, dtype=f64) * torch.exp(3 * torch.randn(groups, 1, generator=gen, dtype=f64))
    D = torch.exp(6 * torch.randn(groups, n, generator=gen, dtype=f64))
    shrink = torch.rand(groups, generator=gen, dtype=f64) * 1.2 * 10 ** (-6 * torch.rand(groups, generator=gen, dtype=f64))
    tau = (D * z).norm(dim=1) * shrink
    return z.float().double(), D.float().double(), tau.float().double()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_float32_matches_float64_reference_on_ill_conditioned_groups(seed: int) -> None:
    z, D, tau = _ill_conditioned(seed)
    ref = prox_group_l2(z, D, tau)
    # The float64 reference itself satisfies the optimality conditions.
    live = ref.norm(dim=1) > 0
    residual = D[live] * (ref[live] - z[live]) + tau[live, None] * ref[live] / ref[live].norm(dim=1, keepdim=True)
    assert (residual.norm(dim=1) / (D[live] * z[live]).norm(dim=1)).max() < 1e-10
    x = prox_group_l2(z.float(), D.float(), tau.float()).double()
    assert torch.equal(x.norm(dim=1) == 0, ~live)
    err = (x[live] - ref[live]).norm(dim=1) / ref[live].norm(dim=1)
    assert err.max() < 1e-5, err.max()


def test_badly_conditioned_group_is_solved_in_x_not_in_the_metric() -> None:
    # The D-weighted residual is tiny at [1796, 15]; the solution is [6.755, 15.0].
    z, D = torch.tensor([[6166.0, 15.0]]), torch.tensor([[1e-8, 1e3]])
    x32 = prox_group_l2(z, D, 1.5e-4)
    x64 = prox_group_l2(z.double(), D.double(), 1.5e-4)
    torch.testing.assert_close(x64, torch.tensor([[6.755, 15.0]], dtype=torch.float64), rtol=1e-3, atol=0)
    torch.testing.assert_close(x32.double(), x64, rtol=1e-6, atol=0)


def test_huge_and_tiny_entries_do_not_overflow_or_underflow() -> None:
    D = torch.tensor([[1.0, 2.0]])
    for scale in (1e20, 1e-30):
        z = torch.tensor([[3.0, 1.0]]) * scale
        tau = 0.1 * scale
        x = prox_group_l2(z, D, tau)
        ref = prox_group_l2(z.double(), D.double(), tau)
        assert torch.isfinite(x).all() and torch.count_nonzero(x) == 2
        torch.testing.assert_close(x.double(), ref, rtol=1e-6, atol=0)
    tiny = torch.tensor([[3e-30, 1e-30]])
    assert torch.equal(prox_group_l2(tiny, D, 0.0), tiny)  # tau = 0 never zeroes a group


# ----------------------------------------------------------------------------- several tensors
def test_groups_spanning_tensors_match_the_concatenated_problem() -> None:
    from mtlexport.sparsity.prox import prox_segments
    from mtlexport.sparsity.segments import Segments

    gen = torch.Generator().manual_seed(4)
    # A conv weight grouped along its input channels, a linear weight along its inputs (two
    # columns per group, as after a flatten) and a depthwise weight along dim 0; some slices ungrouped.
    a = torch.randn(6, 5, 3, 3, generator=gen)
    b = torch.randn(4, 10, generator=gen)
    c = torch.randn(5, 1, 3, 3, generator=gen)
    Ds = [torch.rand(t.shape, generator=gen) + 0.05 for t in (a, b, c)]
    ids = [torch.tensor([0, 1, 2, 3, -1]), torch.arange(10) // 2, torch.tensor([0, 1, 2, 3, 4])]
    seg = Segments.build([a.shape, b.shape, c.shape], [1, 1, 0], ids, 5)
    # Reference: gather each group's elements into one float64 vector and solve it alone.
    pieces = [(a, Ds[0], 1), (b, Ds[1], 1), (c, Ds[2], 0)]
    zs, dz = [], []
    for g in range(5):
        zz = [t.select(d, i).reshape(-1) for (t, _, d), idx in zip(pieces, ids) for i in range(len(idx)) if idx[i] == g]
        dd = [D.select(d, i).reshape(-1) for (_, D, d), idx in zip(pieces, ids) for i in range(len(idx)) if idx[i] == g]
        zs.append(torch.cat(zz).double())
        dz.append(torch.cat(dd).double())
    sizes = [v.numel() for v in zs]
    assert seg.sizes.tolist() == sizes
    tau = torch.tensor([(d * z).norm().item() * f for d, z, f in zip(dz, zs, (0.3, 1.5, 0.05, 0.9, 0.6))],
                       dtype=torch.float64)
    expected = [prox_group_l2(z[None], d[None], t.item())[0] for z, d, t in zip(zs, dz, tau)]
    xs = [t.clone() for t in (a, b, c)]
    zero = prox_segments(xs, Ds, tau, seg)
    assert zero.tolist() == [e.norm().item() == 0 for e in expected]
    for g in range(5):
        got = torch.cat([x.select(d, i).reshape(-1) for x, (_, _, d), idx in zip(xs, pieces, ids)
                         for i in range(len(idx)) if idx[i] == g]).double()
        torch.testing.assert_close(got, expected[g], rtol=1e-5, atol=1e-7)
    # The ungrouped slice is untouched.
    assert torch.equal(xs[0][:, 4], a[:, 4])


def test_keep_rule_leaves_the_strongest_group_of_a_set() -> None:
    from mtlexport.sparsity.prox import prox_segments
    from mtlexport.sparsity.segments import Segments

    z = torch.tensor([[1.0, 2.0, 3.0, 0.5]])
    seg = Segments.build([z.shape], [1], [torch.arange(4)], 4)
    tau = torch.full((4,), 100.0, dtype=torch.float64)
    x = z.clone()
    zero = prox_segments([x], [torch.ones_like(z)], tau, seg, keep=torch.tensor([0, 0, 0, 1]), num_sets=2)
    # Set 0 keeps its strongest group unshrunk; set 1 (one group) keeps its only one.
    assert zero.tolist() == [True, True, False, False]
    assert torch.equal(x, torch.tensor([[0.0, 0.0, 3.0, 0.5]]))
