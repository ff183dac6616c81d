"""Every registered backbone x head builds, runs and reloads from its spec."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtlexport.errors import CheckpointError, ConfigError
from mtlexport.models import (
    BACKBONES,
    HEADS,
    BackboneSpec,
    HeadSpec,
    ModelSpec,
    TaskSpec,
    apply_widths,
    changed_widths,
    create_model,
    layer_widths,
    resolve_spec,
)

SMALL = {"resnet18": {"base_width": 4}, "resnet34": {"base_width": 4}, "resnet50": {"base_width": 4},
         "mobilenetv2": {"width_mult": 0.25}}


def small_spec(backbone: str, head: str, output_stride: int = 8) -> ModelSpec:
    dense = head == "aspp"
    task = TaskSpec(name="out", type="segmentation" if dense else "attributes", num_outputs=3,
                    head=HeadSpec(kind=head, width=8, rates=(1, 2), hidden=8),
                    attributes=() if dense else ("a", "b", "c"))
    return ModelSpec(backbone=BackboneSpec(name=backbone, output_stride=output_stride, **SMALL.get(backbone, {})),
                     tasks=(task,))


def test_every_backbone_has_a_small_setting() -> None:
    assert set(BACKBONES.names()) <= set(SMALL)


@pytest.mark.parametrize("backbone", BACKBONES.names())
@pytest.mark.parametrize("head", HEADS.names())
@pytest.mark.parametrize("size", [(32, 32), (48, 40)])
def test_backbone_head_forward(backbone: str, head: str, size: tuple[int, int]) -> None:
    model = create_model(small_spec(backbone, head)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))["out"]
    assert out.shape == ((2, 3, *size) if head == "aspp" else (2, 3))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("backbone", BACKBONES.names())
@pytest.mark.parametrize("stride", [8, 16, 32])
def test_output_stride(backbone: str, stride: int) -> None:
    spec = small_spec(backbone, "aspp", stride)
    model = create_model(spec).eval()
    with torch.no_grad():
        features = model.backbone(torch.randn(1, 3, 64, 64))
    assert features.shape[-2:] == (64 // stride, 64 // stride)
    assert features.shape[1] == model.backbone.out_channels


def test_deep_stem_has_three_convs() -> None:
    spec = ModelSpec(backbone=BackboneSpec(name="resnet50", deep_stem=True, base_width=4),
                     tasks=(TaskSpec(name="depth", type="depth", head=HeadSpec(width=8, rates=(1,))),))
    stem = create_model(spec).backbone.stem
    assert sum(isinstance(m, nn.Conv2d) for m in stem.modules()) == 3


def test_spec_yaml_and_json_round_trip(tmp_path) -> None:
    spec = resolve_spec(small_spec("resnet18", "aspp")).with_widths({"backbone.layer1.0.conv1": (4, 2, 1)})
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    (tmp_path / "m.yaml").write_text(spec.to_yaml())
    (tmp_path / "m.json").write_text(spec.to_json())
    assert ModelSpec.from_file(tmp_path / "m.yaml") == spec
    assert ModelSpec.from_file(tmp_path / "m.json") == spec
    (tmp_path / "c.yaml").write_text("model:\n" + "".join("  " + line + "\n" for line in spec.to_yaml().splitlines()))
    assert ModelSpec.from_file(tmp_path / "c.yaml") == spec


def test_widths_round_trip() -> None:
    spec = small_spec("resnet18", "aspp")
    model = create_model(spec)
    before = layer_widths(model)
    slim = {"backbone.layer1.0.conv1": (4, 2, 1), "backbone.layer1.0.bn1": (2,), "backbone.layer1.0.conv2": (2, 4, 1)}
    apply_widths(model, slim)
    after = layer_widths(model)
    assert changed_widths(before, after) == slim
    rebuilt = create_model(spec.with_widths(changed_widths(before, after)))
    assert layer_widths(rebuilt) == after
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x)["out"], model.eval()(x)["out"])


def test_widths_errors() -> None:
    model = create_model(small_spec("resnet18", "aspp"))
    with pytest.raises(CheckpointError, match="unknown layer"):
        apply_widths(model, {"backbone.nope": (1, 1, 1)})
    with pytest.raises(CheckpointError, match=r"\[in, out, groups\]"):
        apply_widths(model, {"backbone.layer1.0.conv1": (4, 2)})
    with pytest.raises(CheckpointError, match="only Conv2d"):
        apply_widths(model, {"backbone.layer1.0.relu": (1,)})


@pytest.mark.parametrize(("data", "message"), [
    ({"backbone": {"name": "resnet18"}, "tasks": [{"name": "x", "type": "nope"}]}, "unknown task type 'nope'"),
    ({"backbone": {"name": "vgg"}, "tasks": [{"name": "d", "type": "depth"}]}, "unknown backbone 'vgg'.*resnet18"),
    ({"backbone": {"name": "resnet18"}, "tasks": [{"name": "d", "type": "depth", "head": {"kind": "fpn"}}]},
     "unknown head 'fpn'"),
    ({"backbone": {"name": "resnet18"}, "tasks": [{"name": "s", "type": "segmentation"}]}, "needs num_outputs"),
    ({"backbone": {"name": "resnet18"}, "tasks": [{"name": "a", "type": "attributes"}]}, "attribute names"),
    ({"backbone": {"name": "resnet18"}, "tasks": [{"name": "d", "type": "depth", "loss": "huber"}]}, "unknown loss"),
])
def test_resolve_errors(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_spec(ModelSpec.from_dict(data))


@pytest.mark.parametrize(("data", "message"), [
    ({"backbone": {"name": "resnet18", "output_stride": 4}, "tasks": [{"name": "d", "type": "depth"}]}, "output_stride"),
    ({"backbone": {"name": "resnet18", "depth": 3}, "tasks": [{"name": "d", "type": "depth"}]}, "unknown key"),
    ({"backbone": {"name": "resnet18"}, "tasks": []}, "empty"),
    ({"backbone": {"name": "resnet18"}, "tasks": [{"name": "d", "type": "depth"}] * 2}, "duplicate"),
    ({"backbone": {"name": "resnet18", "base_width": "wide"}, "tasks": [{"name": "d", "type": "depth"}]}, "integer"),
])
def test_spec_errors(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ModelSpec.from_dict(data)
