"""Figures of group-sparse training (matplotlib Agg, imported lazily), after Less is More:

* ``plot_channels``: input channels per grouped conv, all vs non-zero (paper Fig. 3);
* ``plot_sparsity_curve``: group and parameter sparsity over epochs (Fig. 4c);
* ``plot_metric_curves``: every task's validation metrics over epochs;
* ``plot_sweep``: headline metric and sparsity against lambda (Fig. 4a-b).

``plot_run`` draws what a run folder (or a single checkpoint) supports and returns
``RunPlots``. Every figure is written atomically as a PNG.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mtlexport.errors import CheckpointError, ConfigError
from mtlexport.io import atomic_path
from mtlexport.sparsity.stats import SparsityReport

__all__ = [
    "RunPlots",
    "plot_channels",
    "plot_metric_curves",
    "plot_run",
    "plot_sparsity_curve",
    "plot_sweep",
    "plot_delta_vs_macs",
    "read_jsonl",
]

RUN_FILES = ("best.pt", "last.pt", "metrics.jsonl", "sparsity.jsonl")
_DPI = 110


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def _save(fig: Any, path: str | Path, tight: bool = True) -> Path:
    plt = _pyplot()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if tight:  # slow with many panels: grids set their spacing themselves
        fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI)
    plt.close(fig)
    return target


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of a ``.jsonl`` file, one per non-empty line."""
    p = Path(path)
    records = []
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise CheckpointError(f"{p} line {n} is not JSON; was the run written by 'mtlexport train'?") from None
        if isinstance(record, dict):
            records.append(record)
    return records


# --------------------------------------------------------------------------- figures
def plot_channels(report: SparsityReport, path: str | Path, title: str | None = None) -> Path:
    """Bars per grouped conv (module order): all input channels and the non-zero ones (Fig. 3)."""
    if not report.layers:
        raise ConfigError("nothing to plot: the model has no grouped convolutions")
    plt = _pyplot()
    layers = report.layers
    xs = list(range(len(layers)))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.16 * len(layers) + 2.0), 4.2))
    ax.bar(xs, [lay.num_groups for lay in layers], width=0.85, color="#1f77b4", label="before (all channels)")
    ax.bar(xs, [lay.num_groups - lay.zero_groups for lay in layers], width=0.55, color="#ff7f0e",
           label="after (non-zero channels)")
    ax.set_xticks(xs, [_short(lay.name) for lay in layers], rotation=90, fontsize=6 if len(layers) > 30 else 8)
    ax.set_ylabel("input channels")
    ax.set_title(title or f"channels per conv: {report.group_sparsity:.1f}% groups, "
                          f"{report.param_sparsity:.1f}% parameters zero", fontsize=10)
    ax.legend(fontsize="small")
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)


def _short(name: str) -> str:
    return name.removeprefix("backbone.")


