"""Exactness of ``slim_model`` on every zoo backbone, residual coupling, round-to, protection."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from mtlexport.models import create_model
from mtlexport.models.widths import changed_widths, layer_widths
from mtlexport.surgery import slim_model

from .helpers import randomise_norms, small_spec, sparse_model

ZOO = ["resnet18", "resnet34", "resnet50", "mobilenetv2"]


def _outputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return model(x)


def _max_rel(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k] - b[k]).abs().max() / a[k].abs().max()) for k in a)


def _slim(model: nn.Module, size: int = 32, **kw: object):
    x = torch.randn(2, 3, size, size)
    return slim_model(model, x[:1], {"random": x}, **kw)


@pytest.mark.parametrize("backbone", ZOO)
def test_zoo_model_slims_exactly_and_reloads(backbone: str) -> None:
    spec = small_spec(backbone)
    model = sparse_model(spec, share=0.5)
    dense = copy.deepcopy(model)
    report = _slim(model)

    assert report.removed > 0 and report.passed
    pooling = model.heads.seg.aspp.branches[-1].conv  # ASPP image-pooling branch (pool, expand, cat)
    assert pooling.out_channels < 16 and model.heads.seg.aspp.branches[0][0].out_channels < 16
    assert report.max_rel_error <= 1e-5
    assert report.params_after < report.params_before and 0 < report.macs_after < report.macs_before
    x = torch.randn(2, 3, 40, 40)  # a size the surgery never saw
    assert _max_rel(_outputs(dense, x), _outputs(model, x)) <= 1e-5
    for name, mod in dense.named_modules():  # task output layers keep their outputs
        if name.endswith("classifier"):
            new = model.get_submodule(name)
            assert getattr(new, "out_channels", getattr(new, "out_features", None)) == getattr(
                mod, "out_channels", getattr(mod, "out_features", None))
    slim_spec = spec.with_widths(changed_widths(layer_widths(dense), layer_widths(model)))
    rebuilt = create_model(slim_spec).eval()
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    assert _max_rel(_outputs(model, x), _outputs(rebuilt, x)) == 0.0


def _resnet18() -> nn.Module:
    gen = torch.Generator().manual_seed(3)
    model = create_model(small_spec("resnet18")).eval()
    randomise_norms(model, gen)
    return model


# Every reader of the stage-1 residual channels of resnet18 (stem -> maxpool -> layer1).
STAGE1_READERS = ("backbone.layer1.0.conv1", "backbone.layer1.1.conv1",
                  "backbone.layer2.0.conv1", "backbone.layer2.0.downsample.0")


def test_residual_stage_channel_removed_only_when_every_reader_is_zero() -> None:
    model = _resnet18()
    with torch.no_grad():
        for name in STAGE1_READERS:
            model.get_submodule(name).weight[:, 2] = 0  # all readers: dead
        for name in STAGE1_READERS[:-1]:
            model.get_submodule(name).weight[:, 5] = 0  # the downsample still reads it: live
    report = _slim(model)
    assert report.passed
    width = model.backbone.stem[0].out_channels
    assert width == 7  # channel 2 only
    for name in ("backbone.layer1.0.conv2", "backbone.layer1.1.conv2"):
        assert model.get_submodule(name).out_channels == 7
    for name in STAGE1_READERS:
        assert model.get_submodule(name).in_channels == 7


def test_round_to_keeps_widths_multiples() -> None:
    model = sparse_model(small_spec("resnet18"), share=0.6, seed=4)
    before = {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    report = _slim(model, round_to=4)
    assert report.passed and report.removed > 0 and report.kept["round_to"] > 0
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d) and mod.out_channels != before[name]:
            assert mod.out_channels % 4 == 0, name


def test_every_layer_keeps_one_channel() -> None:
    model = _resnet18()
    with torch.no_grad():
        for name in STAGE1_READERS:
            model.get_submodule(name).weight.zero_()
    report = _slim(model)
    assert report.passed and report.kept["min_keep"] >= 1
    assert model.backbone.stem[0].out_channels == 1


def test_producer_zero_channel_is_kept_without_fold() -> None:
    """A zero filter followed by a batch norm outputs beta, not zero: removing it is not exact."""
    model = _resnet18()
    with torch.no_grad():
        model.backbone.layer1[0].conv1.weight[3] = 0
    _slim(model)
    assert model.backbone.layer1[0].conv1.out_channels == 8


def test_fold_constants_is_exact_and_keeps_what_it_cannot_fold() -> None:
    model = sparse_model(small_spec("mobilenetv2"), share=0.0, seed=5)
    block = model.backbone.features[3].conv  # expand, depthwise, project (1x1 + BN)
    width = block[1][0].out_channels
    with torch.no_grad():
        block[1][0].weight[[1, 4]] = 0  # depthwise filters: constant channels (BN beta, ReLU6)
        model.backbone.features[5].conv[0][0].weight[2] = 0  # expand filter, read by a padded 3x3 depthwise
    plain = copy.deepcopy(model)
    _slim(plain)
    assert plain.backbone.features[3].conv[1][0].out_channels == width

    report = _slim(model, fold_constants=True)
    assert report.passed and report.folded >= 2 and report.unfoldable >= 1
    assert model.backbone.features[3].conv[1][0].out_channels == width - 2
    x = torch.randn(2, 3, 32, 32)
    assert _max_rel(_outputs(plain, x), _outputs(model, x)) <= 1e-5
