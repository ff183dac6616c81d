"""Results of training runs: frozen, JSON-serialisable, rendered by the CLI."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class TrainResult:
    """One finished (or resumed-and-finished) training run."""

    run_dir: str
    best_checkpoint: str
    last_checkpoint: str
    epochs_run: int
    best_epoch: int
    monitor: str
    best_value: float
    best_metrics: dict[str, dict[str, float]]
    test_metrics: dict[str, dict[str, float]]
    task_weights: dict[str, float]
    history: list[dict[str, Any]]
    stopped_early: bool
    time_s: float
    images_per_s: float
    seed: int
    sparsity: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def flatten_metrics(metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    """``{task: {metric: v}}`` as ``{"task.metric": v}``."""
    return {f"{task}.{name}": float(v) for task, values in metrics.items() for name, v in values.items()}


@dataclass(frozen=True)
class TrialsResult:
    """Several runs of one config with seeds ``seed .. seed+N-1``; ``summary`` holds mean and
    sample standard deviation per metric of ``split`` (test when every trial has it, else the
    best validation epoch)."""

    run_dir: str
    split: str
    trials: tuple[TrainResult, ...]
    summary: dict[str, dict[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return {"run_dir": self.run_dir, "split": self.split, "summary": self.summary,
                "trials": [t.to_dict() for t in self.trials]}


def summarise(trials: tuple[TrainResult, ...]) -> tuple[str, dict[str, dict[str, float]]]:
    """(split, ``{metric: {"mean", "std", "n"}}``) over the trials."""
    use_test = all(t.test_metrics for t in trials)
    split = "test" if use_test else "val"
    rows: dict[str, list[float]] = {}
    for t in trials:
        for key, value in flatten_metrics(t.test_metrics if use_test else t.best_metrics).items():
            rows.setdefault(key, []).append(value)
    summary = {}
    for key, values in rows.items():
        n = len(values)
        mean = sum(values) / n
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
        summary[key] = {"mean": mean, "std": std, "n": float(n)}
    return split, summary
