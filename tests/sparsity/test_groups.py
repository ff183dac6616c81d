from __future__ import annotations

import pytest
import torch
from torch import nn

from mtlexport.errors import ConfigError
from mtlexport.sparsity import collect_grouped_params, split_param_groups


def test_counts_depthwise_and_in_channel_grouped_conv_excluded(tiny_model: nn.Module) -> None:
    grouped = {g.name: g for g in collect_grouped_params(tiny_model)}
    assert set(grouped) == {"backbone.stem", "backbone.dw", "backbone.pw"}  # groups=2 conv excluded
    stem, dw, pw = grouped["backbone.stem"], grouped["backbone.dw"], grouped["backbone.pw"]
    assert (stem.layout, stem.num_groups, stem.group_size) == ("in_channel", 3, 8 * 3 * 3)
    assert (dw.layout, dw.num_groups, dw.group_size) == ("depthwise", 8, 9)
    assert (pw.layout, pw.num_groups, pw.group_size) == ("in_channel", 8, 16)
    assert stem.group_weight == pytest.approx(72**0.5)
    assert pw.group_dim == 1 and dw.group_dim == 0


def test_scope_all_adds_head_convs_only(tiny_model: nn.Module) -> None:
    names = [g.name for g in collect_grouped_params(tiny_model, scope="all")]
    assert names == ["backbone.stem", "backbone.dw", "backbone.pw", "heads.seg"]


def test_model_without_backbone_groups_every_conv() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 1), nn.Linear(4, 2))
    for scope in ("backbone", "all"):
        assert [g.name for g in collect_grouped_params(net, scope)] == ["0", "2"]


def test_unknown_scope_lists_valid_ones(tiny_model: nn.Module) -> None:
    with pytest.raises(ConfigError, match="backbone, all"):
        collect_grouped_params(tiny_model, scope="heads")


def test_split_has_every_trainable_param_exactly_once(tiny_model: nn.Module) -> None:
    log_vars = nn.Parameter(torch.zeros(2))
    frozen = tiny_model.backbone.bn.weight
    frozen.requires_grad_(False)
    groups = split_param_groups(tiny_model, extra_params=[log_vars, tiny_model.backbone.pw.bias])
    ids = [id(p) for g in groups for p in g["params"]]
    trainable = [p for p in tiny_model.parameters() if p.requires_grad] + [log_vars]
    assert len(ids) == len(set(ids)) == len(trainable)
    assert set(ids) == {id(p) for p in trainable}
    flags = [(g["group_lasso"], g.get("layout")) for g in groups]
    assert flags == [(True, "in_channel"), (True, "depthwise"), (False, None)]
    lasso = {id(p) for g in groups if g["group_lasso"] for p in g["params"]}
    bb = tiny_model.backbone
    assert lasso == {id(bb.stem.weight), id(bb.dw.weight), id(bb.pw.weight)}
    assert id(log_vars) in ids and id(frozen) not in ids


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2"])
def test_zoo_backbones_group_every_plain_and_depthwise_conv(name: str) -> None:
    models = pytest.importorskip("mtlexport.models")
    backbone = models.BACKBONES.get(name)(models.BackboneSpec(name=name), 3)
    net = nn.Module()
    net.backbone = backbone
    net.heads = nn.ModuleDict({"t": nn.Conv2d(4, 4, 1)})
    grouped = collect_grouped_params(net)
    convs = [m for m in backbone.modules() if isinstance(m, nn.Conv2d)]
    assert len(grouped) == len(convs)  # the zoo has no 1 < groups < in_channels convs
    assert all(g.name.startswith("backbone.") for g in grouped)
    depthwise = sum(1 for m in convs if m.groups > 1)
    assert sum(g.layout == "depthwise" for g in grouped) == depthwise
    assert (depthwise > 0) == (name == "mobilenetv2")
