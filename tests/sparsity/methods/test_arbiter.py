"""The DiSparse arbiter on hand-made masks, and the calibration of per-task keep ratios."""

from __future__ import annotations

import pytest
import torch

from mtlexport.errors import ConfigError
from mtlexport.sparsity.methods.arbiter import arbitrate, calibrate, task_ranks

T, F = True, False


def test_unanimous_keeps_a_shared_unit_any_task_keeps() -> None:
    keeps = torch.tensor([[T, F, F, T, F], [F, F, T, F, T]])
    owner = torch.tensor([-1, -1, -1, 0, 1])  # three shared units, one private unit per task
    assert arbitrate(keeps, owner, "unanimous").tolist() == [T, F, T, T, T]
    # a private unit follows its own task only
    keeps = torch.tensor([[F, F, F, F, T], [F, F, F, T, F]])
    assert arbitrate(keeps, owner, "unanimous").tolist() == [F, F, F, F, F]


def test_majority_with_three_and_four_tasks() -> None:
    owner = torch.full((4,), -1)
    three = torch.tensor([[T, T, F, F], [T, F, F, T], [F, F, F, T]])  # votes 2, 1, 0, 2
    assert arbitrate(three, owner, "majority").tolist() == [T, F, F, T]
    four = torch.tensor([[T, T, T, F], [T, T, F, F], [T, F, F, F], [F, F, F, F]])  # votes 3, 2, 1, 0
    # removed only when more than half remove it: a 2-2 tie keeps the unit
    assert arbitrate(four, owner, "majority").tolist() == [T, T, F, F]
    assert arbitrate(four, owner, "unanimous").tolist() == [T, T, T, F]


def test_unknown_arbiter() -> None:
    with pytest.raises(ConfigError, match="unanimous, majority"):
        arbitrate(torch.ones(2, 2, dtype=torch.bool), torch.tensor([-1, -1]), "any")


def test_task_ranks_cover_each_task_space_only() -> None:
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7], [0.3, 0.2, 0.8, 0.6]])
    owner = torch.tensor([-1, -1, 0, 1])
    ranks, sizes = task_ranks(scores, owner)
    assert sizes.tolist() == [3, 3]
    assert ranks[0].tolist()[:3] == [2, 0, 1] and ranks[0, 3] > 3  # unit 3 is task 1's
    assert ranks[1].tolist() == [1, 2, 5, 0]


@pytest.mark.parametrize("rule", ["unanimous", "majority"])
@pytest.mark.parametrize("tasks", [2, 3, 4])
def test_calibration_hits_a_sparsity_within_one_unit(rule: str, tasks: int) -> None:
    gen = torch.Generator().manual_seed(tasks)
    units = 1003
    scores = torch.rand(tasks, units, generator=gen)
    owner = torch.randint(-1, tasks, (units,), generator=gen)
    owner[: units // 2] = -1
    for sparsity in (0.3, 0.5, 0.9):
        goal = 1.0 - sparsity
        cal = calibrate(scores, owner, lambda keep: float(keep.sum()) / units, goal, rule=rule)
        kept = int(cal.keep.sum())
        assert kept <= goal * units and goal * units - kept <= 1.0
        # the arbiter really decided the mask from per-task top-k sets of one keep ratio
        assert torch.equal(cal.keep, arbitrate(cal.task_keep, owner, rule))
        for t, gamma in enumerate(cal.gammas):
            assert int(cal.task_keep[t].sum()) == gamma
            assert abs(gamma - cal.keep_ratio * int(((owner == -1) | (owner == t)).sum())) <= 1.0
        # OR keeps more than any single task: the calibrated ratio is below the density
        if rule == "unanimous":
            assert cal.keep_ratio <= goal + 1e-9


def test_calibration_of_a_non_additive_value_within_one_unit() -> None:
    gen = torch.Generator().manual_seed(0)
    units = 300
    cost = torch.rand(units, generator=gen, dtype=torch.float64) + 0.5
    scores = torch.rand(2, units, generator=gen)
    owner = torch.full((units,), -1)

    def value(keep: torch.Tensor) -> float:  # like a MACs ratio: a fixed part plus kept costs
        return float(0.1 + 0.9 * cost[keep].sum() / cost.sum())

    cal = calibrate(scores, owner, value, 0.5)
    assert cal.value <= 0.5
    assert 0.5 - cal.value <= 0.9 * float(cost.max() / cost.sum())
    with pytest.raises(ConfigError, match="cannot be reached"):
        calibrate(scores, owner, value, 0.05)


def test_regrowth_keeps_the_base_and_adds_candidates_only() -> None:
    scores = torch.tensor([[9.0, 8.0, 1.0, 2.0, 3.0, 4.0]])
    owner = torch.full((6,), -1)
    base = torch.tensor([F, F, T, F, F, F])
    candidates = torch.tensor([F, F, F, T, T, T])  # units 0 and 1 were just dropped
    cal = calibrate(scores, owner, lambda keep: float(keep.sum()), 3.0, base=base, candidates=candidates)
    assert cal.keep.tolist() == [F, F, T, F, T, T]
