"""The multi-task training loop: ``train`` (one run, resumable) and ``train_trials`` (seeds).

One backbone forward per step (``MultiTaskNet``); losses combined by the configured weighting;
per-epoch validation, ``metrics.jsonl``, ``sparsity.jsonl``, ``last.pt`` / ``best.pt`` (atomic)
and early stopping on the monitored metric. ``--resume`` restores model, optimizer, weighting,
step counter, history and every RNG, so an interrupted run continues bit-identically on CPU.

Before anything is written into the run folder the config, every split and the folder's
writability are checked, and the folder is locked (a second writer is refused). An epoch is
committed as ``last.pt`` (which also holds the epoch's log records), then ``best.pt``, then the
log lines; a process killed anywhere in between leaves a run that ``--resume`` repairs: it
rewrites a missing or stale ``best.pt`` and log lines from ``last.pt`` and removes stale
temporary files.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from mtlexport.errors import ConfigError
from mtlexport.io import FolderLock, append_jsonl, check_output_dir, remove_stale_temps, write_text
from mtlexport.models import create_model
from mtlexport.reporting import NullReporter, Reporter
from mtlexport.tasks import build_tasks
from mtlexport.train import distributed as dist
from mtlexport.train.baselines import fit_baselines
from mtlexport.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from mtlexport.train.config import TrainConfig, resolve_config
from mtlexport.train.evaluate import evaluate
from mtlexport.train.loaders import eval_loader, set_epoch, to_device, train_loader
from mtlexport.train.optim import build_training_optimizer, make_controller
from mtlexport.train.precision import Precision
from mtlexport.train.results import TrainResult, TrialsResult, summarise
from mtlexport.train.rng import capture_rng, restore_rng, seed_everything, set_deterministic
from mtlexport.train.schedule import lr_factor, set_lr
from mtlexport.train.weighting import build_loss_weighting

from mtlexport.train.runfiles import (
    BEST, CONFIG, LAST, METRICS, RUN_FILES, SPARSITY, already_a_run, open_checked, plain_json, stored_epoch,
    truncate_jsonl,
)

_RESUME_MUST_MATCH = ("model", "data")
_SPLITS = ("train", "val", "test")


def train(config: TrainConfig, out_dir: str | Path, *, resume: bool = False, force: bool = False,
          reporter: Reporter | None = None) -> TrainResult:
    """Train ``config`` into ``out_dir``; with ``resume`` continue from ``out_dir/last.pt``, with
    ``force`` replace a run already there (otherwise it is refused)."""
    if resume and force:
        raise ConfigError("--resume continues the run in --out and --force replaces it; pass one of them")
    ctx = dist.detect()
    device = dist.device_for(ctx, config.train.device)
    dist.setup(ctx, device)
    try:
        rep = (reporter or NullReporter()) if ctx.is_main else NullReporter()
        run = _Run(config, Path(out_dir), ctx, device, rep, resume=resume, force=force)
        return run.execute(resume)
    finally:
        dist.teardown(ctx)


def train_trials(config: TrainConfig, out_dir: str | Path, trials: int, *, resume: bool = False,
                 force: bool = False, reporter: Reporter | None = None) -> TrialsResult:
    """``trials`` runs with seeds ``seed .. seed+trials-1`` into ``out_dir/trial_k``."""
    if trials < 1:
        raise ConfigError(f"--trials must be a positive integer, got {trials}")
    reporter = reporter or NullReporter()
    results = []
    for k in range(trials):
        seed = config.train.seed + k
        reporter.message(f"trial {k + 1}/{trials} (seed {seed})")
        cfg = replace(config, train=replace(config.train, seed=seed))
        results.append(train(cfg, Path(out_dir) / f"trial_{k}", resume=resume, force=force, reporter=reporter))
    split, summary = summarise(tuple(results))
    return TrialsResult(run_dir=str(out_dir), split=split, trials=tuple(results), summary=summary)


class _Run:
    """State of one training run (built once, then ``execute``)."""

    def __init__(self, config: TrainConfig, out: Path, ctx: dist.DistContext, device: torch.device,
                 reporter: Reporter, *, resume: bool = False, force: bool = False) -> None:
        self.out, self.ctx, self.device, self.reporter = out, ctx, device, reporter
        self.force = force
        # Everything is checked before the first byte is written: the output folder, the
        # config, then every split (opening it finds missing files; one sample is read).
        check_output_dir(out)
        if (out / LAST).is_file() and not resume and not force:
            raise already_a_run(out)
        set_deterministic(config.train.deterministic, device)
        self.config = resolve_config(config)
        if self.config.sparsifier.name != "none":  # e.g. group_lasso: the proximal optimizer's settings
            from mtlexport.sparsity.methods import prepare_config

            self.config = prepare_config(self.config)
        self.tasks = build_tasks(self.config.model)
        self.monitor, self.higher = self._monitor_direction()
        cfg = self.config.train
        splits = {split: open_checked(self.config, split) for split in _SPLITS}
        self.train_set, self.val_set, self.test_set = splits["train"], splits["val"], splits["test"]
        if len(self.train_set) == 0:  # type: ignore[arg-type]
            raise ConfigError("data.num_train is 0 (or the train split is empty); nothing to train on")
        self.loader = train_loader(self.train_set, cfg.batch_size, ctx, seed=cfg.seed, num_workers=cfg.num_workers)
        self.steps = len(self.loader)
        seed_everything(cfg.seed)
        # Your own model: the factory named by this (the user's) config; its outputs are checked.
        self.model = create_model(self.config.model, factory=self.config.model.factory or None).to(device)
        if self.config.model.factory:
            _check_user_model(self.model, self.train_set, self.config.model.task_names, device)
        self.weighting = build_loss_weighting(self.config.loss_weighting, self.config.model.task_names).to(device)
        self.net: Any = self.model  # DDP (and SyncBatchNorm) once the optimizer exists: _execute
        self.precision = Precision(cfg.amp, device)
        self.structure: Any = None
        self.controller: Any = None
        self.epoch = self.global_step = self.bad_epochs = self.best_epoch = 0
        self.best_value = -math.inf if self.higher else math.inf
        self.best_metrics: dict[str, dict[str, float]] = {}
        self.history: list[dict[str, Any]] = []
        self.images = 0
        self.train_time = self.time_s = 0.0
        self.stopped_early = False
        self.baseline: dict[str, Any] = {}
        self.sparsity: dict[str, float] = {}
        if ctx.is_main:  # last.pt + best.pt + a temporary copy while one is written
            params = sum(p.numel() * p.element_size() for p in self.model.parameters())
            check_output_dir(out, need_bytes=3 * params * (3 if self.config.optimizer.name != "proxsgd" else 2))

    def _monitor_direction(self) -> tuple[str, bool]:
        monitor = self.config.train.monitor
        if monitor == "loss":
            return monitor, False
        task, _, metric = monitor.partition(".")
        if metric == "loss":
            return monitor, False
        directions = self.tasks[task].metrics
        if metric not in directions:
            raise ConfigError(f"train.monitor {monitor!r}: task {task!r} has metrics {sorted(directions)} (or loss)")
        return monitor, directions[metric]

    # ------------------------------------------------------------------ run
    def _setup_optimizer(self, ckpt: Checkpoint | None) -> None:
        """The optimizer, and for the group lasso its group structure, MACs model and controller.

        The group structure comes from the checkpoint on resume, so the same groups are optimised.
        """
        opt = self.config.optimizer
        if opt.name == "adamw":
            self.optimizer = build_training_optimizer(opt, self.model, self.weighting)
        else:
            from mtlexport.sparsity.setup import sparsity_setup

            stored = (ckpt.extra.get("group_structure") if ckpt is not None else None)
            data = self.config.data
            shape = (self.config.model.in_channels, data.height, data.width)
            self.structure, macs, graph = sparsity_setup(self.model, opt, shape, stored)
            self.optimizer = build_training_optimizer(opt, self.model, self.weighting, self.structure)
            self.controller = make_controller(opt, self.optimizer, self.config.train.epochs * self.steps, macs,
                                              self.structure)
            del graph
        self.sparsifier: Any = None  # disparse / adapmtl (group_lasso works through the optimizer)
        if self.config.sparsifier.name != "none":
            from mtlexport.sparsity.methods import make_sparsifier

            self.sparsifier = make_sparsifier(self.config, self.model, self.tasks, self.optimizer,
                                              total_steps=self.config.train.epochs * self.steps, device=self.device,
                                              world_size=self.ctx.world_size,
                                              stored=ckpt.extra.get("sparsifier") if ckpt is not None else None)
        self.base_lrs = [g["initial_lr"] for g in self.optimizer.param_groups]
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]

    def execute(self, resume: bool) -> TrainResult:
        lock = FolderLock(self.out, "another 'mtlexport train'") if self.ctx.is_main else None
        if lock is not None:
            lock.acquire()
        try:
            if self.ctx.is_main:
                remove_stale_temps(self.out, RUN_FILES)
            return self._execute(resume)
        finally:
            if lock is not None:
                lock.release()

    def _execute(self, resume: bool) -> TrainResult:
        last = self.out / LAST
        ckpt = load_checkpoint(last) if resume and last.is_file() else None
        self._setup_optimizer(ckpt)
        if ckpt is not None:
            self._restore(ckpt)
        elif last.is_file() and not self.force:
            raise already_a_run(self.out)
        else:
            if resume:
                self.reporter.message(f"nothing to resume in {self.out}; starting a new run")
            self._start_fresh()
        # Wrapped after the optimizer and group structure took their tensors (the SyncBatchNorm
        # conversion keeps them) and after a resume loaded the same weights on every rank.
        self.net = dist.wrap_model(self.ctx, self.model, self.device, sync_bn=self.config.train.sync_bn)
        total = self.config.train.epochs
        self.reporter.start("run", "training", total=total)
        self.reporter.advance("run", steps=self.epoch)
        while self.epoch < total and not self.stopped_early:
            self._train_epoch()
        self.reporter.finish("run")
        test = self._test_best()
        return self._result(test)

    def _start_fresh(self) -> None:
        if self.ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            for name in (METRICS, SPARSITY, LAST, BEST):  # last.pt / best.pt only reach here with force
                (self.out / name).unlink(missing_ok=True)
            write_text(self.out / CONFIG, self.config.to_yaml())
        bs = self.config.train.batch_size
        self.baseline = fit_baselines(self.tasks, eval_loader(self.train_set, bs))
        if self.sparsifier is not None:  # saliencies and initial masks, from the train split in order
            self.sparsifier.setup(eval_loader(self.train_set, bs))

    def _restore(self, ckpt: Checkpoint) -> None:
        stored = ckpt.config
        for key in _RESUME_MUST_MATCH:
            if stored.get(key) != self.config.to_dict()[key]:
                raise ConfigError(f"cannot resume {self.out}: its '{key}' section differs from this config")
        if (stored.get("optimizer") or {}).get("name") != self.config.optimizer.name:
            raise ConfigError(f"cannot resume {self.out}: it was trained with another optimizer.name")
        extra = ckpt.extra
        trained_by = int(extra.get("world_size", 1))
        if trained_by != self.ctx.world_size:  # shards, steps per epoch and the schedule depend on it
            raise ConfigError(
                f"cannot resume {self.out}: it was trained by {trained_by} process(es) and this job has "
                f"{self.ctx.world_size}; resume with the same total number of processes (torchrun --nnodes x "
                "--nproc-per-node), or start a new run")
        self.model.load_state_dict(ckpt.state_dict)
        self.weighting.load_state_dict(extra["loss_weighting"])
        if ckpt.optimizer is not None:
            self.optimizer.load_state_dict(ckpt.optimizer)
        if self.controller is not None and "controller" in extra:
            self.controller.load_state_dict(extra["controller"])
        if self.sparsifier is not None:
            self.sparsifier.load_state_dict(extra["sparsifier"])
        if "precision" in extra:
            self.precision.load_state_dict(extra["precision"])
        self.epoch, self.global_step = ckpt.epoch, int(extra["global_step"])
        self.history = list(extra.get("history", []))
        best = extra.get("best", {})
        self.best_epoch, self.best_value = int(best.get("epoch", 0)), float(best.get("value", self.best_value))
        self.best_metrics = best.get("metrics", {})
        self.bad_epochs = int(extra.get("bad_epochs", 0))
        self.stopped_early = bool(extra.get("stopped_early", False))
        self.images, self.train_time = int(extra.get("images", 0)), float(extra.get("train_time_s", 0.0))
        self.time_s = float(extra.get("time_s", 0.0))
        self.baseline = extra.get("baseline", {})
        self.sparsity = extra.get("sparsity", {})
        if self.ctx.is_main:
            self._repair(ckpt)
        restore_rng(extra["rng"])
        self.reporter.message(f"resumed {self.out} after epoch {self.epoch}")

    def _repair(self, ckpt: Checkpoint) -> None:
        """Make the folder consistent with ``last.pt`` after a kill mid-commit: the log lines of
        later epochs go, the last epoch's lines come back from the copy ``last.pt`` holds, and a
        ``best.pt`` that should be this epoch's is rewritten from it."""
        log = ckpt.extra.get("log") or {}
        for name, key in ((METRICS, "metrics"), (SPARSITY, "sparsity")):
            epochs = truncate_jsonl(self.out / name, self.epoch)
            record = log.get(key)
            if record and self.epoch not in epochs and record.get("epoch") == self.epoch:
                append_jsonl(self.out / name, record)
                self.reporter.message(f"repaired {name}: restored epoch {self.epoch} from {LAST}")
        best = self.out / BEST
        if self.best_epoch == self.epoch and self.epoch > 0:
            stored = stored_epoch(best)
            if stored != self.epoch:
                save_checkpoint(best, ckpt)
                self.reporter.message(f"repaired {BEST}: rewrote epoch {self.epoch} from {LAST}")

    # ------------------------------------------------------------------ one epoch
    def _train_epoch(self) -> None:
        cfg, epoch = self.config.train, self.epoch
        start = time.perf_counter()
        set_epoch(self.loader, epoch)
        self.net.train()
        self.weighting.train()
        self.reporter.start("epoch", f"epoch {epoch + 1}/{cfg.epochs}", total=self.steps)
        sums = {name: torch.zeros((), device=self.device) for name in (*self.tasks, "total")}
        report_every = max(1, self.steps // 50)
        images = reported = 0
        lr = self.optimizer.param_groups[0]["lr"]
        for i, batch in enumerate(self.loader):
            batch = to_device(batch, self.device)
            factor = lr_factor(self.config.schedule, self.global_step, self.steps, cfg.epochs)
            lr = set_lr(self.optimizer, self.base_lrs, factor)
            outputs = self.precision.forward(self.net, batch["image"])
            losses = {name: task.loss(outputs[name], batch) for name, task in self.tasks.items()}
            sp = self.sparsifier
            loss = self.weighting(losses) if sp is None else sp.combine(losses, self.weighting)
            self.optimizer.zero_grad(set_to_none=True)
            self.precision.backward(loss)  # DDP has averaged the model's gradients when this returns
            dist.average_gradients(self.ctx, self.weighting.parameters())
            self.precision.unscale(self.optimizer)
            if self.sparsifier is not None:  # masked gradients, or the thresholds' chain rule
                self.sparsifier.after_backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
            stepped = self.precision.step(self.optimizer)  # fp16 overflow: no step, so no prox either
            self.global_step += 1
            if self.controller is not None:
                self.controller.after_step(self.global_step)
            if self.sparsifier is not None:
                self.sparsifier.after_step(self.global_step, batch)
            images += int(batch["image"].shape[0])
            for name, value in losses.items():
                sums[name] += value.detach()
            sums["total"] += loss.detach()
            if (i + 1) % report_every == 0 or i + 1 == self.steps:
                current = float(loss.detach())
                if not math.isfinite(current) and stepped:
                    raise ConfigError(f"the loss became {current} at epoch {epoch + 1} step {i + 1}; "
                                      "lower optimizer.lr or set train.grad_clip")
                self.reporter.advance("epoch", steps=i + 1 - reported, loss=current, lr=lr)
                reported = i + 1
        self.reporter.finish("epoch")
        if not cfg.sync_bn:  # DDP uses rank 0's BatchNorm statistics; make the copies equal too
            dist.broadcast_buffers(self.ctx, self.model)
        dist.check_replicas(self.ctx, {"model": self.model, "loss_weighting": self.weighting},
                            when=f"in epoch {epoch + 1}")
        totals = dist.all_reduce_mean(self.ctx, torch.stack(list(sums.values())))
        sums = dict(zip(sums, totals))
        images = int(dist.all_reduce_sum(self.ctx, torch.tensor([images], device=self.device)))
        seconds = time.perf_counter() - start
        self.images += images
        self.train_time += seconds
        self.epoch += 1
        train_losses = {k: float(v) / max(self.steps, 1) for k, v in sums.items()}
        self._end_epoch(train_losses, lr, images / max(seconds, 1e-9), start)

    def _end_epoch(self, train_losses: dict[str, float], lr: float, ips: float, start: float) -> None:
        cfg, epoch = self.config.train, self.epoch
        val: dict[str, dict[str, float]] = {}
        improved = False
        if self.ctx.is_main and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
            loader = eval_loader(self.val_set, cfg.batch_size)
            val = evaluate(self.model, self.tasks, loader, self.device, with_loss=True)
            value = self._monitored(val)
            # With a sparsity target, only epochs after the landing (the final architecture) compete.
            eligible = self.controller is None or self.controller.settings.kind is None or self.controller.landed
            eligible = eligible and (self.sparsifier is None or self.sparsifier.landed)
            if self.higher:
                improved = value > self.best_value + cfg.min_delta
            else:
                improved = value < self.best_value - cfg.min_delta
            if eligible and (improved or self.best_epoch == 0):  # the first eligible evaluation is the best so far
                self.best_value, self.best_epoch, self.best_metrics = value, epoch, val
                self.bad_epochs = 0
            elif eligible:
                self.bad_epochs += 1
            self.stopped_early = cfg.patience > 0 and self.bad_epochs >= cfg.patience
        self.stopped_early = dist.broadcast_flag(self.ctx, self.stopped_early, self.device)
        sparsity = self._sparsity_report() if self.ctx.is_main else None
        self.time_s += time.perf_counter() - start
        record = {
            "epoch": epoch, "step": self.global_step, "train": train_losses, "val": val,
            "monitor": {self.monitor: self._monitored(val)} if val else {}, "lr": lr,
            "task_weights": self.weighting.weights(), "time_s": time.perf_counter() - start,
            "images_per_s": ips, "best": self.best_epoch == epoch,
        }
        if sparsity is not None:
            record["group_sparsity"] = sparsity.get("group_sparsity")
        self.history.append({"epoch": epoch, "train_loss": train_losses["total"],
                             "monitor": record["monitor"].get(self.monitor), "lr": lr})
        if self.ctx.is_main:
            # The commit order resume relies on: last.pt (with this epoch's log records), best.pt, logs.
            log = {"metrics": record, "sparsity": {"epoch": epoch, **sparsity} if sparsity is not None else None}
            ckpt = self._checkpoint(val, log)
            save_checkpoint(self.out / LAST, ckpt)
            if self.best_epoch == epoch:
                save_checkpoint(self.out / BEST, ckpt)
            append_jsonl(self.out / METRICS, record)
            if log["sparsity"] is not None:
                append_jsonl(self.out / SPARSITY, log["sparsity"])
        fields: dict[str, Any] = {"loss": train_losses["total"]}
        if val:
            fields[f"val_{self.monitor}"] = self._monitored(val)
        if self.sparsity:
            fields["group_sparsity"] = self.sparsity.get("group_sparsity")
        self.reporter.advance("run", **fields)
        if self.stopped_early:
            self.reporter.message(
                f"early stop after epoch {epoch}: {self.monitor} did not improve for {cfg.patience} evaluations")

    def _monitored(self, val: dict[str, dict[str, float]]) -> float:
        if self.monitor == "loss":
            return sum(v["loss"] for v in val.values())
        task, _, metric = self.monitor.partition(".")
        return float(val[task][metric])

    def _sparsity_report(self) -> dict[str, Any] | None:
        try:
            from mtlexport.sparsity import sparsity_report
        except ImportError:
            return None
        full = sparsity_report(self.model, self.config.optimizer.group_scope).to_dict()
        if self.controller is not None:
            m = self.controller.measure()
            full["grouping"] = self.config.optimizer.grouping
            full["lambda"] = m["lambda"]
            full["zero_coupled_groups" if self.config.optimizer.grouping == "coupled" else "zero_lasso_groups"] = (
                int(m["zero_groups"]))
            full["lasso_groups"] = int(m["groups"])
            full["lasso_group_sparsity"] = 100.0 * m["group_share"]
            if "macs_ratio" in m:
                full["removable_channels"] = int(m["removable_channels"])
                full["macs_ratio"] = m["macs_ratio"]
                full["removable_macs_share"] = 1.0 - m["macs_ratio"]
            full["frozen"] = self.controller.frozen
            full["landed"] = self.controller.landed
        if self.sparsifier is not None:
            full.update(self.sparsifier.report())
            full["landed"] = self.sparsifier.landed
        self.sparsity = {k: v for k, v in full.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        return full

    def _checkpoint(self, metrics: dict[str, dict[str, float]], log: dict[str, Any] | None = None) -> Checkpoint:
        extra = {
            "loss_weighting": {k: v.detach().cpu() for k, v in self.weighting.state_dict().items()},
            "task_weights": self.weighting.weights(), "global_step": self.global_step,
            "history": self.history,
            "best": {"epoch": self.best_epoch, "value": self.best_value, "metrics": self.best_metrics},
            "monitor": self.monitor, "bad_epochs": self.bad_epochs, "stopped_early": self.stopped_early,
            "images": self.images, "train_time_s": self.train_time, "time_s": self.time_s,
            "baseline": self.baseline, "sparsity": self.sparsity, "rng": capture_rng(),
            "log": plain_json(log or {}), "world_size": self.ctx.world_size,
            "precision": self.precision.state_dict(),
        }
        if self.structure is not None:
            extra["group_structure"] = self.structure.to_dict()
        if self.controller is not None:
            extra["controller"] = self.controller.state_dict()
        if self.sparsifier is not None:
            extra["sparsifier"] = self.sparsifier.state_dict()
        return Checkpoint(spec=self.config.model, state_dict=self.model.state_dict(), config=self.config.to_dict(),
                          epoch=self.epoch, metrics={"val": metrics}, optimizer=self.optimizer.state_dict(),
                          extra=extra)

    # ------------------------------------------------------------------ the end
    def _test_best(self) -> dict[str, dict[str, float]]:
        if not self.ctx.is_main or not (self.out / BEST).is_file():
            return {}
        best = load_checkpoint(self.out / BEST)
        if "test" in best.metrics:
            return best.metrics["test"]
        test_set = self.test_set
        if len(test_set) == 0:  # type: ignore[arg-type]
            return {}
        model = best.build_model(factory=self.config.model.factory or None).to(self.device)
        test = evaluate(model, self.tasks, eval_loader(test_set, self.config.train.batch_size), self.device)
        save_checkpoint(self.out / BEST, replace(best, metrics={**best.metrics, "test": test}))
        return test

    def _result(self, test: dict[str, dict[str, float]]) -> TrainResult:
        return TrainResult(
            run_dir=str(self.out), best_checkpoint=str(self.out / BEST), last_checkpoint=str(self.out / LAST),
            epochs_run=self.epoch, best_epoch=self.best_epoch, monitor=self.monitor, best_value=self.best_value,
            best_metrics=self.best_metrics, test_metrics=test, task_weights=self.weighting.weights(),
            history=self.history, stopped_early=self.stopped_early, time_s=self.time_s,
            images_per_s=self.images / max(self.train_time, 1e-9), seed=self.config.train.seed,
            sparsity=self.sparsity,
        )


def _check_user_model(model: torch.nn.Module, dataset: Any, names: tuple[str, ...], device: torch.device) -> None:
    """One forward of a factory model on the first training image: a dict with every task."""
    from mtlexport.models.factory import check_outputs

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = model(dataset[0]["image"].unsqueeze(0).to(device))
    finally:
        model.train(was_training)
    check_outputs(outputs, names, 1, "model.factory")
