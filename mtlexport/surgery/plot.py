"""Per-layer channel chart (before / after bars, like the paper's Fig. 3); matplotlib is lazy."""

from __future__ import annotations

from pathlib import Path

from mtlexport.io import atomic_path
from mtlexport.surgery.report import SlimReport


def plot_channels(report: SlimReport, path: str | Path) -> Path:
    """Write a PNG with the output channels of every conv / linear layer before and after."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    layers = list(report.layers)
    xs = range(len(layers))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.12 * len(layers) + 2), 4.0))
    ax.bar(xs, [layer.out_before for layer in layers], color="#c8c8c8", label="dense", width=0.9)
    ax.bar(xs, [layer.out_after for layer in layers], color="#1f77b4", label="slim", width=0.9)
    ax.set_xlabel("layer (module order)")
    ax.set_ylabel("output channels")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ratio = report.params_after / report.params_before if report.params_before else 1.0
    ax.set_title(f"channels per layer: {report.removed} removed, params x{ratio:.2f}\n"
                 f"{report.group_sparsity:.0%} zero groups, {report.realised:.0%} of input channels removed",
                 fontsize=9)
    if len(layers) <= 40:
        ax.set_xticks(list(xs), [layer.name for layer in layers], rotation=90, fontsize=6)
    ax.legend()
    fig.tight_layout()
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return target
