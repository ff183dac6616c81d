"""``mtlexport train``: train a multi-task model from a YAML config (optionally over N seeds)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mtlexport.cli._common import (
    ForceOpt, JsonOpt, ModelOpt, OutDirOpt, RichReporter, emit_json, interrupt_note, make_table, stdout,
)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Training config (YAML).", metavar="FILE",
                                         show_default=False)]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", metavar="KEY=VALUE", help="Override a config value: section.key=value (value parsed as YAML). Repeatable.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last.pt.")]
TrialsOpt = Annotated[int, typer.Option("--trials", min=1, metavar="N",
                                        help="Repeat with seeds seed..seed+N-1 into OUT/trial_k.")]


def register(app: typer.Typer) -> None:
    """Add the ``train`` command to ``app``."""

    @app.command("train")
    def train_command(
        config: ConfigOpt,
        out: OutDirOpt,
        set_: SetOpt = None,
        resume: ResumeOpt = False,
        force: ForceOpt = False,
        trials: TrialsOpt = 1,
        model: ModelOpt = None,
        json: JsonOpt = False,
    ) -> None:
        """Train a multi-task model; writes last.pt, best.pt, metrics.jsonl and sparsity.jsonl.

        An existing run in --out is refused unless --resume (continue it) or --force (replace it)."""
        from mtlexport.train import TrainConfig, train, train_trials

        cfg = TrainConfig.from_file(config, set_ or (), factory=model)
        interrupt_note.set(lambda: kept_runs(out))
        with RichReporter() as reporter:
            if trials > 1:
                result: Any = train_trials(cfg, out, trials, resume=resume, force=force, reporter=reporter)
            else:
                result = train(cfg, out, resume=resume, force=force, reporter=reporter)
        if json:
            emit_json(result.to_dict())
        elif trials > 1:
            render_trials(result)
        else:
            render_train(result)


def kept_runs(out: Path) -> str:
    """What an interrupted ``train`` left in ``out`` (and its trial folders), for one line."""
    from mtlexport.train.checkpoint import read_weights_only

    kept = []
    for run in [out, *sorted(out.glob("trial_*"))]:
        last = run / "last.pt"
        if last.is_file():
            epoch = read_weights_only(last).get("epoch")
            kept.append(f"{last} (epoch {epoch})")
    if not kept:
        return f"no epoch had finished; nothing to resume in {out}"
    return "kept " + ", ".join(kept) + "; continue with the same command plus --resume"


def render_train(result: Any) -> None:
    """Best validation and test metrics per task, then where the files are."""
    rows = []
    for task, metrics in result.best_metrics.items():
        test = result.test_metrics.get(task, {})
        for name, value in metrics.items():
            rows.append([f"{task}.{name}", value, test.get(name)])
    stdout.print(make_table(f"best epoch {result.best_epoch} of {result.epochs_run} (monitor {result.monitor})",
                            ["metric", "val (best)", "test"], rows))
    weights = ", ".join(f"{k}={v:.3g}" for k, v in result.task_weights.items())
    stdout.print(f"task weights: {weights}")
    if result.sparsity:
        stdout.print(f"group sparsity: {result.sparsity.get('group_sparsity', 0.0):.2f}%")
    stdout.print(f"{result.images_per_s:.1f} images/s, {result.time_s:.1f} s"
                 + ("  (stopped early)" if result.stopped_early else ""))
    stdout.print(f"best: {result.best_checkpoint}\nlast: {result.last_checkpoint}")


def render_trials(result: Any) -> None:
    """Mean and standard deviation per metric over the trials."""
    rows = [[key, s["mean"], s["std"], int(s["n"])] for key, s in result.summary.items()]
    title = f"{len(result.trials)} trials, {result.split} metrics"
    stdout.print(make_table(title, ["metric", "mean", "std", "n"], rows))
    stdout.print(f"runs in {result.run_dir}/trial_*")
