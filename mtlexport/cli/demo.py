"""``mtlexport demo``: the quick start in one command (train, slim, export, bench, one table)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mtlexport.cli._common import ForceOpt, JsonOpt, RichReporter, emit_json, interrupt_note, make_table, stdout
from mtlexport.demo import DEFAULT_TARGET, DemoOptions

HELP = """Train a dense and a group-sparse model, slim, export and benchmark them: one table.

On the bundled quick configuration (quick.yaml, installed with the package) this takes about 4 minutes on 2 CPU cores; --skip-train reuses the sample checkpoints beside the config (<stem>_dense.pt and <stem>_sparse.pt) and takes under a minute.

Writes OUT/summary.md (the table), OUT/summary.json, plots, both training runs, slim.pt and the two ONNX export folders. A non-empty OUT is refused unless --force (start over) or --resume (continue an interrupted demo)."""


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to ``app``."""
    app.command("demo", help=HELP)(demo)


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR",
                                      help="Output folder (new or empty, unless --force).")] = Path("demo_out"),
    skip_train: Annotated[bool, typer.Option("--skip-train", help="Reuse the sample checkpoints instead of training.")] = False,
    config: Annotated[Path | None, typer.Option("--config", "-c", metavar="FILE", help="Training config.",
                                                show_default="the bundled quick.yaml")] = None,
    target_macs: Annotated[float | None, typer.Option(
        "--target-macs", help="MACs ratio (slim / dense) the sparse run lands on; lambda adapts.",
        show_default=str(DEFAULT_TARGET))] = None,
    lam: Annotated[float | None, typer.Option("--lambda", help="Fixed group-lasso strength instead of a MACs target.",
                                              show_default="none: the MACs target")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Epochs per training run.",
                                            show_default="the config's")] = None,
    round_to: Annotated[int | None, typer.Option("--round-to", min=1, help="Keep every slimmed width a multiple of N.",
                                                 show_default=str(DemoOptions.round_to))] = None,
    bench_seconds: Annotated[float | None, typer.Option("--duration-s", "--bench-seconds",
                                                        help="Timed seconds per model, backend "
                                                        "and batch size.",
                                                        show_default=str(DemoOptions.bench_seconds))] = None,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="CPU threads of the benchmarks.",
                                                show_default=str(DemoOptions.threads))] = None,
    force: ForceOpt = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted demo in --out: finished trainings "
                                         "are reused, an interrupted one continues, the rest runs again.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Run the whole pipeline on a small config and print the dense vs slim comparison."""
    from mtlexport.demo import run_demo

    if skip_train and (lam is not None or epochs is not None or target_macs is not None):
        from mtlexport.errors import ConfigError

        raise ConfigError("--target-macs, --lambda and --epochs apply to training; drop them or drop --skip-train")
    if lam is not None and target_macs is None:
        target_macs_value: float | None = None  # a fixed lambda replaces the default target
    else:
        target_macs_value = target_macs if target_macs is not None else DEFAULT_TARGET
    given = {"config": config, "lam": lam, "epochs": epochs, "bench_seconds": bench_seconds, "threads": threads,
             "round_to": round_to}
    options = DemoOptions(skip_train=skip_train, force=force, resume=resume, target_macs=target_macs_value,
                          **{k: v for k, v in given.items() if v is not None})
    interrupt_note.set(lambda: f"kept the finished stages in {out}; rerun with --resume to continue, "
                               "or --force to start over")
    with RichReporter() as reporter:
        result = run_demo(out, options, reporter=reporter)
    if json_out:
        emit_json(result.to_dict())
        return
    _render(result)


def _render(result: Any) -> None:  # DemoResult, imported lazily
    from mtlexport.demo import TABLE_COLUMNS, epochs_trained, format_cell, summary_rows

    o = result.options
    how = "sample checkpoints" if o.skip_train else f"{epochs_trained(result)} epoch(s) each"
    title = f"dense vs group-sparse ({result.recipe}) -> slim, {how}"
    rows = [[format_cell(v) for v in row] for row in summary_rows(result)]
    table = make_table(title, list(TABLE_COLUMNS), rows)
    table.columns[0].no_wrap = True
    stdout.print(table)
    for c in result.comparisons():
        if c.macs_ratio:
            stdout.print(f"{c.backend} b{c.batch}: speedup {c.speedup:.2f}x (median latencies; "
                         f"{c.speedup_min:.2f}x of minimum latencies), MACs ratio {c.macs_ratio:.2f}x: "
                         + (f"{c.realised:.0%} realised" if c.realised is not None else c.note), highlight=False)
    for text in result.notices:
        stdout.print(f"[dim]{text}[/dim]", highlight=False)
    load = ", ".join(f"{x:.1f}" for x in result.load_average)
    stdout.print(f"total {result.total_s:.0f} s (load average {load}); wrote {result.out_dir / 'summary.md'}",
                 highlight=False)
