"""The committed sample checkpoints load, match their claims, and agree with each other."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mtlexport.sparsity import sparsity_report
from mtlexport.train import TrainConfig, load_checkpoint

SAMPLES = Path(__file__).resolve().parents[1] / "sample_models"


@pytest.mark.parametrize("name", ["quick_dense", "quick_sparse", "quick_sparse.slim"])
def test_sample_loads_weights_only_and_has_no_training_state(name: str) -> None:
    raw = torch.load(SAMPLES / f"{name}.pt", weights_only=True)
    assert raw["format"] == "mtlexport.checkpoint" and raw["optimizer"] is None
    ckpt = load_checkpoint(SAMPLES / f"{name}.pt")
    ckpt.build_model()
    TrainConfig.from_dict(ckpt.config)  # the stored config is still valid for this version


def test_sparse_sample_is_group_sparse_and_dense_is_not() -> None:
    dense = sparsity_report(load_checkpoint(SAMPLES / "quick_dense.pt").build_model())
    ckpt = load_checkpoint(SAMPLES / "quick_sparse.pt")
    sparse = sparsity_report(ckpt.build_model())
    assert dense.zero_groups == 0
    assert 10.0 <= sparse.group_sparsity <= 80.0
    # The recipe: coupled groups landing on half the dense MACs (see make_samples.sh).
    assert ckpt.config["optimizer"]["grouping"] == "coupled" and ckpt.config["optimizer"]["target_macs"] == 0.5
    record = ckpt.extra["sparsity"]
    assert record["zero_coupled_groups"] == record["removable_channels"] > 0
    assert abs(record["macs_ratio"] - 0.5) <= 0.03


def test_sparse_sample_slims_to_its_macs_target() -> None:
    from mtlexport.surgery import slim_model

    ckpt = load_checkpoint(SAMPLES / "quick_sparse.pt")
    model = ckpt.build_model()
    report = slim_model(model, torch.randn(2, 3, 64, 64), {"random": torch.randn(2, 3, 64, 64)})
    assert report.removed == ckpt.extra["sparsity"]["zero_coupled_groups"]
    assert 0.47 <= report.macs_after / report.macs_before <= 0.53


def test_slim_sample_is_smaller_and_computes_the_same_function() -> None:
    sparse = load_checkpoint(SAMPLES / "quick_sparse.pt").build_model()
    slim_ckpt = load_checkpoint(SAMPLES / "quick_sparse.slim.pt")
    slim = slim_ckpt.build_model()
    assert slim_ckpt.spec.widths, "the slim spec must carry its per-layer widths"
    assert sum(p.numel() for p in slim.parameters()) < 0.6 * sum(p.numel() for p in sparse.parameters())
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        a, b = sparse(x), slim(x)
    for name in a:
        scale = a[name].abs().max().clamp_min(1e-6)
        assert ((a[name] - b[name]).abs().max() / scale) <= 1e-5, name
