"""Slim checkpoints and state dicts: reload, eval parity, refusal, any model via a factory."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from mtlexport.data.config import DataConfig
from mtlexport.errors import VerificationError
from mtlexport.models import ModelSpec
from mtlexport.surgery import default_output, load_slim_state_dict, slim_checkpoint, slim_state_dict
from mtlexport.surgery import slim as slim_module
from mtlexport.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint

from . import toy_models
from .helpers import sparse_model

DATA = DataConfig(name="synthetic", height=32, width=32, num_train=4, num_val=4, num_test=4)


def _spec() -> ModelSpec:
    head = {"width": 16, "hidden": 8, "rates": [2, 3]}
    return ModelSpec.from_dict({
        "backbone": {"name": "resnet18", "base_width": 8},
        "tasks": [
            {"name": "seg", "type": "segmentation", "num_outputs": 6, "head": head},
            {"name": "attr", "type": "attributes", "attributes": ["has_sphere", "is_cluttered"], "head": head},
        ],
    })


@pytest.fixture(scope="module")
def dense_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = _spec()
    model = sparse_model(spec, share=0.5, seed=7)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, Checkpoint(spec=spec, state_dict=model.state_dict(), config={"data": DATA.to_dict()}))
    return path


def test_slim_checkpoint_reloads_and_evaluates_like_the_dense_one(dense_ckpt: Path) -> None:
    from mtlexport.train import evaluate_checkpoint

    report = slim_checkpoint(dense_ckpt)
    out = default_output(dense_ckpt)
    assert out.name == "model.slim.pt" and Path(report.output) == out
    assert {c.inputs for c in report.checks} == {"random", "data"} and report.passed
    raw = torch.load(out, map_location="cpu", weights_only=True)
    assert raw["extra"]["slim"]["removed"] == report.removed > 0
    slim = load_checkpoint(out)
    assert slim.spec.widths and slim.build_model() is not None  # rebuilt from its spec alone
    kw = dict(split="test", batch_size=4, device="cpu", baselines=False)
    dense_metrics = evaluate_checkpoint(dense_ckpt, **kw).metrics
    slim_metrics = evaluate_checkpoint(out, **kw).metrics
    for task, metrics in dense_metrics.items():
        for name, value in metrics.items():
            assert slim_metrics[task][name] == pytest.approx(value, rel=1e-4, abs=1e-6), (task, name)


def test_refuses_to_write_when_verification_fails(dense_ckpt: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    real_plan = slim_module.plan_removal

    def faulty_plan(*args: object, **kwargs: object):  # also removes the live backbone output channels
        plan = real_plan(*args, **kwargs)
        widest = max(plan.groups, key=lambda g: g.group.width)
        bad = dataclasses.replace(widest, remove=tuple(range(1, widest.group.width)))
        return dataclasses.replace(plan, groups=(bad, *[g for g in plan.groups if g is not widest]))

    monkeypatch.setattr(slim_module, "plan_removal", faulty_plan)
    out = tmp_path / "never.pt"
    with pytest.raises(VerificationError, match=r"output '(seg|attr)'"):
        slim_checkpoint(dense_ckpt, out)
    assert not out.exists()


def _sparse_toy() -> toy_models.ToyNet:
    model = toy_models.toy_net()
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.normal_(generator=gen)
                mod.bias.normal_(generator=gen)
        model.expand[0].weight[:, [0, 1, 9]] = 0      # concatenation: two from branch a, one from b
        model.project[0].weight[:, [3, 5]] = 0        # through the depthwise conv to expand
        model.grouped[0].weight[4:8, 2] = 0           # grouped conv input channel 6: kept
        model.transition[0].weight[:, 1] = 0          # grouped conv output: kept
        for reader in (model.stage[0].conv1, model.stage[1].conv1, model.seg_head):
            reader.weight[:, [7, 10]] = 0             # residual stage: 7 dead everywhere,
        model.fc.weight[:, 28:32] = 0                 # 10 still read by the flattened linear
        model.stage[0].conv2.weight[:, 4] = 0         # inside a residual block
        model.classifier.weight[:, 3] = 0             # hidden unit of the MLP
        model.dw[0].weight[6] = 0                     # zero depthwise filter: constant, not dead
    return model


def test_any_model_via_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(toy_models.__file__).parent))
    model = _sparse_toy()
    path = tmp_path / "toy.pt"
    torch.save(model.state_dict(), path)
    report = slim_state_dict(path, "toy_models:toy_net", input_size=16)
    assert report.passed and report.kept["grouped"] >= 2

    slim = load_slim_state_dict(default_output(path), "toy_models:toy_net")
    widths = {n: (m.in_channels, m.out_channels, m.groups) for n, m in slim.named_modules()
              if isinstance(m, torch.nn.Conv2d)}
    assert widths["branch_a.0"][1] == 6 and widths["branch_b.0"][1] == 7 and widths["expand.0"][:2] == (13, 22)
    assert widths["dw.0"] == (22, 22, 22) and widths["project.0"] == (22, 16, 1)
    assert widths["grouped.0"] == (16, 16, 4) and widths["transition.0"] == (16, 15, 1)
    assert widths["stage.0.conv1"] == (15, 7, 1) and widths["seg_head"] == (15, 4, 1)
    assert slim.fc.in_features == 60 and slim.fc.out_features == 11 and slim.classifier.out_features == 3
    assert torch.equal(slim.grouped[0].weight, model.grouped[0].weight)  # never touched
    x = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        ref, new = model(x), slim(x)
    for key in ref:
        assert float((ref[key] - new[key]).abs().max() / ref[key].abs().max()) <= 1e-5
