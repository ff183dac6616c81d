"""Distributed context detection (only world size 1 runs here)."""

from __future__ import annotations

import pytest
import torch

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
