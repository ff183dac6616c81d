"""Lambda sweeps: train one config at several group-lasso strengths and tabulate the trade-off.

``sweep(config, lambdas, trials, out_dir)`` trains every (lambda, trial) into
``OUT/lam_<lambda>/trial_<k>`` (seed ``seed + k``), then writes ``summary.csv``,
``summary.json`` and the figures ``metric_vs_lambda.png`` / ``sparsity_vs_lambda.png``
(Less is More, Tables 1-2 and Fig. 4a-b).

Every lambda, 0 included, runs the same proximal optimizer: a config naming ``adamw`` is
switched to ``proxadam``, whose ``lam = 0`` step is exactly AdamW's, so the dense row differs
from the others in lambda alone. ``proxsgd`` configs keep ``proxsgd``. Delta_T (AdapMTL eq. 7)
compares each row with the lambda = 0 row (the smallest lambda when 0 is not swept).

Interrupted sweeps continue: a finished run (its ``last.pt`` at the final epoch, or stopped
early, with a ``best.pt``) is not trained again, and a partial one resumes from ``last.pt``.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from mtlexport.errors import CheckpointError, ConfigError
from mtlexport.io import write_json, write_text
from mtlexport.reporting import NullReporter, Reporter
from mtlexport.train.config import TrainConfig, resolve_config
from mtlexport.train.loop import BEST, LAST, SPARSITY, train
from mtlexport.train.results import TrainResult, flatten_metrics

__all__ = ["SweepResult", "SweepRow", "run_dir_for", "run_finished", "sweep"]

SUMMARY_CSV, SUMMARY_JSON = "summary.csv", "summary.json"
METRIC_PLOT, SPARSITY_PLOT = "metric_vs_lambda.png", "sparsity_vs_lambda.png"
DELTA_PLOT = "delta_vs_macs.png"


def _stats(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation and count."""
    n = len(values)
    if n == 0:
        return {"mean": math.nan, "std": math.nan, "n": 0.0}
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "n": float(n)}


@dataclass(frozen=True)
class SweepRow:
    """One lambda: metrics (mean/std/n per ``task.metric`` over trials), sparsity and Delta_T."""

    lam: float
    run_dirs: tuple[str, ...]
    metrics: dict[str, dict[str, float]]
    group_sparsity: dict[str, float]
    param_sparsity: dict[str, float]
    delta: dict[str, float]
    reused: int  # trials found finished on disk and not trained again
    target_macs: float | None = None  # the MACs target of the row (``--targets``); None: a lambda row
    macs_ratio: dict[str, float] | None = None  # predicted slim / dense MACs at the best epoch

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "run_dirs": list(self.run_dirs)}

    @property
    def label(self) -> str:
        return f"macs {self.target_macs:g}" if self.target_macs is not None else f"{self.lam:g}"


