"""The multi-task score Delta_T of AdapMTL eq. 7: relative change against a dense baseline."""

from __future__ import annotations

from collections.abc import Mapping

from mtlexport.tasks.base import Task


def metric_directions(tasks: Mapping[str, Task]) -> dict[str, dict[str, bool]]:
    """``{task: {metric: higher_is_better}}`` for the tasks' headline metrics."""
    return {name: dict(task.metrics) for name, task in tasks.items()}


def delta_score(
    tasks: Mapping[str, Task],
    metrics: Mapping[str, Mapping[str, float]],
    baseline: Mapping[str, Mapping[str, float]],
) -> dict[str, float]:
    """Per-task and overall Delta (in %): mean over a task's metrics of +/-(M - M_base)/M_base*100.

    The sign is + for metrics where higher is better. Metrics missing on either side or with a
    zero baseline are skipped. Returns ``{task: delta, ..., "overall": mean over tasks}``.
    """
    out: dict[str, float] = {}
    for name, task in tasks.items():
        terms = []
        for metric, higher in task.metrics.items():
            m, b = metrics.get(name, {}).get(metric), baseline.get(name, {}).get(metric)
            if m is None or b is None or b == 0:
                continue
            sign = 1.0 if higher else -1.0
            terms.append(sign * (m - b) / abs(b) * 100.0)
        if terms:
            out[name] = sum(terms) / len(terms)
    if out:
        out["overall"] = sum(out.values()) / len(out)
    return out