def plot_sparsity_curve(records: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Group and parameter sparsity (%) against epoch, from ``sparsity.jsonl`` records (Fig. 4c)."""
    rows = [r for r in records if "epoch" in r and "group_sparsity" in r]
    if not rows:
        raise ConfigError("nothing to plot: no sparsity records with 'epoch' and 'group_sparsity'")
    plt = _pyplot()
    epochs = [r["epoch"] for r in rows]
    controlled = all("lambda" in r for r in rows)
    fig, axes = plt.subplots(1, 2 if controlled else 1, figsize=(11.0 if controlled else 6.0, 4.0), squeeze=False)
    ax = axes[0][0]
    ax.plot(epochs, [r["group_sparsity"] for r in rows], marker="o", label="% group sparsity (input channels)")
    if all("param_sparsity" in r for r in rows):
        ax.plot(epochs, [r["param_sparsity"] for r in rows], marker="s", label="% parameter sparsity")
    if all("lasso_group_sparsity" in r for r in rows) and any(r.get("grouping") == "coupled" for r in rows):
        ax.plot(epochs, [r["lasso_group_sparsity"] for r in rows], marker="^", label="% coupled groups zero")
    if all("removable_macs_share" in r for r in rows):
        ax.plot(epochs, [100 * r["removable_macs_share"] for r in rows], marker="d", label="% MACs removable")
    ax.set(xlabel="epoch", ylabel="sparsity (%)", title="sparsity during training", ylim=(-2, 102))
    _epoch_axis(ax, epochs)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    if controlled:
        ax = axes[0][1]
        lams = [r["lambda"] for r in rows]
        ax.plot(epochs, lams, marker="o", color="tab:red")
        if any(v > 0 for v in lams):
            ax.set_yscale("symlog", linthresh=min(v for v in lams if v > 0))
        ax.set(xlabel="epoch", ylabel="lambda (end of epoch)", title="group-lasso strength (controller)")
        _epoch_axis(ax, epochs)
        ax.grid(True, alpha=0.3)
    return _save(fig, path)


def _epoch_axis(ax: Any, epochs: Sequence[int]) -> None:
    """Whole-number epoch ticks (a single epoch would otherwise get a 0.96-1.04 axis)."""
    ax.set_xticks(list(epochs) if len(epochs) <= 12 else ax.get_xticks())
    if len(epochs) == 1:
        ax.set_xlim(epochs[0] - 1, epochs[0] + 1)


def plot_delta_vs_macs(series: Mapping[str, Sequence[tuple[float, float]]], path: str | Path,
                       title: str = "Delta_T against MACs ratio") -> Path:
    """Delta_T (%) against the slim MACs ratio, one line per series (e.g. per grouping)."""
    if not any(series.values()):
        raise ConfigError("nothing to plot: no (MACs ratio, Delta_T) points")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    for label, points in series.items():
        pts = sorted(points)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set(xlabel="MACs ratio (slim / dense)", ylabel="Delta_T vs dense (%)", title=title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_metric_curves(records: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Validation metrics against epoch from ``metrics.jsonl``: one row per task, one panel per metric."""
    rows = [r for r in records if r.get("val")]
    if not rows:
        raise ConfigError("nothing to plot: no epoch in metrics.jsonl has validation metrics")
    tasks: dict[str, list[str]] = {}
    for r in rows:
        for task, metrics in r["val"].items():
            names = tasks.setdefault(task, [])
            names.extend(m for m in metrics if m not in names)
    # Drop per-item breakdowns (``accuracy_has_sphere`` beside ``accuracy``): one panel per metric.
    tasks = {t: [m for m in names if not any(m.startswith(f"{o}_") for o in names if o != m)]
             for t, names in tasks.items()}
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    ncols = max(len(names) for names in tasks.values())
    fig, axes = plt.subplots(len(tasks), ncols, figsize=(2.6 * ncols + 0.6, 2.2 * len(tasks) + 0.4), squeeze=False)
    for i, (task, names) in enumerate(tasks.items()):
        for j in range(ncols):
            ax = axes[i][j]
            if j >= len(names):
                ax.axis("off")
                continue
            pts = [(r["epoch"], r["val"][task][names[j]]) for r in rows if names[j] in r["val"].get(task, {})]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".")
            ax.set_title(f"{task}.{names[j]}", fontsize=8)
            epochs = sorted({p[0] for p in pts})
            if len(epochs) <= 8:
                ax.set_xticks(epochs)
            else:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.tick_params(labelsize=7)
            ax.grid(True, alpha=0.3)
    fig.suptitle("validation metrics per epoch", fontsize=10)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.08, top=1 - 0.5 / fig.get_figheight(), wspace=0.45, hspace=0.55)
    return _save(fig, path, tight=False)


