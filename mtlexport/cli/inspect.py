"""``mtlexport inspect``: architecture, size, cost, per-layer shapes and sparsity of a checkpoint."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console

from mtlexport.cli._common import CheckpointArg, JsonOpt, ModelOpt, emit_json, make_table, stdout

LayersOpt = Annotated[bool, typer.Option("--layers/--no-layers", help="Show the per-layer table.")]


def register(app: typer.Typer) -> None:
    """Add the ``inspect`` command to ``app``."""

    @app.command("inspect")
    def inspect_command(checkpoint: CheckpointArg, layers: LayersOpt = True, model: ModelOpt = None,
                        json: JsonOpt = False) -> None:
        """Summarise a checkpoint: backbone, tasks and heads, parameters, MACs, layers, sparsity."""
        from mtlexport.train import inspect_checkpoint

        report = inspect_checkpoint(checkpoint, factory=model)
        if json:
            emit_json(report.to_dict())
            return
        render(report, layers)


def render(report: Any, layers: bool) -> None:
    """Rich tables for an ``InspectReport``."""
    b = report.backbone
    c, h, w = report.input_shape
    stdout.print(f"[bold]{report.checkpoint}[/bold]  (epoch {report.epoch})")
    if "factory" in b:  # your own model
        kwargs = ", ".join(f"{k}={v!r}" for k, v in b["kwargs"].items())
        stdout.print(f"model {b['factory']}({kwargs})", highlight=False)
    else:
        stdout.print(f"backbone {b['name']}, output stride {report.output_stride}, deep stem {b['deep_stem']}, "
                     f"base width {b['base_width']}, width mult {b['width_mult']:g}")
    stdout.print(f"parameters {report.params:,}, MACs/sample {report.macs:,} "
                 f"({report.gflops:.3f} GFLOPs) at {c}x{h}x{w}")
    bad = report.non_finite_tensors
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        stdout.print(f"[bold red]non-finite weights (NaN/Inf)[/bold red] in {', '.join(bad[:3])}{more}: "
                     "eval, slim and export refuse this checkpoint", highlight=False)
    own = "factory" in b  # your own model's heads are its own: no head settings
    task_rows = [[t["name"], t["type"], t["num_outputs"], "-" if own else t["head"], None if own else t["head_width"],
                  "-" if own else " ".join(str(r) for r in t.get("rates", [])) or "-",
                  report.params_by_part.get(f"heads.{t['name']}")]
                 for t in report.tasks]
    stdout.print(make_table("tasks", ["task", "type", "outputs", "head", "width", "rates", "params"], task_rows))
    if report.sparsity:
        s = report.sparsity
        stdout.print(f"group sparsity ({s.get('scope')}): {s['zero_groups']}/{s['num_groups']} groups "
                     f"= {s['group_sparsity']:.2f}%  params in zero groups {s['param_sparsity']:.2f}%")
    trained = report.trained_sparsity
    if trained.get("lasso_groups"):
        line = (f"trained with {trained.get('grouping', 'channel')} groups: "
                f"{trained.get('zero_groups', 0)}/{trained['lasso_groups']} zero")
        if "removable_channels" in trained:
            line += (f"; removable channels {trained['removable_channels']}, removable MACs "
                     f"{100 * trained['removable_macs_share']:.1f}% (slim MACs ratio {trained['macs_ratio']:.3f})")
        stdout.print(line)
    if report.slim:
        stdout.print(make_table("slimmed from", ["", "value"], _slim_rows(report.slim)))
    if layers:
        rows = [[lay.name, lay.type, lay.in_channels, lay.out_channels, _tup(lay.kernel), _tup(lay.stride),
                 _tup(lay.dilation), lay.groups, lay.params, lay.zero_in_channels] for lay in report.layers]
        table = make_table("layers", ["name", "type", "in", "out", "k", "s", "d", "g", "params", "zero in"], rows)
        table.columns[0].no_wrap = True
        wide = stdout if stdout.width >= 120 else Console(width=120)  # layer names are long; never fold them
        wide.print(table)
        stdout.print("k kernel, s stride, d dilation, g groups; zero in: input channels whose weights are all zero")


def _tup(t: tuple[int, ...]) -> str:
    return "x".join(str(v) for v in t) if t else "-"


def _slim_rows(slim: dict[str, Any]) -> list[list[Any]]:
    """The headline of the slim report stored in the checkpoint (``--json`` has all of it)."""
    verification = slim.get("verification") or {}
    kept = {k: v for k, v in (slim.get("kept") or {}).items() if v}
    rows: list[list[Any]] = [
        ["source", slim.get("source")],
        ["parameters before / after", f"{slim.get('params_before', 0):,} / {slim.get('params_after', 0):,}"],
        ["MACs/sample before / after", f"{slim.get('macs_before', 0):,} / {slim.get('macs_after', 0):,}"],
        ["group sparsity / realised", f"{100 * slim.get('group_sparsity', 0):.1f}% / {100 * slim.get('realised', 0):.1f}%"],
        ["channels removable / removed", f"{slim.get('removable')} / {slim.get('removed')}"],
        *([f"zero {t['grouping']} groups -> channels removed", f"{t['zero_groups']} -> {slim.get('removed')}"]
          for t in [slim.get("trained_groups")] if t),
        ["kept although dead", ", ".join(f"{k} {v}" for k, v in kept.items()) or "none"],
        ["round to", slim.get("round_to")],
        ["verification", f"{'passed' if verification.get('passed') else 'FAILED'}, max rel error "
                         f"{verification.get('max_rel_error', float('nan')):.2e} (tol {verification.get('tol')})"],
    ]
    return rows
