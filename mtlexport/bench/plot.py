"""Latency and throughput against batch size (matplotlib Agg, imported lazily)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from mtlexport.bench.results import BenchReport, BenchResult
from mtlexport.errors import ConfigError
from mtlexport.io import atomic_path


def plot_report(path: str | Path, report: BenchReport) -> Path:
    """Two panels, one line per model/backend: median latency (p90-p99 band) and images/s, with
    one legend below both panels (the same colour is the same model in each)."""
    fig = latency_figure(report)
    from matplotlib import pyplot as plt

    target = Path(path)
    try:
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=target.suffix.lstrip(".") or "png", dpi=120)
    finally:
        plt.close(fig)
    return target


def latency_figure(report: BenchReport) -> Any:
    """The matplotlib figure ``plot_report`` saves."""
    if not report.results:
        raise ConfigError("nothing to plot: the report has no results")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    compared = report.metadata.get("compare") or {}
    roles = {compared.get("baseline"): ", baseline", compared.get("candidate"): ", candidate"}
    series: dict[str, list[BenchResult]] = defaultdict(list)
    for r in report.results:
        series[f"{r.label} ({r.backend}, {r.device}{roles.get(r.label, '')})"].append(r)
    fig, (ax_lat, ax_thr) = plt.subplots(1, 2, figsize=(10, 4))
    for name, items in series.items():
        items = sorted(items, key=lambda r: r.batch)
        xs = [r.batch for r in items]
        (line,) = ax_lat.plot(xs, [r.latency.median for r in items], marker="o", label=name)
        ax_lat.fill_between(xs, [r.latency.p90 for r in items], [r.latency.p99 for r in items],
                            color=line.get_color(), alpha=0.15)
        ax_thr.plot(xs, [r.images_per_s for r in items], marker="o", label=name)
    ax_lat.set(xlabel="batch size", ylabel="latency per query (ms, median; band p90-p99)", title="Latency")
    ax_thr.set(xlabel="batch size", ylabel="images / s", title="Throughput")
    for ax in (ax_lat, ax_thr):
        ax.set_xscale("log", base=2)
        ax.grid(True, alpha=0.3)
    handles, labels = ax_lat.get_legend_handles_labels()
    columns = min(len(labels), 3)
    rows = -(-len(labels) // columns)
    fig.legend(handles, labels, loc="lower center", ncol=columns, fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, min(0.07 * rows, 0.4), 1, 1))  # room for the legend under both panels
    return fig
