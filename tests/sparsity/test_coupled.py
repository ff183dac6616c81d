"""Coupled groups: every zero group is a channel the surgeon removes, on every zoo model."""

from __future__ import annotations

import copy

import pytest
import torch

from mtlexport.models import create_model
from mtlexport.sparsity import ProxAdam, split_param_groups
from mtlexport.sparsity.coupled import GroupStructure, build_structure, trace_groups
from mtlexport.sparsity.macs import build_macs_model
from mtlexport.surgery import slim_model

from ..surgery.helpers import randomise_norms, small_spec

ZOO = [(b, s) for b in ("resnet18", "resnet34") for s in (8, 16, 32)] + [("resnet50", s) for s in (8, 16, 32)] + [
    ("mobilenetv2", s) for s in (8, 16, 32)]


def _model(backbone: str, stride: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(small_spec(backbone, output_stride=stride)).eval()
    randomise_norms(model, torch.Generator().manual_seed(1))
    return model


def _zero_groups(model: torch.nn.Module, structure: GroupStructure, dead: torch.Tensor) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, dim, ids in zip(structure.names, structure.dims, structure.ids):
            sel = torch.nonzero((ids >= 0) & dead[ids.clamp_min(0)]).flatten()
            params[name].index_fill_(dim, sel, 0.0)


@pytest.mark.parametrize(("backbone", "stride"), ZOO)
def test_zero_coupled_groups_are_exactly_the_removed_channels(backbone: str, stride: int) -> None:
    model = _model(backbone, stride)
    example = torch.randn(2, 3, 32, 32)
    graph = trace_groups(model, example)
    structure = build_structure(model, "coupled", "backbone", graph=graph)
    assert structure.num_groups > 0
    # Zero ~half of the groups, never every group of one channel set (a layer keeps one channel).
    gen = torch.Generator().manual_seed(2)
    dead = torch.rand(structure.num_groups, generator=gen) < 0.5
    for s in range(structure.num_sets):
        members = torch.nonzero(structure.sets == s).flatten()
        dead[members[0]] = False
    _zero_groups(model, structure, dead)
    params = dict(model.named_parameters())
    macs = build_macs_model(model, graph[1], (3, 32, 32), [params[n] for n in structure.names])
    predicted = macs.ratio(macs.dead_channels())
    report = slim_model(copy.deepcopy(model), example, {"random": torch.randn(2, 3, 32, 32)})
    assert report.removed == int(dead.sum()) == report.removable
    assert report.macs_after / report.macs_before == pytest.approx(predicted, abs=0.003)


def test_channel_groups_follow_the_paper_and_coupled_span_every_reader() -> None:
    model = _model("resnet18", 8)
    channel = build_structure(model, "channel", "backbone")
    assert channel.grouping == "channel" and channel.num_sets == 0
    convs = [n for n, m in model.backbone.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert channel.names == tuple(f"backbone.{n}.weight" for n in convs)
    coupled = build_structure(model, "coupled", "backbone", example=torch.randn(2, 3, 32, 32))
    # The residual stream of layer1 is one set read by several convolutions: its groups span them.
    readers_per_set = {}
    for name, ids in zip(coupled.names, coupled.ids):
        for s in coupled.sets[ids[ids >= 0]].unique().tolist():
            readers_per_set.setdefault(s, set()).add(name)
    assert max(len(v) for v in readers_per_set.values()) >= 3
    # Head readers of backbone channels are in the groups; the task output layers never are.
    assert any(n.startswith("heads.") for n in coupled.names)
    assert not any("classifier" in n for n in coupled.names)
    restored = GroupStructure.from_dict(coupled.to_dict())
    assert restored.names == coupled.names and all(torch.equal(a, b) for a, b in zip(restored.ids, coupled.ids))


def test_coupled_training_zero_groups_are_removed_and_a_channel_is_always_kept() -> None:
    model = _model("mobilenetv2", 8)
    example = torch.randn(2, 3, 32, 32)
    structure = build_structure(model, "coupled", "backbone", example=example)
    opt = ProxAdam(split_param_groups(model, structure=structure), lr=3e-2, lam=5e-2)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(15):
        x = torch.randn(4, 3, 32, 32, generator=gen)
        opt.zero_grad()
        out = model(x)
        (out["seg"].square().mean() + out["attr"].square().mean()).backward()
        opt.step()
    zero = opt.zero_groups(opt.param_groups[0])
    assert 0 < int(zero.sum()) < structure.num_groups
    # No channel set lost all its groups: the keep rule mirrors the surgeon's one-channel minimum.
    alive = torch.zeros(structure.num_sets).index_add_(0, structure.sets, (~zero).float())
    assert (alive >= 1).all()
    report = slim_model(model.eval(), example, {"random": torch.randn(2, 3, 32, 32)})
    assert report.removed == int(zero.sum())
