"""Learning-rate schedules as functions of the step."""

from __future__ import annotations

import pytest

from mtlexport.train.config import ScheduleConfig
from mtlexport.train.schedule import lr_factor


def test_none_is_constant() -> None:
    assert all(lr_factor(ScheduleConfig(), s, 10, 5) == 1.0 for s in range(50))


def test_warmup_then_cosine() -> None:
    cfg = ScheduleConfig(name="cosine", warmup_epochs=1, min_lr_ratio=0.1)
    assert lr_factor(cfg, 0, 10, 5) == pytest.approx(0.1)
    assert lr_factor(cfg, 9, 10, 5) == pytest.approx(1.0)
    assert lr_factor(cfg, 10, 10, 5) == pytest.approx(1.0)
    assert lr_factor(cfg, 30, 10, 5) == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the cosine
    assert lr_factor(cfg, 50, 10, 5) == pytest.approx(0.1)


def test_step_and_poly() -> None:
    step = ScheduleConfig(name="step", step_size=2, gamma=0.5)
    assert [lr_factor(step, e * 10, 10, 6) for e in range(6)] == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.25])
    poly = ScheduleConfig(name="poly", power=2.0)
    assert lr_factor(poly, 5, 10, 1) == pytest.approx(0.25)
