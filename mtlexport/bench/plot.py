"""Latency and throughput against batch size (matplotlib Agg, imported lazily)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from mtlexport.bench.results import BenchReport, BenchResult
from mtlexport.errors import ConfigError
from mtlexport.io import atomic_path


def plot_report(path: str | Path, report: BenchReport) -> Path:
    """Two panels, one line per model/backend: median latency (p90-p99 band) and images/s."""
    if not report.results:
        raise ConfigError("nothing to plot: the report has no results")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    series: dict[str, list[BenchResult]] = defaultdict(list)
    for r in report.results:
        series[f"{r.label} ({r.backend}, {r.device})"].append(r)
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
    ax_thr.legend(fontsize="small")
    fig.tight_layout()
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format=target.suffix.lstrip(".") or "png", dpi=120)
    plt.close(fig)
    return target