def plot_sweep(rows: Sequence[Mapping[str, Any]], headline: Mapping[str, str], metrics_path: str | Path,
               sparsity_path: str | Path) -> tuple[Path, Path]:
    """Fig. 4a (each task's headline metric, mean +- std) and 4b (sparsity) against lambda.

    ``rows`` are ``SweepRow.to_dict()`` mappings; lambdas sit at even spacing, as in the paper.
    """
    if not rows:
        raise ConfigError("nothing to plot: the sweep has no rows")
    plt = _pyplot()
    xs = list(range(len(rows)))
    labels = [f"MACs {r['target_macs']:g}" if r.get("target_macs") is not None else f"{r['lam']:g}" for r in rows]
    fig, axes = plt.subplots(1, len(headline), figsize=(3.2 * len(headline) + 0.5, 3.4), squeeze=False)
    for ax, (task, metric) in zip(axes[0], headline.items()):
        key = f"{task}.{metric}"
        mean = [r["metrics"].get(key, {}).get("mean", math.nan) for r in rows]
        std = [r["metrics"].get(key, {}).get("std", 0.0) for r in rows]
        ax.errorbar(xs, mean, yerr=std, marker="o", capsize=3)
        ax.set_title(key, fontsize=9)
        ax.set_xticks(xs, labels, rotation=45, fontsize=7)
        ax.set_xlabel("lambda")
        ax.grid(True, alpha=0.3)
    fig.suptitle("task performance against lambda", fontsize=10)
    first = _save(fig, metrics_path)

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for key, marker, label in (("group_sparsity", "o", "% group sparsity"), ("param_sparsity", "s", "% parameter sparsity")):
        ax.errorbar(xs, [r[key]["mean"] for r in rows], yerr=[r[key]["std"] for r in rows], marker=marker,
                    capsize=3, label=label)
    ax.set_xticks(xs, labels, rotation=45, fontsize=8)
    ax.set(xlabel="lambda", ylabel="sparsity (%)", title="sparsity against lambda", ylim=(-2, 102))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return first, _save(fig, sparsity_path)


# --------------------------------------------------------------------------- a run folder
@dataclass(frozen=True)
class RunPlots:
    """The figures drawn for a run folder or a checkpoint."""

    source: str
    out_dir: str
    checkpoint: str | None
    files: tuple[str, ...]
    group_sparsity: float | None
    param_sparsity: float | None
    epochs: int

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "files": list(self.files)}


def channel_report(checkpoint: str | Path) -> SparsityReport:
    """Per-layer sparsity of a checkpoint's grouped convs (the scope it was trained with)."""
    from mtlexport.sparsity.stats import sparsity_report
    from mtlexport.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    scope = (ckpt.config.get("optimizer") or {}).get("group_scope", "backbone")
    return sparsity_report(ckpt.build_model(), scope)


def plot_run(source: str | Path, out_dir: str | Path | None = None) -> RunPlots:
    """Draw Fig. 3 (from best.pt, else last.pt), Fig. 4c (sparsity.jsonl) and the metric curves
    (metrics.jsonl) of a run folder into ``out_dir`` (default ``RUN/plots``); a checkpoint file
    gives Fig. 3 only (default folder: beside it)."""
    src = Path(source)
    if src.is_file():
        ckpt: Path | None = src
        run: Path | None = None
        out = Path(out_dir) if out_dir is not None else src.parent / "plots"
    elif src.is_dir():
        present = [name for name in RUN_FILES if (src / name).is_file()]
        if not present and (src / "summary.json").is_file():
            raise CheckpointError(f"{src} holds a sweep, not a run; plot one of its runs, e.g. {src}/lam_0/trial_0 "
                                  "(the sweep's own figures are already in that folder)")
        if not present:
            raise CheckpointError(f"{src} is not a run folder (none of {', '.join(RUN_FILES)}); "
                                  "pass a folder written by 'mtlexport train' or a checkpoint .pt")
        run = src
        ckpt = next((src / n for n in ("best.pt", "last.pt") if (src / n).is_file()), None)
        out = Path(out_dir) if out_dir is not None else src / "plots"
    else:
        raise CheckpointError(f"{src} does not exist; pass a run folder or a checkpoint .pt")
    files: list[Path] = []
    group = param = None
    if ckpt is not None:
        report = channel_report(ckpt)
        group, param = report.group_sparsity, report.param_sparsity
        files.append(plot_channels(report, out / "channels.png",
                                   title=f"{ckpt.name}: {group:.1f}% groups, {param:.1f}% parameters zero"))
    epochs = 0
    if run is not None:
        if (run / "sparsity.jsonl").is_file():
            records = read_jsonl(run / "sparsity.jsonl")
            if records:
                files.append(plot_sparsity_curve(records, out / "sparsity_epochs.png"))
        if (run / "metrics.jsonl").is_file():
            records = read_jsonl(run / "metrics.jsonl")
            epochs = len(records)
            if any(r.get("val") for r in records):
                files.append(plot_metric_curves(records, out / "val_metrics.png"))
    return RunPlots(str(src), str(out), str(ckpt) if ckpt else None, tuple(str(f) for f in files),
                    group, param, epochs)
