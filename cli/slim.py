"""``mtlexport slim``: remove provably dead channels, verify exactness, write a slim checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cli._common import CheckpointArg, JsonOpt, RichReporter, emit_json, make_table, stdout

HELP = """Remove provably dead channels, verify the slim model is exact, write SLIM.pt.

Refuses to write when any output differs by more than --tol. With --model
package.module:factory, CKPT is a plain state_dict of the model the factory builds; the output
holds the state_dict plus a widths map: rebuild it with
mtlexport.surgery.load_slim_state_dict(path), or factory() + apply_widths(model,
ckpt["widths"]) + load_state_dict(ckpt["state_dict"])."""


def register(app: typer.Typer) -> None:
    """Add the ``slim`` command to ``app``."""
    app.command("slim", help=HELP)(slim)


def slim(
    ckpt: CheckpointArg,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output file [default: <ckpt stem>.slim.pt].")] = None,
    round_to: Annotated[int, typer.Option("--round-to", min=1, help="Keep every width a multiple of N.")] = 1,
    tol: Annotated[float, typer.Option("--tol", min=0.0, help="Largest allowed output error (abs or rel to the output's max).")] = 1e-5,
    fold_constants: Annotated[bool, typer.Option("--fold-constants", help="Also remove channels whose producer filter is zero, folding their constant output into consumers where exact.")] = False,
    input_size: Annotated[Optional[int], typer.Option("--input-size", help="Side of the random verification images [default: data config size, else 64].")] = None,
    float64: Annotated[bool, typer.Option("--float64", help="Verify in float64 (no rounding noise; slow on CPU).")] = False,
    model: Annotated[Optional[str], typer.Option("--model", help="package.module:factory for a plain state_dict checkpoint.")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write a per-layer channels PNG.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Slim CKPT and report what was removed."""
    from mtlexport.surgery import slim_checkpoint, slim_state_dict

    with RichReporter(enabled=not json_out) as reporter:
        options = dict(round_to=round_to, tol=tol, fold_constants=fold_constants, input_size=input_size,
                       float64=float64, reporter=reporter)
        if model:
            report = slim_state_dict(ckpt, model, out, **options)
        else:
            report = slim_checkpoint(ckpt, out, **options)
    if plot is not None:
        from mtlexport.surgery.plot import plot_channels

        plot_channels(report, plot)
    if json_out:
        emit_json(report.to_dict())
        return
    _render(report, plot)


def _render(report, plot: Path | None) -> None:  # noqa: ANN001 - SlimReport, imported lazily
    changed = [layer for layer in report.layers if layer.changed]
    stdout.print(make_table(
        f"layers changed ({len(changed)} of {len(report.layers)})", ["layer", "in", "in slim", "out", "out slim"],
        [[c.name, c.in_before, c.in_after, c.out_before, c.out_after] for c in changed],
    ))
    stdout.print(make_table("verification", ["output", "inputs", "max abs", "max rel", "ok"],
                            [[c.output, c.inputs, c.max_abs, c.max_rel, c.passed] for c in report.checks]))
    kept = ", ".join(f"{k} {v}" for k, v in report.kept.items() if v) or "none"
    rows = [
        ["parameters", report.params_before, report.params_after, ratio(report.params_after, report.params_before)],
        [f"MACs / sample {tuple(report.input_shape)}", report.macs_before, report.macs_after,
         ratio(report.macs_after, report.macs_before)],
        ["group sparsity / realised", f"{report.group_sparsity:.1%}", f"{report.realised:.1%}", ""],
        ["channels removable / removed", report.removable, report.removed, f"kept: {kept}"],
        ["seconds", "", report.seconds.get("total", 0.0), ""],
    ]
    if report.folded or report.unfoldable:
        rows.append(["constants folded / unfoldable", report.folded, report.unfoldable, ""])
    stdout.print(make_table("slim summary", ["", "dense", "slim", "ratio"], rows))
    if report.skipped:
        from rich.markup import escape

        table = make_table(
            "groups kept whole (unsupported)", ["blocked by", "groups", "removable kept", "why (first groups)"],
            [[escape(s.blocker), s.groups, "unknown" if s.channels is None else s.channels,
              escape(f"{s.reason}; rooted at {', '.join(s.roots)}")] for s in report.skipped],
        )
        table.columns[-1].justify = "left"
        stdout.print(table)
    for text in report.notices:
        stdout.print(f"[dim]{text}[/dim]", highlight=False)
    stdout.print(f"wrote {report.output}" + (f" and {plot}" if plot else ""), highlight=False)


def ratio(after: int, before: int) -> str:
    """after / before with 3 decimals, or a dash when a count is unknown."""
    return f"{after / before:.3f}" if before > 0 and after >= 0 else "-"
