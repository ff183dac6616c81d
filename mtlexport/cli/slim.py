"""``mtlexport slim``: remove provably dead channels, verify exactness, write a slim checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mtlexport.cli._common import CheckpointArg, ForceOpt, JsonOpt, RichReporter, emit_json, make_table, stdout
from mtlexport.errors import ConfigError

HELP = """Remove provably dead channels, verify the slim model is exact, write SLIM.pt.

Refuses to write when any output differs by more than --tol. --round-to auto chooses every
layer's width (between its live channels and its dense width: kept dead channels never change
the function) by latency measured on --backend at --batch and --threads, from a per-layer
table cached under $MTLEXPORT_CACHE_DIR/latency (default ~/.cache/mtlexport/latency), then
measures the whole slim model against every fixed multiple and keeps the fastest fixed one if
auto is slower. With --model
package.module:factory, CKPT is a checkpoint of your own model (trained by mtlexport; it must
record that factory) or a plain state_dict of the model the factory builds; for the latter the output
holds the state_dict plus a widths map: rebuild it with
mtlexport.surgery.load_slim_state_dict(path), or factory() + apply_widths(model,
ckpt["widths"]) + load_state_dict(ckpt["state_dict"]). An existing --out (or --plot) file is
refused unless --force."""


def register(app: typer.Typer) -> None:
    """Add the ``slim`` command to ``app``."""
    app.command("slim", help=HELP)(slim)


def slim(
    ckpt: CheckpointArg,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output file [default: <ckpt stem>.slim.pt].")] = None,
    round_to: Annotated[str, typer.Option("--round-to", help="Keep every width a multiple of N, or 'auto': widths chosen by measured latency on --backend.")] = "1",
    tol: Annotated[float, typer.Option("--tol", min=0.0, help="Largest allowed output error (abs or rel to the output's max).")] = 1e-5,
    fold_constants: Annotated[bool, typer.Option("--fold-constants", help="Also remove channels whose producer filter is zero, folding their constant output into consumers where exact.")] = False,
    input_size: Annotated[Optional[str], typer.Option("--input-size", help="Size HxW (or N for NxN) of the random verification images [default: data config size, else 64].", show_default=False)] = None,
    float64: Annotated[bool, typer.Option("--float64", help="Verify in float64 (no rounding noise; slow on CPU).")] = False,
    model: Annotated[Optional[str], typer.Option("--model", help="Your own model's package.module:factory: CKPT is its checkpoint (trained by mtlexport, recording that factory) or a plain state_dict.")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write a per-layer channels PNG.")] = None,
    backend: Annotated[Optional[str], typer.Option("--backend", help="With --round-to auto: ort, torch or inductor [default: ort].")] = None,
    batch: Annotated[Optional[int], typer.Option("--batch", min=1, help="With --round-to auto: batch size to measure at [default: 1].")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="With --round-to auto: intra-op threads [default: 1].")] = None,
    duration_s: Annotated[Optional[float], typer.Option("--duration-s", min=0.0, help="With --round-to auto: timed seconds per whole model [default: 2].")] = None,
    warmup_ms: Annotated[Optional[float], typer.Option("--warmup-ms", min=0.0, help="With --round-to auto: untimed warm-up per whole model [default: 200].")] = None,
    layer_ms: Annotated[Optional[float], typer.Option("--layer-ms", min=0.001, help="With --round-to auto: timed ms per new latency-table entry [default: 20].")] = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Slim CKPT and report what was removed."""
    from mtlexport.bench.settings import parse_size
    from mtlexport.io import check_output_file
    from mtlexport.surgery import slim_checkpoint, slim_state_dict
    from mtlexport.surgery.files import default_output

    rounding = _round_to(round_to)
    size = parse_size(input_size) if input_size is not None else None
    plain = False  # --model with a plain state dict (not a checkpoint of your own model)
    if model:
        from mtlexport.train.checkpoint import FORMAT, file_format

        plain = file_format(ckpt) != FORMAT
    given = {k: v for k, v in dict(backend=backend, batch=batch, threads=threads, duration_s=duration_s,
                                   warmup_ms=warmup_ms, layer_ms=layer_ms).items() if v is not None}
    auto = None
    if rounding == "auto":
        from mtlexport.surgery.auto import AutoOptions

        if plain:
            raise ConfigError("--round-to auto needs an mtlexport checkpoint (the bench runners load one); "
                              "slim a plain state dict with a fixed --round-to N")
        auto = AutoOptions(**given)
    elif given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise ConfigError(f"{flags} only apply with --round-to auto")
    out = Path(out) if out is not None else default_output(ckpt)
    for flag, path in (("--out", out), ("--plot", plot)):
        if path is not None:  # before the surgery: a folder, no permission, a full disk, an existing file
            check_output_file(path, what=flag, overwrite=force)
    with RichReporter(enabled=not json_out) as reporter:
        options = dict(round_to=rounding, tol=tol, fold_constants=fold_constants, input_size=size,
                       float64=float64, reporter=reporter)
        if plain:
            report = slim_state_dict(ckpt, model, out, **options)
        else:
            report = slim_checkpoint(ckpt, out, auto=auto, factory=model, **options)
    if plot is not None:
        from mtlexport.surgery.plot import plot_channels

        plot_channels(report, plot)
    if json_out:
        emit_json(report.to_dict())
        return
    _render(report, plot)


