"""Summary statistics with trtexec's definitions (``sampleReporting.cpp``).

- percentile: nearest rank on the sorted values, index ``max(n - 1 - int((1 - p/100) * n), 0)``.
  trtexec evaluates ``(1 - p/100) * n`` in single precision (``float``); we do the same so
  that our indices match its output exactly (e.g. p99 of 100 values is the maximum there,
  because ``(1 - 0.99f) * 100 = 0.99999905f`` truncates to 0).
- median: the middle value, or the mean of the middle two for an even count.
- coefficient of variation: population standard deviation / mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

PERCENTILES: tuple[float, ...] = (90.0, 95.0, 99.0)


def percentile_index(p: float, n: int) -> int:
    """trtexec's nearest-rank index of the ``p``-th percentile among ``n`` sorted values."""
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {p}")
    if n <= 0:
        raise ValueError("percentile of an empty sequence")
    f32 = np.float32
    exclude = int((f32(1.0) - f32(p) / f32(100.0)) * f32(n))
    return max(n - 1 - exclude, 0)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile of already sorted values (trtexec's rule)."""
    return float(sorted_values[percentile_index(p, len(sorted_values))])


def median(sorted_values: Sequence[float]) -> float:
    """Median of already sorted values; the mean of the middle two for an even count."""
    n = len(sorted_values)
    if n == 0:
        raise ValueError("median of an empty sequence")
    m = n // 2
    if n % 2:
        return float(sorted_values[m])
    return (float(sorted_values[m - 1]) + float(sorted_values[m])) / 2.0


@dataclass(frozen=True)
class LatencyStats:
    """Statistics of one timed quantity in milliseconds (``cv`` is a fraction, 0.05 = 5%)."""

    count: int
    min: float
    max: float
    mean: float
    median: float
    p90: float
    p95: float
    p99: float
    std: float
    cv: float
    total: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def summarize(values: Sequence[float]) -> LatencyStats:
    """Statistics of ``values`` (any order) with trtexec's definitions."""
    data = sorted(float(v) for v in values)
    n = len(data)
    if n == 0:
        raise ValueError("no values to summarise")
    total = math.fsum(data)
    mean = total / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in data) / n)
    cv = std / mean if mean > 0 else 0.0
    return LatencyStats(
        count=n, min=data[0], max=data[-1], mean=mean, median=median(data),
        p90=percentile(data, 90.0), p95=percentile(data, 95.0), p99=percentile(data, 99.0),
        std=std, cv=cv, total=total,
    )
