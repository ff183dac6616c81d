"""The figures open as PNGs of a sensible size; bad input raises one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from mtlexport.errors import CheckpointError, ConfigError
from mtlexport.sparsity import sparsity_report
from mtlexport.sparsity.plots import plot_channels, plot_metric_curves, plot_run, plot_sparsity_curve, plot_sweep

from .conftest import TinyMultiTask


def _png(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        assert img.format == "PNG"
        img.load()
        return img.size


def test_channels_plot(tmp_path: Path, tiny_model: TinyMultiTask) -> None:
    with torch.no_grad():
        tiny_model.backbone.pw.weight[:, :3] = 0.0
    report = sparsity_report(tiny_model)
    assert report.zero_groups == 3
    w, h = _png(plot_channels(report, tmp_path / "c.png"))
    assert w >= 400 and h >= 300


def test_epoch_and_sweep_plots(tmp_path: Path) -> None:
    records = [{"epoch": e, "group_sparsity": 10.0 * e, "param_sparsity": 12.0 * e} for e in (1, 2, 3)]
    assert _png(plot_sparsity_curve(records, tmp_path / "s.png"))[0] >= 400
    metrics = [{"epoch": e, "val": {"seg": {"miou": 0.1 * e, "loss": 1.0 / e}, "cls": {"accuracy": 0.5}}}
               for e in (1, 2)]
    assert _png(plot_metric_curves(metrics, tmp_path / "m.png"))[0] >= 400
    rows = [{"lam": lam, "metrics": {"seg.miou": {"mean": 0.3, "std": 0.01}},
             "group_sparsity": {"mean": g, "std": 1.0}, "param_sparsity": {"mean": g, "std": 1.0}}
            for lam, g in ((0.0, 0.0), (1e-5, 70.0))]
    a, b = plot_sweep(rows, {"seg": "miou"}, tmp_path / "a.png", tmp_path / "b.png")
    assert _png(a)[1] >= 250 and _png(b)[1] >= 250
    with pytest.raises(ConfigError, match="nothing to plot"):
        plot_sparsity_curve([], tmp_path / "x.png")


def test_plot_run_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a run folder"):
        plot_run(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        plot_run(tmp_path / "missing")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        plot_run(tmp_path / "junk.pt")
