"""The surgeon on architectures users bring: dense blocks, concatenations read in both orders,
channel shuffle, ConvNeXt (Linear on channels-last tensors), U-Net skip concatenations.

For each: the slim model is exact, every channel killed by hand is removed (and nothing else),
a second pass finds nothing left to remove in the groups it supports, and every group kept
whole is named in the report with the layer or op type that blocked it.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

from mtlexport.errors import VerificationError
from mtlexport.surgery import slim_model
from mtlexport.surgery.analysis import analyse_group, dead_channels
from mtlexport.surgery.graph import build_graph, coupled_groups
from mtlexport.surgery.policy import plan_removal
from mtlexport.surgery.remove import apply_plan

from .arch_models import ARCHITECTURES, BLOCKED, DEAD, LIVE, build, build_dead

KINDS = sorted(ARCHITECTURES)


def _slim(model: nn.Module, **kw: object):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    return slim_model(model, x[:1], {"random": x}, **kw)


def _max_rel(dense: nn.Module, slim: nn.Module, size: int = 48) -> float:
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        a, b = dense(x), slim(x)
    return max(float((a[k] - b[k]).abs().max() / a[k].abs().max()) for k in a)


def _in_width(mod: nn.Module) -> int:
    return mod.in_features if isinstance(mod, nn.Linear) else mod.in_channels


def _reads(specs: list[dict[str, int]]) -> dict[str, int]:
    count: dict[str, int] = {}
    for readers in specs:
        for name in readers:
            count[name] = count.get(name, 0) + 1
    return count


@pytest.mark.parametrize("kind", KINDS)
def test_every_dead_channel_is_removed_exactly(kind: str) -> None:
    model = build_dead(kind)
    dense = copy.deepcopy(model)
    report = _slim(model)

    assert report.passed and report.max_rel_error <= 1e-5
    assert _max_rel(dense, model) <= 1e-5  # an input size the surgery never saw
    assert report.removed == len(DEAD[kind])
    # Each reader of a killed channel lost exactly the channels killed in it; nothing else moved.
    lost = _reads(DEAD[kind])
    for name, mod in dense.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)) and not (isinstance(mod, nn.Conv2d) and mod.groups > 1):
            assert _in_width(model.get_submodule(name)) == _in_width(mod) - lost.get(name, 0), name
    for name, mod in model.named_modules():
        if name.endswith("classifier"):
            assert mod.out_features == dense.get_submodule(name).out_features


@pytest.mark.parametrize("kind", KINDS)
def test_every_kept_channel_is_explained(kind: str) -> None:
    model = build_dead(kind)
    report = _slim(model)
    blocked_specs, blockers = BLOCKED[kind]

    assert report.removed + sum(report.kept.values()) == report.removable
    assert {s.blocker for s in report.skipped} == blockers
    assert sum(report.skipped_groups.values()) == sum(s.groups for s in report.skipped)
    counted = [s.channels for s in report.skipped if s.channels is not None]
    assert sum(counted) == report.kept["unsupported"]
    for skip in report.skipped:
        assert skip.reason and skip.roots and skip.groups >= 1
    # Layers reading a blocked or live slice keep it.
    for name in _reads(blocked_specs + LIVE[kind]):
        if name not in _reads(DEAD[kind]):
            mod = model.get_submodule(name)
            assert _in_width(mod) == _in_width(ARCHITECTURES[kind]().get_submodule(name)), name


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_random_dead_slices_slim_exactly_and_completely(kind: str, seed: int) -> None:
    model, zeroed = build(kind, seed=seed)
    assert zeroed
    dense = copy.deepcopy(model)
    report = _slim(model)
    assert report.passed and report.removed > 0
    assert _max_rel(dense, model) <= 1e-5
    # A second look finds nothing removable left in any group the surgeon supports.
    dg, outputs = build_graph(model, torch.randn(1, 3, 32, 32))
    for group in coupled_groups(dg, model, outputs):
        if group.unsupported or group.observable or group.grouped:
            continue
        dead = dead_channels(group)
        assert not dead or group.width == 1, (group.root, dead)


def test_shuffle_groups_are_reported_and_the_rest_slimmed() -> None:
    model = build_dead("shuffle")
    report = _slim(model)
    (skip,) = report.skipped
    assert skip.blocker == "ViewBackward0" and "channel shuffle" in skip.reason and skip.channels is None
    assert "ZeroDivisionError" in skip.reason
    assert model.conv5[0].in_channels == 16  # behind the shuffle: untouched
    assert model.stage[1].branch2[5].in_channels == 7  # inside a unit: slimmed


def test_graph_built_elsewhere_still_raises_on_the_shuffle() -> None:
    """The mapping guard only changes graphs built by ``build_graph``."""
    import torch_pruning as tp

    model = build_dead("shuffle")
    build_graph(model, torch.randn(1, 3, 32, 32))  # installs the guard
    with pytest.raises(ZeroDivisionError):
        tp.DependencyGraph().build_dependency(model, example_inputs=torch.randn(1, 3, 32, 32), verbose=False)


def test_convnext_mlp_widths_removed_and_layer_norm_channels_kept() -> None:
    model = build_dead("convnext")
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    # Zero input slices of every layer (the depthwise convolutions have none here).
    zero = sum(int((m.weight.reshape(m.weight.shape[0], m.weight.shape[1], -1) == 0).all(2).all(0).sum())
               for m in layers if getattr(m, "groups", 1) == 1)
    total = sum(_in_width(m) for m in layers)
    report = _slim(model)
    assert report.group_sparsity == pytest.approx(zero / total) and zero >= 5  # Linear layers count
    assert report.realised > 0
    assert model.stage1[0].pwconv1.out_features == 30 and model.stage1[0].pwconv2.in_features == 30
    assert model.stage2[1].pwconv1.out_features == 63
    assert model.stage2[0].dwconv.out_channels == 16 and model.stage2[0].norm.normalized_shape == (16,)
    norm = next(s for s in report.skipped if s.blocker == "LayerNorm")
    assert norm.channels == 1 and "normalises over these channels" in norm.reason


class SpatialLinear(nn.Module):
    """A Linear over the width of an NCHW map: its input dim is not the channel dimension."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.mix = nn.Linear(8, 8)
        self.classifier = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.classifier(self.mix(self.conv(x)))}


