"""Statistics against hand-computed values, including trtexec's percentile rule."""

from __future__ import annotations

import math
import random

import pytest

from mtlexport.bench.stats import median, percentile, percentile_index, summarize


@pytest.mark.parametrize(
    ("n", "p", "index"),
    [
        (1, 99, 0),
        (2, 90, 1),      # int(0.1 * 2) = 0 -> the maximum
        (10, 90, 8),     # (1 - 0.9f) * 10 = 1.0000002 -> exclude 1
        (10, 95, 9),
        (20, 90, 17),
        (20, 95, 18),    # (1 - 0.95f) * 20 = 1.0000002 -> exclude 1
        (100, 90, 89),
        (100, 95, 94),
        (100, 99, 99),   # float32: (1 - 0.99f) * 100 = 0.99999905 -> exclude 0 (trtexec's quirk)
        (1000, 99, 990),
        (7, 50, 3),
    ],
)
def test_percentile_index_follows_trtexec(n: int, p: float, index: int) -> None:
    assert percentile_index(p, n) == index


def test_percentile_reads_sorted_values() -> None:
    values = [float(v) for v in range(1, 11)]
    assert percentile(values, 90) == 9.0
    assert percentile(values, 99) == 10.0
    assert percentile(values, 0) == 1.0  # exclude int(1.0 * 10) = 10 -> index max(-1, 0) = 0


def test_percentile_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        percentile_index(101, 10)
    with pytest.raises(ValueError):
        percentile_index(50, 0)


def test_median_odd_and_even() -> None:
    assert median([1.0, 2.0, 7.0]) == 2.0
    assert median([1.0, 2.0, 4.0, 7.0]) == 3.0  # mean of the middle two
    with pytest.raises(ValueError):
        median([])


def test_summarize_hand_computed() -> None:
    values = [float(v) for v in range(1, 11)]
    random.Random(0).shuffle(values)
    s = summarize(values)
    assert (s.count, s.min, s.max) == (10, 1.0, 10.0)
    assert s.mean == 5.5 and s.median == 5.5
    assert (s.p90, s.p95, s.p99) == (9.0, 10.0, 10.0)
    assert s.std == pytest.approx(math.sqrt(8.25))  # population standard deviation
    assert s.cv == pytest.approx(math.sqrt(8.25) / 5.5)
    assert s.total == 55.0
    assert set(s.to_dict()) >= {"min", "max", "mean", "median", "p90", "p95", "p99", "cv"}


def test_summarize_constant_values_have_zero_cv() -> None:
    s = summarize([2.0, 2.0, 2.0])
    assert s.cv == 0.0 and s.std == 0.0
    with pytest.raises(ValueError):
        summarize([])
