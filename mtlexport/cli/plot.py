"""``mtlexport plot``: figures of a training run (channels per layer, sparsity and metrics per epoch)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mtlexport.cli._common import JsonOpt, emit_json, stdout, writable_dir

SourceArg = Annotated[Path, typer.Argument(help="Run folder written by 'mtlexport train', or a checkpoint .pt.",
                                           show_default=False)]
PlotOutOpt = Annotated[Optional[Path], typer.Option(
    "--out", "-o", metavar="DIR", callback=writable_dir,
    help="Output folder (default: RUN/plots, or plots/ beside a checkpoint).")]


def register(app: typer.Typer) -> None:
    """Add the ``plot`` command to ``app``."""

    @app.command("plot")
    def plot_command(source: SourceArg, out: PlotOutOpt = None, json: JsonOpt = False) -> None:
        """Write channels.png (all vs non-zero input channels per conv), sparsity_epochs.png and
        val_metrics.png; for a checkpoint, channels.png only."""
        from mtlexport.sparsity.plots import plot_run

        result = plot_run(source, out)
        if json:
            emit_json(result.to_dict())
            return
        if result.group_sparsity is not None:
            stdout.print(f"{result.checkpoint}: {result.group_sparsity:.2f}% group sparsity, "
                         f"{result.param_sparsity:.2f}% parameter sparsity")
        for f in result.files:
            stdout.print(f"wrote {f}")