def test_linear_over_a_spatial_dimension_is_never_treated_as_channels() -> None:
    torch.manual_seed(0)
    model = SpatialLinear().eval()
    with torch.no_grad():
        model.mix.weight[:, 3] = 0  # reads width column 3, not channel 3
    dense = copy.deepcopy(model)
    x = torch.randn(2, 3, 8, 8)
    report = slim_model(model, x[:1], {"random": x})
    assert report.passed and model.conv.out_channels == 8 and model.mix.in_features == 8
    with torch.no_grad():
        assert torch.equal(dense(x)["out"], model(x)["out"])


def test_a_real_mismatch_is_still_refused() -> None:
    model = build_dead("dense")
    dg, outputs = build_graph(model, torch.randn(1, 3, 32, 32))
    analyses = [analyse_group(dg, g) for g in coupled_groups(dg, model, outputs)]
    plan = plan_removal(analyses, protected=["heads.classifier"])
    gp = next(g for g in plan.groups if any(m.name == "transition.2" for m in g.group.by_role("consumer")))
    # Pretend the analysis saw the transition read these channels one position further on.
    members = tuple(dataclasses.replace(m, idxs=tuple(i + 1 for i in m.idxs))
                    if m.name == "transition.2" and m.role == "consumer" else m for m in gp.group.members)
    bad = dataclasses.replace(gp, group=dataclasses.replace(gp.group, members=members))
    with pytest.raises(VerificationError, match="maps the removal differently"):
        apply_plan(dg, dataclasses.replace(plan, groups=(bad,)))


def test_cli_table_names_the_blocking_op_types(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """``mtlexport slim`` without --json names the layer / op types that kept groups whole."""
    from mtlexport.cli.main import main

    (tmp_path / "user_convnext.py").write_text(
        "from tests.surgery.arch_models import build_dead\n\n"
        "def build():\n    return build_dead('convnext')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import user_convnext

    torch.save(user_convnext.build().state_dict(), tmp_path / "sd.pt")
    rc = main(["slim", str(tmp_path / "sd.pt"), "--model", "user_convnext:build", "--input-size", "32"])
    text = capsys.readouterr().out
    assert rc == 0 and "groups kept whole" in text
    table = text[text.index("groups kept whole"):]
    assert "│ LayerNorm   " in table and "│ LayerNorm2d " in table and "normalises" in table
