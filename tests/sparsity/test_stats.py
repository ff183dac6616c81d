from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from mtlexport.errors import CheckpointError
from mtlexport.sparsity import sparsity_report, sparsity_report_from_state_dict


def _zero_some(model: nn.Module) -> None:
    bb = model.backbone
    with torch.no_grad():
        bb.stem.weight[:, 0] = 0.0  # 1 of 3 input-channel groups, 72 params
        bb.dw.weight[[1, 4, 5]] = 0.0  # 3 of 8 depthwise groups, 27 params
        bb.pw.weight[:, 2:4] = 0.0  # 2 of 8 groups, 32 params
        bb.pw.weight[0, 5] = 0.0  # a single zero does not make a group zero
        bb.grouped.weight.zero_()  # ungrouped layer: not counted


def test_hand_counted(tiny_model: nn.Module) -> None:
    _zero_some(tiny_model)
    report = sparsity_report(tiny_model)
    layers = {layer.name: layer for layer in report.layers}
    assert list(layers) == ["backbone.stem", "backbone.dw", "backbone.pw"]
    stem, dw, pw = layers.values()
    assert (stem.in_channels, stem.out_channels, stem.num_groups, stem.zero_groups) == (3, 8, 3, 1)
    assert (stem.params, stem.zero_params) == (216, 72)
    assert (dw.layout, dw.in_channels, dw.out_channels, dw.num_groups, dw.zero_groups) == ("depthwise", 8, 8, 8, 3)
    assert (dw.params, dw.zero_params) == (72, 27)
    assert (pw.num_groups, pw.zero_groups, pw.params, pw.zero_params) == (8, 2, 128, 32)
    assert pw.group_sparsity == pytest.approx(25.0) and pw.param_sparsity == pytest.approx(25.0)
    assert (report.num_groups, report.zero_groups) == (19, 6)
    assert (report.params, report.zero_params) == (416, 131)
    assert report.group_sparsity == pytest.approx(100 * 6 / 19)
    assert report.param_sparsity == pytest.approx(100 * 131 / 416)
    d = report.to_dict()
    assert d["zero_groups"] == 6 and d["layers"][1]["group_sparsity"] == pytest.approx(37.5)


def test_scope_all_counts_head_convs(tiny_model: nn.Module) -> None:
    with torch.no_grad():
        tiny_model.heads["seg"].weight[:, :4] = 0.0
    report = sparsity_report(tiny_model, scope="all")
    assert report.layers[-1].name == "heads.seg" and report.layers[-1].zero_groups == 4
    assert sparsity_report(tiny_model).zero_groups == 0


def test_from_state_dict_matches_model(tiny_model: nn.Module) -> None:
    _zero_some(tiny_model)
    buf = io.BytesIO()
    torch.save(tiny_model.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    layouts = {layer.name: layer.layout for layer in sparsity_report(tiny_model).layers}
    assert sparsity_report_from_state_dict(state, layouts) == sparsity_report(tiny_model)
    with pytest.raises(CheckpointError):
        sparsity_report_from_state_dict(state, {"backbone.missing": "in_channel"})


def test_empty_model_reports_zero() -> None:
    report = sparsity_report(nn.Linear(3, 2))
    assert report.layers == () and report.group_sparsity == 0.0 and report.param_sparsity == 0.0
