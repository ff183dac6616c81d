"""``mtlexport sweep``: train one config at several group-lasso strengths and tabulate the trade-off."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mtlexport.cli._common import JsonOpt, OutDirOpt, RichReporter, emit_json, make_table, stdout
from mtlexport.cli.compare import MethodsOpt, StructureOpt, TargetMacsOpt, render_methods, run_methods
from mtlexport.cli.train import ConfigOpt, SetOpt

LambdasOpt = Annotated[str, typer.Option(
    "--lambdas", metavar="L1,L2,...", help="Comma-separated group-lasso strengths, e.g. 0,1e-6,1e-5,1e-4.", show_default=False)]
TrialsOpt = Annotated[int, typer.Option("--trials", min=1, metavar="N", help="Seeds per lambda (seed..seed+N-1): mean +- std.")]
TargetsOpt = Annotated[str, typer.Option(
    "--targets", metavar="T1,T2,...", help="Comma-separated MACs targets (slim / dense MACs), e.g. 0.7,0.5,0.35: one row each, "
    "trained with optimizer.target_macs.", show_default=False)]
NoPlotOpt = Annotated[bool, typer.Option("--no-plots", help="Skip metric_vs_lambda.png and sparsity_vs_lambda.png.")]


def register(app: typer.Typer) -> None:
    """Add the ``sweep`` command to ``app``."""

    @app.command("sweep")
    def sweep_command(
        config: ConfigOpt,
        out: OutDirOpt,
        lambdas: LambdasOpt = "",
        trials: TrialsOpt = 1,
        set_: SetOpt = None,
        no_plots: NoPlotOpt = False,
        targets: TargetsOpt = "",
        methods: MethodsOpt = "",
        target_macs: TargetMacsOpt = None,
        structure: StructureOpt = "channel",
        json: JsonOpt = False,
    ) -> None:
        """Train at every lambda (lambda 0 = the dense baseline, same optimizer), write OUT/summary.csv,
        summary.json and plots; rerun the same command to continue an interrupted sweep. With --methods:
        compare sparsifiers at --target-macs instead (trained, slimmed, exported, timed against dense)."""
        from mtlexport.train import TrainConfig
        from mtlexport.train.sweep import sweep

        if methods:
            cfg = TrainConfig.from_file(config, set_ or ())
            with RichReporter(enabled=not json) as reporter:
                compared = run_methods(cfg, methods, out, target_macs=target_macs, structure=structure,
                                       trials=trials, plots=not no_plots, reporter=reporter)
            if json:
                emit_json(compared.to_dict())
            else:
                render_methods(compared)
            return
        lams = parse_lambdas(lambdas)
        cfg = TrainConfig.from_file(config, set_ or ())
        with RichReporter(enabled=not json) as reporter:
            result = sweep(cfg, lams, trials, out, reporter, plots=not no_plots,
                           targets=parse_lambdas(targets, "--targets") if targets else ())
        if json:
            emit_json(result.to_dict())
        else:
            render_sweep(result)


def parse_lambdas(text: str, flag: str = "--lambdas") -> list[float]:
    """``"0,1e-6,1e-5"`` -> floats; a bad item is a one-line ConfigError."""
    from mtlexport.errors import ConfigError

    values = []
    for item in text.split(","):
        if not item.strip():
            continue
        try:
            values.append(float(item))
        except ValueError:
            raise ConfigError(f"{flag}: {item.strip()!r} is not a number (expected e.g. 0,1e-6,1e-5)") from None
    if not values:
        raise ConfigError(f"{flag} needs at least one value, e.g. 0,1e-6,1e-5")
    return values


def render_sweep(result: Any) -> None:
    """The paper's table: headline metric mean +- std per task, % sparsity, Delta_T vs the baseline."""
    columns = ["lambda"]
    for task, metric in result.headline.items():
        columns.append(f"{task}\n{metric} {'↑' if result.higher_is_better.get(task, True) else '↓'}")
    columns += ["% group\nsparsity", "% params\nzero", "MACs\nratio", "Delta_T\n(%)"]
    rows = []
    for row in result.rows:
        line: list[Any] = [row.label]
        for task, metric in result.headline.items():
            m = row.metrics.get(f"{task}.{metric}")
            line.append(f"{m['mean']:.4f} ± {m['std']:.4f}" if m else None)
        ratio = row.macs_ratio["mean"] if row.macs_ratio else None
        line += [row.group_sparsity["mean"], row.param_sparsity["mean"], ratio, row.delta.get("overall")]
        rows.append(line)
    title = (f"{result.optimizer}, {result.trials} trial(s) per lambda, {result.split} metrics, "
             f"Delta_T vs lambda={result.baseline_lam:g}")
    stdout.print(make_table(title, columns, rows))
    reused = sum(r.reused for r in result.rows)
    if reused:
        stdout.print(f"{reused} finished run(s) reused from an earlier sweep")
    stdout.print("files: " + ", ".join(Path(f).name for f in result.files) + f" in {result.out_dir}")
