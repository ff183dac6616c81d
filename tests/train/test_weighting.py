"""Loss weighting: the Kendall formula, fixed weights, and that the log-variances are optimised."""

from __future__ import annotations

import math

import pytest
import torch

from mtlexport.models import create_model
from mtlexport.train import TrainConfig, resolve_config
from mtlexport.train.config import LossWeightingConfig
from mtlexport.train.optim import build_training_optimizer
from mtlexport.train.weighting import FixedWeighting, UncertaintyWeighting, build_loss_weighting

from .conftest import tiny_config_dict


def test_uncertainty_formula() -> None:
    w = UncertaintyWeighting(["a", "b"])
    with torch.no_grad():
        w.log_vars.copy_(torch.tensor([0.5, -1.0]))
    losses = {"a": torch.tensor(2.0), "b": torch.tensor(3.0)}
    expected = math.exp(-0.5) * 2 + 0.5 + math.exp(1.0) * 3 - 1.0
    assert w(losses).item() == pytest.approx(expected, rel=1e-6)
    assert w.weights() == pytest.approx({"a": math.exp(-0.5), "b": math.exp(1.0)})


def test_uncertainty_gradient_moves_towards_log_loss() -> None:
    # d/ds (exp(-s) L + s) = 1 - exp(-s) L: zero at s = log L
    w = UncertaintyWeighting(["a"])
    w({"a": torch.tensor(4.0)}).backward()
    assert w.log_vars.grad.item() == pytest.approx(1 - 4.0)


def test_fixed_weights_default_to_one() -> None:
    w = build_loss_weighting(LossWeightingConfig(name="fixed", weights={"b": 0.5}), ["a", "b"])
    assert isinstance(w, FixedWeighting)
    assert w({"a": torch.tensor(2.0), "b": torch.tensor(4.0)}).item() == pytest.approx(4.0)
    assert list(w.parameters()) == []


@pytest.mark.parametrize("name", ["adamw", "proxadam", "proxsgd"])
def test_log_vars_are_in_a_plain_group_and_get_updated(name: str) -> None:
    cfg = resolve_config(TrainConfig.from_dict(tiny_config_dict(optimizer={"name": name, "lambda": 0.0 if name == "adamw" else 1e-3})))
    model = create_model(cfg.model)
    weighting = build_loss_weighting(cfg.loss_weighting, cfg.model.task_names)
    opt = build_training_optimizer(cfg.optimizer, model, weighting)
    groups = [g for g in opt.param_groups if any(p is weighting.log_vars for p in g["params"])]
    assert len(groups) == 1 and not groups[0].get("group_lasso") and groups[0]["weight_decay"] == 0.0
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters())) + 1
    losses = {n: torch.tensor(3.0) for n in cfg.model.task_names}
    opt.zero_grad()
    weighting(losses).backward()
    opt.step()
    assert not torch.equal(weighting.log_vars.detach(), torch.zeros(4))
