"""``train.amp``: autocast, and the fp16 GradScaler order (prox on unscaled gradients, skipped on overflow)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtlexport.errors import ConfigError
from mtlexport.sparsity import build_optimizer
from mtlexport.train.precision import Precision


def _setup(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    conv = nn.Conv2d(3, 4, 3)
    groups = [{"params": [conv.weight], "group_lasso": True}, {"params": [conv.bias], "group_lasso": False}]
    return conv, build_optimizer("proxadam", groups, lr=0.01, lam=0.5)


def test_fp16_overflow_skips_the_step_and_the_prox() -> None:
    conv, opt = _setup()
    precision = Precision("fp16", torch.device("cpu"))
    before = [p.detach().clone() for p in conv.parameters()]
    opt.zero_grad()
    precision.backward(conv(torch.randn(2, 3, 5, 5)).sum() * float("inf"))
    precision.unscale(opt)
    assert precision.step(opt) is False and precision.skipped == 1
    assert all(torch.equal(a, p) for a, p in zip(before, conv.parameters()))  # lambda 0.5 would have shrunk them
    assert precision.state_dict()["scaler"]["scale"] < 65536.0


def test_fp16_step_sees_unscaled_gradients() -> None:
    x = torch.randn(2, 3, 5, 5)
    plain, opt_plain = _setup()
    scaled, opt_scaled = _setup()
    opt_plain.zero_grad()
    plain(x).sum().backward()
    opt_plain.step()
    precision = Precision("fp16", torch.device("cpu"))
    opt_scaled.zero_grad()
    precision.backward(scaled(x).sum())
    precision.unscale(opt_scaled)
    assert precision.step(opt_scaled) is True
    for a, b in zip(plain.parameters(), scaled.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("mode", ["none", "bf16"])
def test_autocast_outputs_are_float32(mode: str) -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))

    class Multi(nn.Module):
        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"a": net(x)}

    out = Precision(mode, torch.device("cpu")).forward(Multi(), torch.randn(2, 3, 6, 6))
    assert out["a"].dtype == torch.float32


def test_unknown_mode() -> None:
    with pytest.raises(ConfigError, match="train.amp"):
        Precision("fp8", torch.device("cpu"))
