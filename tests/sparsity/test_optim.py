from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from mtlexport.errors import ConfigError
from mtlexport.sparsity import (
    OPTIMIZERS,
    ProxAdam,
    ProxSGD,
    build_optimizer,
    sparsity_report,
    split_param_groups,
)

from .conftest import TinyMultiTask, multitask_loss


def _train(model: nn.Module, opt: torch.optim.Optimizer, steps: int, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(4, 3, 8, 8, generator=gen)
        opt.zero_grad()
        multitask_loss(model(x)).backward()
        opt.step()


def _models() -> tuple[TinyMultiTask, TinyMultiTask]:
    torch.manual_seed(0)
    a = TinyMultiTask()
    b = TinyMultiTask()
    b.load_state_dict(a.state_dict())
    return a, b


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
@pytest.mark.parametrize("grouping", ["layouts", "channel", "coupled"])
def test_lambda_zero_is_adamw_bit_for_bit(weight_decay: float, grouping: str) -> None:
    from mtlexport.sparsity.coupled import build_structure

    a, b = _models()
    kw = dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-7, weight_decay=weight_decay)
    structure = None if grouping == "layouts" else build_structure(
        b, grouping, example=torch.randn(2, 3, 8, 8))
    _train(a, torch.optim.AdamW(a.parameters(), foreach=True, **kw), 25)
    _train(b, ProxAdam(split_param_groups(b, structure=structure), lam=0.0, **kw), 25)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pb, pa), name


def test_lambda_zero_proxsgd_is_sgd() -> None:
    a, b = _models()
    kw = dict(lr=0.05, momentum=0.9, weight_decay=1e-3)
    _train(a, torch.optim.SGD(a.parameters(), **kw), 10)
    _train(b, ProxSGD(split_param_groups(b), lam=0.0, **kw), 10)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pb, pa, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("name", "prox"), [("proxadam", "adaptive"), ("proxadam", "uniform"), ("proxsgd", "uniform")])
def test_sparsity_grows_with_lambda(name: str, prox: str) -> None:
    lr = 1e-2 if name == "proxadam" else 0.05
    lams = [0.0, 1e-3, 1e-2, 1e2] if name == "proxadam" else [0.0, 1e-2, 1e-1, 1e3]
    sparsity = []
    for lam in lams:
        torch.manual_seed(0)
        model = TinyMultiTask()
        opt = build_optimizer(name, split_param_groups(model), lr=lr, lam=lam, prox=prox)
        _train(model, opt, 30)
        sparsity.append(sparsity_report(model).group_sparsity)
    assert sparsity[0] == 0.0
    assert sparsity == sorted(sparsity), sparsity
    assert any(0.0 < x < 100.0 for x in sparsity) and sparsity[-1] == 100.0, sparsity
    # Only grouped conv weights are sparsified: heads and BatchNorm stay dense.
    assert torch.count_nonzero(model.heads["seg"].weight) == model.heads["seg"].weight.numel()


def test_zero_group_stays_zero_with_tiny_gradients() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3)
    with torch.no_grad():
        conv.weight[:, 1] = 0.0
    opt = ProxAdam([{"params": [conv.weight], "group_lasso": True, "layout": "in_channel"}],
                   lr=1e-3, lam=1e-4)
    for _ in range(20):
        conv.weight.grad = torch.randn_like(conv.weight) * 1e-3
        conv.weight.grad[:, 1] *= 1e-4  # gradient norm far below lam * sqrt(n_g)
        opt.step()
        assert torch.count_nonzero(conv.weight[:, 1]) == 0
    assert sparsity_report(nn.Sequential(conv)).zero_groups == 1  # live channels survive


def test_state_dict_round_trip_under_weights_only() -> None:
    a, b = _models()
    opt_a = ProxAdam(split_param_groups(a), lr=1e-2, lam=1e-3)
    _train(a, opt_a, 5)
    buf = io.BytesIO()
    torch.save({"model": a.state_dict(), "optim": opt_a.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    b.load_state_dict(ckpt["model"])
    opt_b = ProxAdam(split_param_groups(b), lr=1e-2, lam=1e-3)
    opt_b.load_state_dict(ckpt["optim"])
    assert opt_b.param_groups[0]["group_lasso"] and opt_b.param_groups[0]["lam"] == 1e-3
    _train(a, opt_a, 5, seed=1)
    _train(b, opt_b, 5, seed=1)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pb, pa, rtol=0, atol=0)


def test_registry_and_config_errors() -> None:
    assert OPTIMIZERS.names() == ["adamw", "proxadam", "proxsgd"]
    model = TinyMultiTask()
    groups = split_param_groups(model)
    assert isinstance(build_optimizer("adamw", groups, lr=1e-3), torch.optim.AdamW)
    with pytest.raises(ConfigError, match="adamw, proxadam, proxsgd"):
        build_optimizer("lamb", groups, lr=1e-3)
    with pytest.raises(ConfigError, match="adaptive, uniform"):
        build_optimizer("proxadam", groups, lr=1e-3, lam=1e-4, prox="exact")
    with pytest.raises(ConfigError, match="lam"):
        build_optimizer("adamw", groups, lr=1e-3, lam=1e-4)
    with pytest.raises(ConfigError):
        build_optimizer("proxsgd", groups, lr=1e-3, lam=-1.0)


@pytest.mark.gpu
@pytest.mark.parametrize("grouping", ["channel", "coupled"])
def test_step_makes_no_host_synchronisation_on_cuda(grouping: str) -> None:
    from mtlexport.sparsity.coupled import build_structure

    torch.manual_seed(0)
    model = TinyMultiTask().cuda()
    structure = build_structure(model, grouping, example=torch.randn(2, 3, 8, 8, device="cuda"))
    opt = ProxAdam(split_param_groups(model, structure=structure), lr=1e-2, lam=1e-2)
    x = torch.randn(4, 3, 8, 8, device="cuda")
    for _ in range(2):  # state and layout are built on the first steps
        opt.zero_grad()
        multitask_loss(model(x)).backward()
        opt.step()
    opt.zero_grad()
    multitask_loss(model(x)).backward()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        opt.step()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert torch.isfinite(torch.cat([p.detach().flatten() for p in model.parameters()])).all()
