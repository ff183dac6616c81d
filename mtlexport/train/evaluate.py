"""Evaluation: every task's meters over a split, for a model, a checkpoint or a baseline."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mtlexport.data.config import DataConfig
from mtlexport.errors import DataError
from mtlexport.reporting import NullReporter, Reporter
from mtlexport.tasks import Task, build_tasks, delta_score
from mtlexport.train.loaders import to_device


@dataclass(frozen=True)
class EvalResult:
    """Metrics per task of a checkpoint on one split, with the trivial baselines beside them."""

    checkpoint: str
    split: str
    num_samples: int
    device: str
    metrics: dict[str, dict[str, float]]
    baseline: dict[str, dict[str, float]] = field(default_factory=dict)
    delta_vs_baseline: dict[str, float] = field(default_factory=dict)
    primary: dict[str, str] = field(default_factory=dict)
    higher_is_better: dict[str, dict[str, bool]] = field(default_factory=dict)
    time_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint, "split": self.split, "num_samples": self.num_samples,
            "device": self.device, "metrics": self.metrics, "baseline": self.baseline,
            "delta_vs_baseline": self.delta_vs_baseline, "primary": self.primary,
            "higher_is_better": self.higher_is_better, "time_s": self.time_s,
        }


def evaluate(model: nn.Module, tasks: Mapping[str, Task], loader: Iterable[dict[str, Tensor]],
             device: torch.device | str, *, with_loss: bool = False) -> dict[str, dict[str, float]]:
    """``{task: {metric: value}}`` over every batch of ``loader``, model in eval mode.

    With ``with_loss`` each task also gets ``loss``: its mean per-batch loss (weighted by batch size).
    """
    device = torch.device(device)
    meters = {name: task.meter() for name, task in tasks.items()}
    loss_sum = dict.fromkeys(tasks, 0.0)
    count = 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in loader:
                batch = to_device(batch, device)
                outputs = model(batch["image"])
                n = int(batch["image"].shape[0])
                count += n
                for name, task in tasks.items():
                    meters[name].update(outputs[name], batch)
                    if with_loss:
                        loss_sum[name] += float(task.loss(outputs[name], batch)) * n
    finally:
        model.train(was_training)
    out = {name: meter.compute() for name, meter in meters.items()}
    if with_loss:
        for name in tasks:
            out[name]["loss"] = loss_sum[name] / max(count, 1)
    return out


def evaluate_checkpoint(
    path: str | Path,
    split: str = "test",
    data_overrides: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    *,
    baselines: bool = True,
    reporter: Reporter | None = None,
    factory: str | None = None,
) -> EvalResult:
    """Load a checkpoint and score every task on ``split`` of its data (``data_overrides``
    replace fields of the checkpoint's ``data`` config), with trivial baselines beside it.

    Your own model needs ``factory`` (``--model``); your own data needs ``data_overrides``
    to name its ``factory`` (a checkpoint's recorded factories are never imported by themselves)."""
    from mtlexport.train.baselines import BaselinePredictor, fit_baselines
    from mtlexport.train.checkpoint import load_checkpoint
    from mtlexport.train.distributed import DistContext, device_for
    from mtlexport.train.loaders import eval_loader, open_split, train_loader

    reporter = reporter or NullReporter()
    ckpt = load_checkpoint(path)
    model = ckpt.build_model(factory=factory)  # before any data work: bad weights fail at once
    stored = dict(ckpt.config.get("data") or {})
    if stored.get("name") == "factory" and not (data_overrides or {}).get("factory"):
        raise DataError(f"{path} was trained on data from factory {stored.get('factory')!r}; mtlexport never imports "
                        "code a checkpoint names: pass --data factory=package.module:function, the data factory you "
                        "trust")
    data_cfg = DataConfig.from_dict({**stored, **dict(data_overrides or {})})
    dev = device_for(DistContext(), device)
    bs = batch_size or int((ckpt.config.get("train") or {}).get("batch_size", 16))
    dataset = open_split(data_cfg, split)
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise DataError(f"the {split} split of dataset {data_cfg.name!r} is empty; choose another --split")
    all_tasks = build_tasks(ckpt.spec)
    keys = set(getattr(dataset, "label_keys", ()) or ())
    tasks = {n: t for n, t in all_tasks.items() if not keys or set(t.target_keys()) <= keys}
    if not tasks:
        raise DataError(f"dataset {data_cfg.name!r} has labels for none of the tasks {list(all_tasks)}")
    for name in sorted(set(all_tasks) - set(tasks)):
        reporter.message(f"task {name!r} skipped: the {split} split has no labels for it")
    start = time.perf_counter()
    model = model.to(dev)
    metrics = evaluate(model, tasks, eval_loader(dataset, bs), dev)
    base: dict[str, dict[str, float]] = {}
    if baselines:
        stats = ckpt.extra.get("baseline")
        if not stats:
            reporter.message("checkpoint holds no baseline statistics; computing them from the train split")
            stats = fit_baselines(tasks, train_loader(open_split(data_cfg, "train"), bs, DistContext(), seed=0))
        predictor = BaselinePredictor(tasks, stats)
        if predictor.task_names:
            used = {n: tasks[n] for n in predictor.task_names}
            base = evaluate(predictor, used, eval_loader(dataset, bs), dev)
    return EvalResult(
        checkpoint=str(path), split=split, num_samples=len(dataset), device=str(dev),  # type: ignore[arg-type]
        metrics=metrics, baseline=base,
        delta_vs_baseline=delta_score(tasks, metrics, base) if base else {},
        primary={n: t.primary_metric for n, t in tasks.items()},
        higher_is_better={n: dict(t.metrics) for n, t in tasks.items()},
        time_s=time.perf_counter() - start,
    )
