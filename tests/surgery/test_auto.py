"""``--round-to auto``: width bounds, the search, and the whole pipeline on tiny checkpoints.

Timing is kept to a minimum (sub-millisecond layer entries, a few whole-model queries); nothing
here asserts a wall-clock figure, only what the measurements are used for.
"""

from __future__ import annotations

import copy
import random
import shutil
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from mtlexport.errors import BackendUnavailableError, ConfigError
from mtlexport.surgery import slim_checkpoint
from mtlexport.surgery.analysis import analyse_group
from mtlexport.surgery.auto import AutoOptions
from mtlexport.surgery.graph import build_graph, coupled_groups
from mtlexport.surgery.latency import LayerShape
from mtlexport.surgery.policy import WidthBounds, fixed_width, plan_removal
from mtlexport.surgery.remove import apply_plan
from mtlexport.surgery.search import search_widths, width_problem
from mtlexport.surgery.slim import output_layers
from mtlexport.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint

from .helpers import small_spec, sparse_model

FAST = dict(duration_s=0.0, iterations=2, rounds=2, warmup_ms=0.0, layer_ms=0.3, multiples=(1, 4, 8))


def _traced(model: nn.Module) -> tuple[object, list, list]:
    dg, outs = build_graph(model, torch.randn(1, 3, 32, 32))
    groups = coupled_groups(dg, model, outs)
    return dg, groups, [analyse_group(dg, g) for g in groups]


def test_fixed_widths_and_candidates_stay_between_live_and_dense() -> None:
    assert [fixed_width(11, 128, m) for m in (1, 4, 8, 16, 32)] == [11, 12, 16, 16, 32]
    assert fixed_width(18, 20, 8) == 20  # the next multiple (24) exceeds the dense width
    b = WidthBounds(root="x", live=11, dense=40)
    assert b.candidates((1, 4, 8, 16, 32, 64)) == (11, 12, 16, 32, 40)
    with pytest.raises(ConfigError):
        fixed_width(3, 8, 0)


def test_plan_refuses_widths_outside_the_bounds_or_for_unslimmable_groups() -> None:
    model = sparse_model(small_spec("resnet18"), share=0.6, seed=4)
    _, groups, analyses = _traced(model)
    problem = width_problem(model, groups, analyses, output_layers(model), (1, 3, 32, 32))
    root, b = next(iter(problem.bounds.items()))
    for bad in (b.live - 1, b.dense + 1):
        with pytest.raises(ConfigError, match="outside its live..dense range"):
            plan_removal(analyses, protected=output_layers(model), widths={root: bad})
    with pytest.raises(ConfigError, match="cannot be slimmed"):
        plan_removal(analyses, protected=output_layers(model), widths={"heads.seg.classifier": 1})


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenetv2"])
def test_layer_terms_predict_the_shapes_the_surgeon_produces(backbone: str) -> None:
    """For random widths within bounds, every timed layer's predicted shape is the real one
    (residual stages, concatenating ASPP heads, depthwise convolutions, flatten into linear)."""
    model = sparse_model(small_spec(backbone), share=0.6, seed=3)
    _, groups, analyses = _traced(model)
    problem = width_problem(model, groups, analyses, output_layers(model), (2, 3, 32, 32))
    assert problem.bounds and problem.layers
    assert any(t.shape.depthwise for t in problem.layers) == (backbone == "mobilenetv2")
    rng = random.Random(0)
    widths = {g: rng.randint(b.live, b.dense) for g, b in problem.bounds.items()}
    slim = copy.deepcopy(model)
    dg, _, slim_analyses = _traced(slim)
    apply_plan(dg, plan_removal(slim_analyses, protected=output_layers(slim), widths=widths))
    modules = dict(slim.named_modules())
    for term in problem.layers:
        shape, mod = term.at(widths, problem.bounds), modules[term.name]
        real = (mod.in_channels, mod.out_channels) if isinstance(mod, nn.Conv2d) else (mod.in_features, mod.out_features)
        assert (shape.in_channels, shape.out_channels) == real, term.name