@dataclass(frozen=True)
class SweepResult:
    """A finished sweep; ``rows`` are in the order of ``lambdas`` (ascending)."""

    out_dir: str
    optimizer: str
    split: str  # "test" when every run has test metrics, else "val" (best epoch)
    trials: int
    baseline_lam: float
    headline: dict[str, str]  # task -> the metric shown in tables and plots
    higher_is_better: dict[str, bool]  # task -> direction of its headline metric
    rows: tuple[SweepRow, ...]
    files: tuple[str, ...]

    @property
    def lambdas(self) -> tuple[float, ...]:
        return tuple(r.lam for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {"out_dir": self.out_dir, "optimizer": self.optimizer, "split": self.split, "trials": self.trials,
                "lambdas": list(self.lambdas), "baseline_lam": self.baseline_lam, "headline": self.headline,
                "higher_is_better": self.higher_is_better,
                "rows": [r.to_dict() for r in self.rows], "files": list(self.files)}

    def csv_text(self) -> str:
        """``summary.csv``: one line per lambda; metric columns ``task.metric`` and ``task.metric_std``."""
        keys = sorted({k for r in self.rows for k in r.metrics})
        tasks = sorted({k for r in self.rows for k in r.delta if k != "overall"})
        header = ["lambda", "target_macs", "macs_ratio", "trials", "split", "group_sparsity", "group_sparsity_std",
                  "param_sparsity", "param_sparsity_std", "delta_overall", *[f"delta_{t}" for t in tasks]]
        header += [c for k in keys for c in (k, f"{k}_std")]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        for r in self.rows:
            line: list[Any] = [repr(r.lam), "" if r.target_macs is None else r.target_macs,
                               r.macs_ratio["mean"] if r.macs_ratio else "", len(r.run_dirs), self.split,
                               r.group_sparsity["mean"],
                               r.group_sparsity["std"], r.param_sparsity["mean"], r.param_sparsity["std"],
                               r.delta.get("overall", ""), *[r.delta.get(t, "") for t in tasks]]
            for k in keys:
                m = r.metrics.get(k)
                line += [m["mean"], m["std"]] if m else ["", ""]
            writer.writerow(line)
        return buf.getvalue()


def run_dir_for(out_dir: str | Path, lam: float, trial: int, target: float | None = None) -> Path:
    """Where a run lives: ``OUT/lam_<lam:g>/trial_<k>``, or ``OUT/target_<R:g>/trial_<k>`` for a MACs target."""
    name = f"target_{target:g}" if target is not None else f"lam_{lam:g}"
    return Path(out_dir) / name / f"trial_{trial}"


def run_finished(run: Path, epochs: int) -> bool:
    """A run folder whose last.pt reached ``epochs`` (or stopped early) and that has a best.pt."""
    if not (run / LAST).is_file() or not (run / BEST).is_file():
        return False
    from mtlexport.train.checkpoint import load_checkpoint

    try:
        last = load_checkpoint(run / LAST)
    except CheckpointError:
        return False
    return last.epoch >= epochs or bool(last.extra.get("stopped_early", False))


def _sweep_config(config: TrainConfig, lam: float, seed: int, target: float | None = None) -> TrainConfig:
    name = "proxadam" if config.optimizer.name == "adamw" else config.optimizer.name
    opt = replace(config.optimizer, name=name, lam=lam, target_macs=target, target_group_sparsity=None)
    return replace(config, optimizer=opt, train=replace(config.train, seed=seed))


def _best_sparsity(result: TrainResult) -> dict[str, float]:
    """Sparsity at the best epoch (the checkpoint the metrics come from), from sparsity.jsonl."""
    from mtlexport.sparsity.plots import read_jsonl

    path = Path(result.run_dir) / SPARSITY
    if path.is_file():
        for record in read_jsonl(path):
            if record.get("epoch") == result.best_epoch:
                return {k: float(v) for k, v in record.items() if isinstance(v, (int, float))}
    return dict(result.sparsity)


def sweep(
    config: TrainConfig,
    lambdas: Sequence[float],
    trials: int,
    out_dir: str | Path,
    reporter: Reporter | None = None,
    *,
    plots: bool = True,
    targets: Sequence[float] = (),
) -> SweepResult:
    """Train ``config`` at every lambda (``trials`` seeds each) into ``out_dir`` and summarise.

    With ``targets`` (MACs ratios), each target is a row trained with ``optimizer.target_macs``
    (lambda starting at the config's value), after the lambda rows; Delta_T is against the
    smallest lambda (pass 0: the dense model).
    """
    lams = sorted({float(lam) for lam in lambdas})
    goals = sorted({float(t) for t in targets}, reverse=True)
    if any(not 0 < t < 1 for t in goals):
        raise ConfigError(f"--targets must be MACs ratios strictly between 0 and 1, got {list(targets)}")
    if not lams:
        raise ConfigError("--lambdas needs at least one value")
    if any(not math.isfinite(lam) or lam < 0 for lam in lams):
        raise ConfigError(f"lambdas must be finite numbers >= 0, got {list(lambdas)}")
    if trials < 1:
        raise ConfigError(f"--trials must be a positive integer, got {trials}")
    from mtlexport.tasks import build_tasks, delta_score

    reporter = reporter or NullReporter()
    out = Path(out_dir)
    tasks = build_tasks(resolve_config(config).model)
    keys: list[tuple[float, float | None]] = [(lam, None) for lam in lams]
    keys += [(config.optimizer.lam, goal) for goal in goals]
    runs: dict[tuple[float, float | None], list[tuple[TrainResult, bool]]] = {}
    reporter.start("sweep", "sweep", total=len(keys) * trials)
    for lam, goal in keys:
        for k in range(trials):
            run = run_dir_for(out, lam, k, goal)
            cfg = _sweep_config(config, lam, config.train.seed + k, goal)
            reused = run_finished(run, cfg.train.epochs)
            what = f"target MACs {goal:g}" if goal is not None else f"lambda {lam:g}"
            reporter.message(f"{what} trial {k + 1}/{trials}: "
                             + ("finished earlier, reusing" if reused else f"training into {run}"))
            result = train(cfg, run, resume=(run / LAST).is_file(), reporter=reporter)
            runs.setdefault((lam, goal), []).append((result, reused))
            reporter.advance("sweep", lam=lam)
    reporter.finish("sweep")

    split = "test" if all(r.test_metrics for rs in runs.values() for r, _ in rs) else "val"
    means: dict[tuple[float, float | None], dict[str, dict[str, float]]] = {}
    rows = []
    for run_key in keys:
        lam, goal = run_key
        results = [r for r, _ in runs[run_key]]
        values: dict[str, list[float]] = {}
        for r in results:
            for key, v in flatten_metrics(r.test_metrics if split == "test" else r.best_metrics).items():
                values.setdefault(key, []).append(v)
        metrics = {key: _stats(v) for key, v in values.items()}
        means[run_key] = _nest({k: s["mean"] for k, s in metrics.items()})
        sparsity = [_best_sparsity(r) for r in results]
        ratios = [s["macs_ratio"] for s in sparsity if "macs_ratio" in s]
        rows.append(SweepRow(
            lam=lam, run_dirs=tuple(r.run_dir for r in results), metrics=metrics,
            group_sparsity=_stats([s.get("group_sparsity", 0.0) for s in sparsity]),
            param_sparsity=_stats([s.get("param_sparsity", 0.0) for s in sparsity]),
            delta={}, reused=sum(reused for _, reused in runs[run_key]), target_macs=goal,
            macs_ratio=_stats(ratios) if ratios else None,
        ))
    baseline = lams[0]
    rows = [replace(row, delta=delta_score(tasks, means[(row.lam, row.target_macs)], means[(baseline, None)]))
            for row in rows]
    headline = {name: task.primary_metric for name, task in tasks.items()}
    higher = {name: task.metrics[task.primary_metric] for name, task in tasks.items()}
    result = SweepResult(str(out), _sweep_config(config, 0.0, 0).optimizer.name, split, trials, baseline,
                         headline, higher, tuple(rows), ())
    files = [write_text(out / SUMMARY_CSV, result.csv_text())]
    if plots:
        from mtlexport.sparsity.plots import plot_sweep

        files += plot_sweep([r.to_dict() for r in rows], headline, out / METRIC_PLOT, out / SPARSITY_PLOT)
        points = [(r.macs_ratio["mean"], r.delta["overall"]) for r in rows
                  if r.macs_ratio and "overall" in r.delta]
        if goals and points:
            from mtlexport.sparsity.plots import plot_delta_vs_macs

            grouping = config.optimizer.grouping
            files.append(plot_delta_vs_macs({f"{grouping} groups": points}, out / DELTA_PLOT))
    result = replace(result, files=tuple(str(f) for f in [*files, out / SUMMARY_JSON]))
    write_json(out / SUMMARY_JSON, result.to_dict())
    return result


def _nest(flat: dict[str, float]) -> dict[str, dict[str, float]]:
    """``{"task.metric": v}`` back to ``{task: {metric: v}}``."""
    out: dict[str, dict[str, float]] = {}
    for key, value in flat.items():
        task, _, metric = key.partition(".")
        out.setdefault(task, {})[metric] = value
    return out
