"""``mtlexport sweep --methods``: the options and the table of the sparsifier comparison
(the library side is ``mtlexport.train.compare.compare_methods``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mtlexport.cli._common import make_table, stdout

MethodsOpt = Annotated[str, typer.Option(
    "--methods", metavar="M1,M2,...", help="Comma-separated sparsifiers to compare at one target, e.g. "
    "group_lasso,disparse,adapmtl (each trained, slimmed, exported and timed on ONNX Runtime CPU against the "
    "dense model); replaces --lambdas.", show_default=False)]
TargetMacsOpt = Annotated[float, typer.Option(
    "--target-macs", metavar="R", help="With --methods: the MACs ratio (slim / dense) every channel-level "
    "method must reach.")]
StructureOpt = Annotated[str, typer.Option(
    "--structure", metavar="channel|element", help="With --methods: channel groups the surgeon removes, or "
    "single weights (sparsity 1 - R unless sparsifier.target_sparsity is set; group_lasso stays channel).")]


def run_methods(cfg: Any, methods: str, out: Path, *, target_macs: float | None, structure: str, trials: int,
                plots: bool, reporter: Any) -> Any:
    """Parse the options and call ``compare_methods``."""
    from mtlexport.errors import ConfigError
    from mtlexport.train.compare import compare_methods

    if target_macs is None:
        raise ConfigError("--methods needs --target-macs R (slim / dense MACs), e.g. --target-macs 0.5")
    names = [m.strip() for m in methods.split(",") if m.strip()]
    return compare_methods(cfg, names, out, target_macs=target_macs, structure=structure, trials=trials,
                           target_sparsity=cfg.sparsifier.target_sparsity, plots=plots, reporter=reporter)


def _cell(entry: dict[str, Any], key: str, fmt: str = "{:.4f}", std: bool = True) -> str | None:
    value = entry.get(key)
    if not value:
        return None
    text = fmt.format(value["mean"])
    return text + (" ± " + fmt.format(value["std"]) if std and value["n"] > 1 else "")


def render_methods(result: Any) -> None:
    """The paper-style table: headline metric per task, MACs / params ratio, sparsity, Delta_T, latency."""
    columns = ["method"]
    for task, metric in result.headline.items():
        columns.append(f"{task}\n{metric} {'↑' if result.higher_is_better.get(task, True) else '↓'}")
    columns += ["MACs\nratio", "params\nratio", "% weights\nzero", "Delta_T\n(%)", "ORT CPU\nms", "speed-up"]
    rows = []
    for entry in result.table():
        line: list[Any] = [entry["method"] if entry["method"] == "dense" else f"{entry['method']} ({entry['structure']})"]
        line += [_cell(entry, k) for k in result.headline_keys()]
        line += [_cell(entry, "macs_ratio", "{:.3f}", False), _cell(entry, "params_ratio", "{:.3f}", False),
                 _cell(entry, "sparsity", "{:.1f}", False), _cell(entry, "delta_t", "{:+.2f}"),
                 _cell(entry, "latency_ms", "{:.2f}", False), _cell(entry, "speedup", "{:.2f}x", False)]
        rows.append(line)
    target = f"MACs {result.target_macs:g}" + (
        f", element sparsity {result.target_sparsity:g}" if result.target_sparsity is not None else "")
    title = f"methods at {target}, {result.trials} trial(s), {result.split} metrics, Delta_T vs dense"
    stdout.print(make_table(title, columns, rows))
    reused = sum(r.reused for r in result.rows)
    if reused:
        stdout.print(f"{reused} finished run(s) reused from an earlier comparison")
    stdout.print("files: " + ", ".join(Path(f).name for f in result.files) + f" in {result.out_dir}")
