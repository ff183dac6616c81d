"""Figures of the method comparison: Delta_T against measured latency, DiSparse mask IoU per layer
(matplotlib is imported only when one is drawn)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from mtlexport.errors import ConfigError
from mtlexport.sparsity.plots import _pyplot, _save

__all__ = ["plot_delta_vs_latency", "plot_mask_iou"]


def plot_delta_vs_latency(series: Mapping[str, Sequence[tuple[float, float]]], path: str | Path,
                          title: str = "Delta_T against latency (ORT CPU, batch 1)") -> Path:
    """Delta_T (%) against latency (ms), one marker set per method."""
    if not any(series.values()):
        raise ConfigError("nothing to plot: no (latency, Delta_T) points")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    for label, points in series.items():
        ax.scatter([p[0] for p in points], [p[1] for p in points], label=label)
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set(xlabel="latency (ms)", ylabel="Delta_T vs dense (%)", title=title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_mask_iou(series: Mapping[str, Mapping[str, float]], path: str | Path) -> Path:
    """Layer-wise IoU of the task masks over shared units (DiSparse Fig. 3: where it drops sharply
    is the "watershed" layer), one line per run, layers in model order."""
    if not any(series.values()):
        raise ConfigError("nothing to plot: no layer-wise mask IoU")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    for label, ious in series.items():
        ax.plot(range(1, len(ious) + 1), list(ious.values()), marker=".", label=label)
    ax.set(xlabel="layer (shared units, model order)", ylabel="IoU of the task masks", ylim=(0.0, 1.05),
           title="DiSparse: agreement of the task masks per layer")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)