class FakeTable:
    """Latency = output channels rounded up to blocks of 8, times input channels: only
    multiples of 8 are worth having. Counts the shapes it was asked to measure."""

    def __init__(self) -> None:
        self.entries: dict[str, float] = {}

    def ensure(self, shapes: object) -> int:
        new = [s for s in shapes if s.key() not in self.entries]  # type: ignore[union-attr]
        for s in new:
            self.entries[s.key()] = -(-s.out_channels // 8) * 8 * s.in_channels * 1e-3
        return len(new)

    def latency(self, shape: LayerShape) -> float:
        self.ensure([shape])
        return self.entries[shape.key()]


def test_search_never_predicts_slower_than_the_best_fixed_multiple() -> None:
    model = sparse_model(small_spec("resnet18"), share=0.6, seed=4)
    _, groups, analyses = _traced(model)
    problem = width_problem(model, groups, analyses, output_layers(model), (1, 3, 32, 32))
    table = FakeTable()
    result = search_widths(problem, table, (1, 4, 8))
    best_fixed = min(problem.layer_ms(problem.fixed(m), table) for m in (1, 4, 8))
    assert problem.layer_ms(result.widths, table) <= best_fixed
    for g, b in problem.bounds.items():
        assert b.live <= result.widths[g] <= b.dense
        assert result.widths[g] in b.candidates((1, 4, 8))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = small_spec("resnet18")
    model = sparse_model(spec, share=0.6, seed=2)
    path = tmp_path_factory.mktemp("auto") / "sparse.pt"
    save_checkpoint(path, Checkpoint(spec=spec, state_dict=model.state_dict()))
    return path


@pytest.mark.parametrize("backend", ["torch", "ort"])
def test_auto_is_exact_bounded_and_reuses_the_layer_table(backend: str, ckpt: Path, tmp_path: Path) -> None:
    if backend == "ort":
        pytest.importorskip("onnxruntime")
    options = AutoOptions(backend=backend, cache_dir=tmp_path / "cache", **FAST)
    out = tmp_path / "auto.pt"
    report = slim_checkpoint(ckpt, out, round_to="auto", auto=options, input_size=32)
    auto = report.auto
    assert report.passed and report.round_to == "auto" and report.removed > 0  # the surgeon's verification
    assert auto.layer_measurements > 0 and auto.layer_entries > 0 and Path(auto.table).is_file()
    names = {v.name for v in auto.variants}
    assert {"dense", "round-to 1", "round-to 4", "round-to 8", "auto"} <= names
    assert auto.chosen in names and auto.best_fixed.startswith("round-to ")
    chosen = auto.variant(auto.chosen)
    assert chosen.measured_ms <= auto.variant(auto.best_fixed).measured_ms  # never slower than the best fixed
    for g in auto.groups:
        assert g.live <= g.auto <= g.dense and g.live <= g.width <= g.dense and g.dead_kept == g.width - g.live
    # the written model has the kept widths and computes what the dense one does
    slim = load_checkpoint(out).build_model().eval()
    modules = dict(slim.named_modules())
    for g in auto.groups:
        mod = modules[g.root]
        assert (mod.out_channels if isinstance(mod, nn.Conv2d) else mod.out_features) == g.width
    dense = load_checkpoint(ckpt).build_model().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want, got = dense(x), slim(x)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-5)
    payload = report.to_dict()["auto"]
    assert payload["chosen"] == auto.chosen and len(payload["groups"]) == len(auto.groups)

    again = slim_checkpoint(ckpt, tmp_path / "again.pt", round_to="auto", auto=options, input_size=32)
    assert again.auto.layer_measurements == 0 and again.auto.layer_entries > 0  # all from the cached table


def test_auto_is_refused_when_the_backend_is_not_installed(ckpt: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails at the boundary
    options = AutoOptions(backend="ort", cache_dir=tmp_path, **FAST)
    with pytest.raises(BackendUnavailableError, match="onnxruntime is not installed"):
        slim_checkpoint(ckpt, tmp_path / "x.pt", round_to="auto", auto=options, input_size=32)
    assert not (tmp_path / "x.pt").exists()


def test_auto_on_inductor_needs_a_compiler(ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    options = AutoOptions(backend="inductor", cache_dir=tmp_path, **FAST)
    with pytest.raises(BackendUnavailableError, match="C\\+\\+ compiler"):
        slim_checkpoint(ckpt, tmp_path / "x.pt", round_to="auto", auto=options, input_size=32)


def test_auto_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="ort, torch, inductor"):
        AutoOptions(backend="trt")
    with pytest.raises(ConfigError, match="--batch"):
        AutoOptions(batch=0)
    assert AutoOptions(multiples=(8, 16)).multiples == (1, 8, 16)  # round-to 1 is always a reference