def _round_to(text: str) -> int | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"--round-to takes a positive integer or 'auto', got {text!r}")
    return value


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
        *([[f"zero {report.trained_groups['grouping']} groups -> channels removed",
            report.trained_groups["zero_groups"], report.removed, ""]] if report.trained_groups else []),
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
    if report.auto is not None:
        _render_auto(report.auto)
    for text in report.notices:
        stdout.print(f"[dim]{text}[/dim]", highlight=False)
    stdout.print(f"wrote {report.output}" + (f" and {plot}" if plot else ""), highlight=False)


def ratio(after: int, before: int) -> str:
    """after / before with 3 decimals, or a dash when a count is unknown."""
    return f"{after / before:.3f}" if before > 0 and after >= 0 else "-"


def _render_auto(auto) -> None:  # noqa: ANN001 - surgery.auto.AutoReport
    o = auto.options
    setting = f"{o.backend}, batch {o.batch}, {o.threads} thread{'s' if o.threads > 1 else ''}"
    groups = make_table(
        f"latency-aware widths per group ({setting})",
        ["group root layer", "dense", "live", auto.best_fixed.replace("round-to", "x"), "auto", "kept", "dead kept"],
        [[g.root, g.dense, g.live, g.fixed, g.auto, g.width, g.dead_kept] for g in auto.groups],
    )
    groups.columns[0].no_wrap = True
    stdout.print(groups)
    rows = []
    for v in auto.variants:
        name = v.name + (" *" if v.name == auto.chosen else "") + (f" (= {v.same_as})" if v.same_as else "")
        rows.append([name, v.macs_ratio, v.predicted_ms, v.measured_ms, f"{v.speedup:.2f}x",
                     None if v.realised is None else f"{v.realised:.1%}"])
    variants = make_table("whole model (median ms, alternating rounds; * kept)",
                          ["widths", "MACs ratio", "predicted", "measured", "speedup", "realised"], rows)
    variants.columns[0].no_wrap = True
    stdout.print(variants)
    stdout.print(f"kept {auto.chosen}: {auto.reason}", highlight=False)
    stdout.print(f"[dim]latency table {auto.table}: {auto.layer_entries} entries used, "
                 f"{auto.layer_measurements} measured in this run[/dim]", highlight=False)
    for text in auto.notes:
        stdout.print(f"[dim]{text}[/dim]", highlight=False)
