"""Every metric against values computed by hand on tiny tensors; loss sanity; Delta score."""

from __future__ import annotations

import math

import pytest
import torch

from mtlexport.models import TaskSpec
from mtlexport.tasks import build_task, build_tasks, delta_score, metric_directions
from mtlexport.models import BackboneSpec, ModelSpec

IGNORE = 255


def one_hot_logits(labels: list[int], classes: int) -> torch.Tensor:
    """(1, C, 1, N) logits whose argmax is ``labels``."""
    t = torch.tensor(labels)
    return torch.nn.functional.one_hot(t, classes).T.float().reshape(1, classes, 1, len(labels))


def seg_task(classes: int = 3):
    return build_task(TaskSpec(name="seg", type="segmentation", num_outputs=classes))


def test_miou_with_absent_class_and_ignore_index() -> None:
    meter = seg_task().meter()
    target = torch.tensor([[[0, 0, 1, 1, IGNORE]]])
    # the ignored pixel predicts class 2, which appears nowhere else: class 2 must not count
    meter.update(one_hot_logits([0, 1, 1, 1, 2], 3), {"segmentation": target})
    m = meter.compute()
    assert m["miou"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert m["pixel_acc"] == pytest.approx(3 / 4)


def test_miou_counts_false_positive_class_as_zero() -> None:
    meter = seg_task().meter()
    meter.update(one_hot_logits([0, 2], 3), {"segmentation": torch.tensor([[[0, 0]]])})
    m = meter.compute()
    assert m["miou"] == pytest.approx((1 / 2 + 0.0) / 2)


def test_miou_accumulates_over_batches() -> None:
    meter = seg_task().meter()
    meter.update(one_hot_logits([0, 1], 3), {"segmentation": torch.tensor([[[0, 0]]])})
    meter.update(one_hot_logits([1, 1], 3), {"segmentation": torch.tensor([[[1, 1]]])})
    # confusion: t0->p0 1, t0->p1 1, t1->p1 2
    assert meter.compute()["miou"] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_depth_metrics_by_hand() -> None:
    meter = build_task(TaskSpec(name="depth", type="depth")).meter()
    target = torch.tensor([1.0, 2.0, 0.0, 4.0]).reshape(1, 1, 1, 4)
    pred = torch.tensor([1.2, 3.0, 5.0, 4.0]).reshape(1, 1, 1, 4)
    meter.update(pred, {"depth": target})
    m = meter.compute()
    assert m["abs_err"] == pytest.approx((0.2 + 1.0 + 0.0) / 3)
    assert m["rel_err"] == pytest.approx((0.2 / 1 + 1.0 / 2 + 0.0) / 3)
    assert m["rmse"] == pytest.approx(math.sqrt((0.04 + 1.0) / 3))
    # ratios 1.2, 1.5, 1.0 against thresholds 1.25, 1.5625, 1.953
    assert (m["delta1"], m["delta2"], m["delta3"]) == pytest.approx((2 / 3, 1.0, 1.0))


def test_normals_median_with_even_count() -> None:
    meter = build_task(TaskSpec(name="normals", type="normals")).meter()
    angles = torch.deg2rad(torch.tensor([0.0, 20.0, 40.0, 90.0, 10.0]))
    pred = torch.stack([torch.cos(angles), torch.sin(angles), torch.zeros(5)]).reshape(1, 3, 1, 5) * 3.0
    target = torch.tensor([[1.0, 0, 0]] * 4 + [[0.0, 0, 0]]).T.reshape(1, 3, 1, 5)  # last pixel invalid
    meter.update(pred, {"normals": target})
    m = meter.compute()
    assert m["median_angle"] == pytest.approx(30.0, abs=1e-4)
    assert m["mean_angle"] == pytest.approx(37.5, abs=1e-4)
    assert (m["within_11_25"], m["within_22_5"], m["within_30"]) == pytest.approx((0.25, 0.5, 0.5))
    expected_cos = (1 + math.cos(math.radians(20)) + math.cos(math.radians(40)) + 0) / 4
    assert m["mean_cos"] == pytest.approx(expected_cos, abs=1e-6)


def test_attributes_accuracy_and_f1() -> None:
    task = build_task(TaskSpec(name="attr", type="attributes", attributes=("a", "b")))
    meter = task.meter()
    logits = torch.tensor([[2.0, -1.0], [-2.0, -1.0], [1.0, -3.0], [-1.0, -2.0]])
    batch = {"a": torch.tensor([1.0, 1.0, 0.0, 0.0]), "b": torch.zeros(4)}
    meter.update(logits, batch)
    m = meter.compute()
    assert m["accuracy_a"] == pytest.approx(0.5) and m["f1_a"] == pytest.approx(0.5)
    assert m["accuracy_b"] == pytest.approx(1.0) and m["f1_b"] == 0.0  # no positives at all: F1 is 0
    assert m["accuracy"] == pytest.approx(0.75) and m["f1"] == pytest.approx(0.25)


def test_losses_are_sane() -> None:
    seg = seg_task()
    target = torch.tensor([[[0, 1, IGNORE]]])
    perfect = one_hot_logits([0, 1, 2], 3) * 50
    assert seg.loss(perfect, {"segmentation": target}) < 1e-6
    void = torch.full((1, 1, 3), IGNORE)
    logits = torch.randn(1, 3, 1, 3, requires_grad=True)
    zero = seg.loss(logits, {"segmentation": void})
    zero.backward()
    assert zero.item() == 0.0 and logits.grad is not None

    depth = build_task(TaskSpec(name="d", type="depth"))
    t = torch.tensor([1.0, 0.0, 3.0]).reshape(1, 1, 1, 3)
    p = torch.tensor([2.0, 100.0, 3.0]).reshape(1, 1, 1, 3)
    assert depth.loss(p, {"depth": t}).item() == pytest.approx(0.5)  # invalid pixel ignored
    mse = build_task(TaskSpec(name="d", type="depth", loss="mse"))
    assert mse.loss(p, {"depth": t}).item() == pytest.approx(0.5)

    normals = build_task(TaskSpec(name="n", type="normals"))
    n = torch.tensor([0.0, 0.0, 1.0]).reshape(1, 3, 1, 1)
    assert normals.loss(n * 5, {"normals": n}).item() == pytest.approx(0.0, abs=1e-6)
    assert normals.loss(-n, {"normals": n}).item() == pytest.approx(2.0)

    attrs = build_task(TaskSpec(name="a", type="attributes", attributes=("x",)))
    loss = attrs.loss(torch.zeros(4, 1), {"x": torch.tensor([0.0, 1.0, 1.0, 0.0])})
    assert loss.item() == pytest.approx(math.log(2))


def test_delta_score_by_hand() -> None:
    spec = ModelSpec(backbone=BackboneSpec(), tasks=(
        TaskSpec(name="seg", type="segmentation", num_outputs=3), TaskSpec(name="depth", type="depth")))
    tasks = build_tasks(spec)
    metrics = {"seg": {"miou": 0.55, "pixel_acc": 0.8}, "depth": {"abs_err": 0.9}}
    base = {"seg": {"miou": 0.5, "pixel_acc": 0.8}, "depth": {"abs_err": 1.0, "rmse": 2.0}}
    d = delta_score(tasks, metrics, base)
    assert d["seg"] == pytest.approx((10.0 + 0.0) / 2)
    assert d["depth"] == pytest.approx(10.0)  # lower is better; rmse missing on one side is skipped
    assert d["overall"] == pytest.approx(7.5)
    assert metric_directions(tasks)["depth"]["abs_err"] is False
