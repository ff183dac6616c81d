"""DiSparse: saliency formulas by hand, per-task gradients, units and the mask IoU."""

from __future__ import annotations

import pytest
import torch

from mtlexport.errors import ConfigError
from mtlexport.sparsity.methods.base import task_gradients
from mtlexport.sparsity.methods.disparse import layer_iou, saliency
from mtlexport.sparsity.methods.units import build_units

G = torch.tensor([[1.0, -2.0], [3.0, 0.5]])
W = torch.tensor([[0.5, 1.0], [-2.0, 4.0]])


def test_saliency_formulas() -> None:
    assert saliency("static", G, W).tolist() == [[0.5, 2.0], [6.0, 2.0]]  # SNIP |g * w|
    assert saliency("pretrained", G, W).tolist() == [[0.25, 2.0], [12.0, 8.0]]  # eq. 15 |g| * w^2
    assert saliency("pretrained", G, W, "magnitude").tolist() == [[0.5, 1.0], [2.0, 4.0]]  # public NYUv2 code
    assert saliency("dynamic", G, W).tolist() == [[1.0, 2.0], [3.0, 0.5]]  # RigL growth |g|


def test_task_gradients_by_hand(toy, toy_tasks) -> None:
    x = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    params = [toy.backbone.weight, toy.heads["a"].weight, toy.heads["b"].weight]
    grads = task_gradients(toy, toy_tasks, [{"image": x}, {"image": x}], params, torch.device("cpu"), max_batches=1)
    # task a: L = sum_n A B x_n  ->  dL/dA = sum_n (B x_n)^T, dL/dB = A^T sum_n x_n^T; head b untouched
    xs = x.sum(dim=0)
    by = toy.backbone.weight.detach() @ xs
    assert torch.allclose(grads[0][1], by.view(1, 2))
    assert torch.allclose(grads[0][0], toy.heads["a"].weight.detach().t() @ xs.view(1, 2))
    assert torch.count_nonzero(grads[0][2]) == 0
    assert torch.allclose(grads[1][0], toy.heads["b"].weight.detach().t() @ xs.view(1, 2))
    assert torch.count_nonzero(grads[1][1]) == 0
    # accumulated over batches
    two = task_gradients(toy, toy_tasks, [{"image": x}, {"image": x}], params, torch.device("cpu"), max_batches=2)
    assert torch.allclose(two[0][1], 2 * grads[0][1])
    assert all(p.grad is None for p in params)
    with pytest.raises(ConfigError, match="no batch"):
        task_gradients(toy, toy_tasks, [], params, torch.device("cpu"))


def test_element_units_owners_and_masks(toy) -> None:
    space = build_units(toy, "element", "all", ("a", "b"), (2, 1, 1))
    assert space.names == ("backbone.weight", "heads.a.weight", "heads.b.weight")
    assert space.owner.tolist() == [-1, -1, -1, -1, 0, 0, 1, 1]
    keep = torch.tensor([True, False, True, True, False, True, True, False])
    space.apply(space.masks(keep))
    assert toy.backbone.weight.tolist() == [[1.0, 0.0], [-1.0, 0.5]]
    assert toy.heads["a"].weight.tolist() == [[0.0, -1.0]]
    assert space.removed_share(keep) == 3 / 8 and space.weight_sparsity() == 3 / 8
    assert space.alive().tolist() == keep.tolist()
    with pytest.raises(ConfigError, match="structure: channel"):
        space.macs_ratio(keep)


def test_layer_iou_over_shared_units(toy) -> None:
    space = build_units(toy, "element", "all", ("a", "b"), (2, 1, 1))
    task_keep = torch.tensor([[True, True, False, False, True, True, False, False],
                              [True, False, True, False, False, False, True, True]])
    # backbone.weight: intersection {0}, union {0, 1, 2}; head weights are private (no shared unit)
    assert layer_iou(task_keep, space) == {"backbone.weight": pytest.approx(1 / 3)}


def test_channel_units_sum_their_group_slices(tiny_model) -> None:
    space = build_units(tiny_model, "channel", "all", ("seg", "cls"), (3, 16, 16))
    assert space.num_units > 0 and space.macs is not None
    values = [torch.rand(p.shape) for p in space.params]
    per_unit = space.reduce(values)
    ids = torch.as_tensor(space.groups["ids"][0])
    dim = space.groups["dims"][0]
    first = values[0].movedim(dim, 0).reshape(values[0].shape[dim], -1).sum(dim=1).double()
    expected = torch.zeros(space.num_units, dtype=torch.float64).index_add_(0, ids[ids >= 0], first[ids >= 0])
    # the first parameter's share of every group, when it is the group's only slice there
    solo = torch.tensor([sum(int((torch.as_tensor(i) == g).sum()) for i in space.groups["ids"]) == 1
                         for g in range(space.num_units)])
    mask = solo & (torch.zeros(space.num_units).index_add_(0, ids[ids >= 0], torch.ones(int((ids >= 0).sum()))) > 0)
    assert torch.allclose(per_unit[mask], expected[mask])
    # zeroing a unit zeroes every slice of its group, and the MACs model sees the channel die
    keep = torch.ones(space.num_units, dtype=torch.bool)
    keep[0] = False
    assert space.macs_ratio(keep) < 1.0
    space.apply(space.masks(keep))
    assert not bool(space.alive()[0]) and bool(space.alive()[1:].all())
