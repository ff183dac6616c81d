"""Distributed context detection, and the collectives of ``distributed.py`` in two real gloo
processes (torch.multiprocessing, each test bounded by a timeout)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from mtlexport.errors import ConfigError
from mtlexport.train import distributed as dist


def test_single_process_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    ctx = dist.detect()
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.enabled) == (0, 1, True, False)
    model = torch.nn.Linear(2, 2)
    assert dist.wrap_model(ctx, model, torch.device("cpu")) is model
    assert dist.broadcast_flag(ctx, True, torch.device("cpu")) is True


def test_torchrun_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    ctx = dist.detect()
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.is_main, ctx.enabled) == (3, 4, 1, False, True)
    sampler = dist.sampler(ctx, list(range(10)), shuffle=False, seed=0, drop_last=False)
    assert list(sampler) == [3, 7, 1]  # rank 3 of 4, padded to 12 samples


def test_bad_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "4")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="inconsistent"):
        dist.detect()


# ----------------------------------------------------------------------------- two real processes (gloo)
def _spawn(fn: Any, tmp_path: Path, *args: Any, world: int = 2, timeout: float = 90.0) -> list[Any]:
    """Run ``fn(rank, world, store, out_dir, *args)`` in ``world`` processes under a gloo group;
    return what each rank saved to ``out_dir/rank{r}.pt``. A hang fails after ``timeout``."""
    import torch.multiprocessing as mp

    store = tmp_path / "store"
    procs = mp.start_processes(_entry, args=(fn, world, str(store), str(tmp_path), args), nprocs=world, join=False,
                               start_method="spawn")
    deadline = time.monotonic() + timeout
    try:
        while not procs.join(timeout=max(0.1, deadline - time.monotonic())):
            if time.monotonic() > deadline:
                pytest.fail(f"{world} processes did not finish within {timeout:.0f} s (hang)")
    finally:
        for p in procs.processes:
            if p.is_alive():
                p.kill()
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(world)]


def _entry(rank: int, fn: Any, world: int, store: str, out: str, args: tuple[Any, ...]) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        result = fn(dist.DistContext(rank, world, rank), *args)
        torch.save(result, Path(out) / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def _replicas(ctx: dist.DistContext, perturb: bool) -> str:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    if perturb and ctx.rank == 1:  # one bit of one element
        with torch.no_grad():
            w = model[1].weight
            w[0, 0] = torch.nextafter(w[0, 0], torch.tensor(10.0))
    try:
        dist.check_replicas(ctx, {"model": model, "extra": torch.nn.Linear(2, 2)}, when="in epoch 3")
    except dist.DistributedError as exc:
        return str(exc)
    return ""


def test_check_replicas_passes_identical_and_names_the_first_diverging_tensor(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert _spawn(_replicas, tmp_path / "a", False) == ["", ""]  # torch.manual_seed(0) makes "extra" equal too
    messages = _spawn(_replicas, tmp_path / "b", True)
    assert messages[0] == messages[1]  # every rank raises the same error
    assert "diverged in epoch 3: model.1.weight on rank 1 differs from rank 0 (1 of" in messages[0]


def test_fingerprint_sees_one_bit_and_position() -> None:
    t = torch.randn(1000)
    u = t.clone()
    u[17] = torch.nextafter(u[17], torch.tensor(10.0))
    assert torch.equal(dist.fingerprint(t), dist.fingerprint(t.clone()))
    assert not torch.equal(dist.fingerprint(t), dist.fingerprint(u))
    swapped = t.clone()
    swapped[[0, 1]] = t[[1, 0]]
    assert not torch.equal(dist.fingerprint(t), dist.fingerprint(swapped))
    assert dist.fingerprint(torch.tensor([True, False])).shape == (2,)
    assert dist.fingerprint(torch.arange(3, dtype=torch.int64)).dtype == torch.int64


def _sync_bn(ctx: dist.DistContext) -> dict[str, Tensor]:
    torch.manual_seed(0)
    x, c = torch.randn(8, 3, 5, 5) * 3 + 1, torch.randn(8, 3, 5, 5)
    half = slice(4 * ctx.rank, 4 * ctx.rank + 4)
    plain = torch.nn.BatchNorm2d(3, momentum=0.3)
    model = torch.nn.Sequential(plain)
    with torch.no_grad():
        plain.weight.uniform_(0.5, 1.5)
        plain.bias.uniform_(-0.5, 0.5)
    dist.convert_sync_batchnorm(model, torch.device("cpu"))
    bn = model[0]
    assert type(bn) is dist.SyncBatchNorm2d and bn.weight is plain.weight and bn.running_var is plain.running_var
    xr = x[half].clone().requires_grad_(True)
    (model(xr) * c[half]).sum().backward()
    return {"grad_x": xr.grad, "grad_w": bn.weight.grad.clone(), "grad_b": bn.bias.grad.clone(),
            "running_mean": bn.running_mean.clone(), "running_var": bn.running_var.clone(),
            "out": _sync_out(model, xr.detach()), "state": sorted(bn.state_dict())}


def _sync_out(model: torch.nn.Module, x: Tensor) -> Tensor:
    bn = model[0]
    saved = (bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
    with torch.no_grad():
        out = model(x)
    bn.running_mean.copy_(saved[0])
    bn.running_var.copy_(saved[1])
    bn.num_batches_tracked.copy_(saved[2])
    return out


def test_sync_batchnorm_on_cpu_equals_batchnorm_over_the_global_batch(tmp_path: Path) -> None:
    ranks = _spawn(_sync_bn, tmp_path)
    torch.manual_seed(0)
    x, c = torch.randn(8, 3, 5, 5) * 3 + 1, torch.randn(8, 3, 5, 5)
    bn = torch.nn.BatchNorm2d(3, momentum=0.3)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    xr = x.clone().requires_grad_(True)
    (bn(xr) * c).sum().backward()
    running_mean, running_var = bn.running_mean.clone(), bn.running_var.clone()
    expected_out = bn(x.clone()).detach()  # a second training forward on the same batch, as in _sync_out
    for r, got in enumerate(ranks):
        half = slice(4 * r, 4 * r + 4)
        torch.testing.assert_close(got["grad_x"], xr.grad[half], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got["out"], expected_out[half], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got["running_mean"], running_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got["running_var"], running_var, rtol=1e-5, atol=1e-6)
        assert got["state"] == sorted(bn.state_dict())  # plain BatchNorm keys: checkpoints are unchanged
    assert torch.equal(ranks[0]["running_var"], ranks[1]["running_var"])  # bit-identical on every rank
    torch.testing.assert_close(ranks[0]["grad_w"] + ranks[1]["grad_w"], bn.weight.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ranks[0]["grad_b"] + ranks[1]["grad_b"], bn.bias.grad, rtol=1e-5, atol=1e-5)


def _average(ctx: dist.DistContext) -> Tensor:
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.full((3,), float(ctx.rank + 1))
    q = torch.nn.Parameter(torch.zeros(2))  # no gradient on this rank: counts as zeros
    if ctx.rank == 0:
        q.grad = torch.ones(2)
    dist.average_gradients(ctx, [p, q])
    return torch.cat([p.grad, q.grad])


def test_average_gradients_is_the_mean_over_ranks(tmp_path: Path) -> None:
    for got in _spawn(_average, tmp_path):
        assert torch.equal(got, torch.tensor([1.5, 1.5, 1.5, 0.5, 0.5]))
