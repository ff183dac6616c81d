"""Trivial baselines: statistics from labels, constant predictions scored by the task meters."""

from __future__ import annotations

import pytest
import torch

from mtlexport.models import BackboneSpec, ModelSpec, TaskSpec
from mtlexport.tasks import build_tasks
from mtlexport.train import evaluate
from mtlexport.train.baselines import BaselinePredictor, fit_baselines


def test_baseline_statistics_and_predictions() -> None:
    spec = ModelSpec(backbone=BackboneSpec(), tasks=(
        TaskSpec(name="seg", type="segmentation", num_outputs=3), TaskSpec(name="depth", type="depth"),
        TaskSpec(name="normals", type="normals"), TaskSpec(name="attr", type="attributes", attributes=("a", "b"))))
    tasks = build_tasks(spec)
    seg = torch.tensor([[[2, 2], [1, 255]]])
    depth = torch.tensor([[[[1.0, 3.0], [0.0, 2.0]]]])
    normals = torch.zeros(1, 3, 2, 2)
    normals[0, 2] = 1.0
    normals[0, :, 1, 1] = torch.tensor([1.0, 0.0, 0.0])
    normals[0, :, 0, 0] = 0.0  # invalid
    batch = {"image": torch.zeros(1, 3, 2, 2), "seg": seg, "segmentation": seg, "depth": depth, "normals": normals,
             "a": torch.tensor([1.0]), "b": torch.tensor([0.0])}
    stats = fit_baselines(tasks, [batch, {**batch, "a": torch.tensor([1.0]), "b": torch.tensor([1.0])}])
    assert stats["seg"]["class_counts"] == [0, 2, 4]
    assert stats["depth"]["mean_depth"] == pytest.approx(2.0)
    assert stats["normals"]["mean_normal"] == pytest.approx([2.0, 0.0, 4.0])
    assert stats["attr"] == {"positives": [2, 1], "total": 2}

    predictor = BaselinePredictor(tasks, stats)
    out = predictor(torch.zeros(4, 3, 5, 6))
    assert out["seg"].shape == (4, 3, 5, 6) and bool((out["seg"].argmax(1) == 2).all())
    assert out["depth"].shape == (4, 1, 5, 6) and float(out["depth"][0, 0, 0, 0]) == pytest.approx(2.0)
    assert out["normals"][0, :, 0, 0].tolist() == pytest.approx([1 / 5**0.5, 0.0, 2 / 5**0.5])
    assert out["attr"].tolist() == [[1.0, -1.0]] * 4  # a: 2/2 positive; b: a tie is not a majority

    metrics = evaluate(predictor, tasks, [batch], "cpu")
    assert metrics["seg"]["pixel_acc"] == pytest.approx(2 / 3)
    assert metrics["depth"]["abs_err"] == pytest.approx((1 + 1 + 0) / 3)
