"""Sparsifiers compared at one target: ``compare_methods`` (``mtlexport sweep --methods``).

Every method (``mtlexport.sparsity.methods.SPARSIFIERS``) trains the same config, data and
seeds into ``OUT/<method>_<structure>/trial_<k>``, and the dense model (the config without a
sparsifier; a proximal optimizer at lambda 0, which is AdamW) into ``OUT/dense/trial_<k>``. Each
channel-level ``best.pt`` is slimmed (``best.slim.pt``: the MACs and parameter ratios are the
surgeon's); every deployed model and the dense one are exported to validated ONNX
(``onnx/``) and measured on ONNX Runtime CPU against the dense model in alternating rounds.
Element-wise rows keep the dense architecture: their MACs ratio is 1 and their latency is the
dense latency measured again (no sparse kernels, no speed-up claimed).

Writes ``summary.json`` (``rows``: one per method and trial, dense included), ``summary.csv``,
``summary.md`` (the table),
``delta_vs_macs.png``, ``delta_vs_latency.png`` and, with DiSparse, ``disparse_mask_iou.png``.
Delta_T (AdapMTL eq. 7) is against the mean of the dense trials. An interrupted comparison
continues: finished runs, slimmed checkpoints and exports are reused; latencies are always
measured again, side by side in this process.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from mtlexport.errors import ConfigError
from mtlexport.io import write_json, write_text
from mtlexport.reporting import NullReporter, Reporter
from mtlexport.train.config import TrainConfig, resolve_config
from mtlexport.train.sparsifier_config import SparsifierConfig

__all__ = ["MethodRow", "MethodsResult", "compare_methods", "method_config"]

SUMMARY_CSV, SUMMARY_JSON, SUMMARY_MD = "summary.csv", "summary.json", "summary.md"
DELTA_MACS_PLOT, DELTA_LATENCY_PLOT, IOU_PLOT = "delta_vs_macs.png", "delta_vs_latency.png", "disparse_mask_iou.png"
DENSE = "dense"


@dataclass(frozen=True)
class MethodRow:
    """One method and trial: what it deploys and how it scores against the dense model."""

    method: str
    structure: str  # channel, element, or dense
    trial: int
    seed: int
    run_dir: str
    deployed: str  # the checkpoint exported and measured (best.slim.pt, best.pt)
    macs_ratio: float  # deployed / dense MACs per sample
    params_ratio: float
    sparsity: float  # % exactly-zero weights among the conv / linear weights of best.pt
    delta_t: float | None
    delta_per_task: dict[str, float]
    latency_ms: float
    dense_latency_ms: float  # the dense model in the same comparison
    speedup: float  # dense latency / this latency
    metrics: dict[str, float]  # task.metric
    reused: bool  # trained by an earlier, interrupted comparison

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MethodsResult:
    """A finished comparison (see the module docstring)."""

    out_dir: str
    split: str
    structure: str
    target_macs: float | None
    target_sparsity: float | None
    trials: int
    headline: dict[str, str]
    higher_is_better: dict[str, bool]
    rows: tuple[MethodRow, ...]
    bench: dict[str, Any]
    files: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"out_dir": self.out_dir, "split": self.split, "structure": self.structure,
                "target_macs": self.target_macs, "target_sparsity": self.target_sparsity, "trials": self.trials,
                "headline": self.headline, "higher_is_better": self.higher_is_better,
                "rows": [r.to_dict() for r in self.rows], "table": self.table(), "bench": self.bench,
                "files": list(self.files)}

    def table(self) -> list[dict[str, Any]]:
        """One entry per method: means (and sample std) over its trials."""
        out = []
        for method, structure in dict.fromkeys((r.method, r.structure) for r in self.rows):
            rows = [r for r in self.rows if r.method == method and r.structure == structure]
            entry: dict[str, Any] = {"method": method, "structure": structure, "trials": len(rows)}
            for key in ("macs_ratio", "params_ratio", "sparsity", "delta_t", "latency_ms", "speedup"):
                entry[key] = _mean_std([getattr(r, key) for r in rows])
            for key in self.headline_keys():
                entry[key] = _mean_std([r.metrics.get(key) for r in rows])
            for task in self.headline:
                entry[f"delta_{task}"] = _mean_std([r.delta_per_task.get(task) for r in rows])
            out.append(entry)
        return out

    def headline_keys(self) -> list[str]:
        return [f"{t}.{m}" for t, m in self.headline.items()]

    def markdown(self) -> str:
        """The paper-style table as Markdown (``summary.md``): means over trials (+- std)."""
        def cell(value: dict[str, float] | None, fmt: str, std: bool = True) -> str:
            if not value:
                return "-"
            text = fmt.format(value["mean"])
            return text + (" ± " + fmt.format(value["std"]) if std and value["n"] > 1 else "")

        arrows = {t: "↑" if self.higher_is_better.get(t, True) else "↓" for t in self.headline}
        heads = [f"{t} {m} {arrows[t]}" for t, m in self.headline.items()]
        lines = ["| method | " + " | ".join(heads) + " | MACs ratio | params ratio | % weights zero | "
                 "Delta_T (%) | ORT CPU ms | speed-up |",
                 "|---|" + "---|" * (len(heads) + 6)]
        for e in self.table():
            label = e["method"] if e["method"] == DENSE else f"{e['method']} ({e['structure']})"
            cells = [cell(e[k], "{:.4f}") for k in self.headline_keys()]
            cells += [cell(e["macs_ratio"], "{:.3f}", False), cell(e["params_ratio"], "{:.3f}", False),
                      cell(e["sparsity"], "{:.1f}", False), cell(e["delta_t"], "{:+.2f}"),
                      cell(e["latency_ms"], "{:.2f}", False), cell(e["speedup"], "{:.2f}x", False)]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def csv_text(self) -> str:
        """``summary.csv``: the columns of ``rows`` (metrics and per-task Delta_T flattened)."""
        keys = sorted({k for r in self.rows for k in r.metrics})
        tasks = list(self.headline)
        header = ["method", "structure", "trial", "seed", "macs_ratio", "params_ratio", "sparsity", "delta_t",
                  *[f"delta_{t}" for t in tasks], "latency_ms", "dense_latency_ms", "speedup", "run_dir",
                  "deployed", *keys]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        for r in self.rows:
            writer.writerow([r.method, r.structure, r.trial, r.seed, r.macs_ratio, r.params_ratio, r.sparsity,
                             "" if r.delta_t is None else r.delta_t, *[r.delta_per_task.get(t, "") for t in tasks],
                             r.latency_ms, r.dense_latency_ms, r.speedup, r.run_dir, r.deployed,
                             *[r.metrics.get(k, "") for k in keys]])
        return buf.getvalue()


def _mean_std(values: Sequence[float | None]) -> dict[str, float] | None:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return None
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return {"mean": mean, "std": std, "n": float(len(vals))}


# ----------------------------------------------------------------------------- configs
def dense_config(config: TrainConfig, seed: int) -> TrainConfig:
    """The dense baseline: no sparsifier, no group lasso (a proximal optimizer at lambda 0 is AdamW)."""
    opt = config.optimizer
    if opt.name != "adamw":
        opt = replace(opt, lam=0.0, target_macs=None, target_group_sparsity=None)
    return replace(config, optimizer=opt, sparsifier=SparsifierConfig(), train=replace(config.train, seed=seed))


def method_config(config: TrainConfig, method: str, structure: str, seed: int, *, target_macs: float | None,
                  target_sparsity: float | None, init_from: str | None = None) -> TrainConfig:
    """``config`` trained by ``method`` at the target. ``config.sparsifier`` supplies the DiSparse
    ``variant`` / ``arbiter``, the ``scope`` and ``target_at``; its ``options`` map method names to
    their options (``--set sparsifier.options.disparse.batches=20``)."""
    base = config.sparsifier
    options = base.options.get(method, {})
    if not isinstance(options, dict):
        raise ConfigError(f"sparsifier.options.{method} must be a mapping of that method's options")
    opt = config.optimizer
    if method != "group_lasso" and opt.name != "adamw":
        opt = replace(opt, name="adamw", lam=0.0, target_macs=None, target_group_sparsity=None)
    if method == "group_lasso":
        structure = "channel"
        if target_macs is None:
            raise ConfigError("group_lasso needs the MACs target (--target-macs); it has no element-wise form")
    sp = SparsifierConfig(
        name=method, structure=structure, variant=base.variant, arbiter=base.arbiter,
        init_from=init_from if method == "disparse" and base.variant == "pretrained" else None, scope=base.scope,
        target_macs=target_macs if structure == "channel" else None,
        target_sparsity=target_sparsity if structure == "element" else None, target_at=base.target_at,
        options=dict(options))
    return replace(config, optimizer=opt, sparsifier=sp, train=replace(config.train, seed=seed))


# ----------------------------------------------------------------------------- the comparison
def compare_methods(
    config: TrainConfig,
    methods: Sequence[str],
    out_dir: str | Path,
    *,
    target_macs: float,
    structure: str = "channel",
    target_sparsity: float | None = None,
    trials: int = 1,
    duration_s: float = 2.0,
    rounds: int = 4,
    threads: int | None = 1,
    plots: bool = True,
    reporter: Reporter | None = None,
) -> MethodsResult:
    """Train, slim, export and benchmark every method against the dense model (module docstring).

    Element-wise runs (``structure="element"``) aim for ``target_sparsity`` (default
    ``1 - target_macs``: the same share of weights as of MACs); group_lasso always runs channel-level.
    """
    from mtlexport.sparsity.methods import SPARSIFIERS
    from mtlexport.tasks import build_tasks, delta_score
    from mtlexport.train.loop import LAST, train
    from mtlexport.train.sweep import run_finished

    names = list(dict.fromkeys(m.strip() for m in methods if m.strip()))
    if not names:
        raise ConfigError("--methods needs at least one sparsifier, e.g. group_lasso,disparse,adapmtl")
    for name in names:
        SPARSIFIERS.get(name)
    if not 0 < target_macs < 1:
        raise ConfigError(f"--target-macs must be a MACs ratio strictly between 0 and 1, got {target_macs}")
    if structure not in ("channel", "element"):
        raise ConfigError(f"--structure must be channel or element, got {structure!r}")
    if trials < 1:
        raise ConfigError(f"--trials must be a positive integer, got {trials}")
    sparsity = target_sparsity if target_sparsity is not None else 1.0 - target_macs
    reporter = reporter or NullReporter()
    out = Path(out_dir)
    tasks = build_tasks(resolve_config(config).model)
    seeds = [config.train.seed + k for k in range(trials)]

    def run(cfg: TrainConfig, folder: Path, what: str) -> tuple[Any, bool]:
        reused = run_finished(folder, cfg.train.epochs)
        reporter.message(f"{what}: " + ("finished earlier, reusing" if reused else f"training into {folder}"))
        return train(cfg, folder, resume=(folder / LAST).is_file(), reporter=reporter), reused

    plan = [(DENSE, "dense")] + [(m, "channel" if m == "group_lasso" else structure) for m in names]
    reporter.start("compare", "methods", total=len(plan) * trials)
    trained: dict[tuple[str, int], tuple[Any, bool, str]] = {}
    for k, seed in enumerate(seeds):
        folder = out / DENSE / f"trial_{k}"
        result, reused = run(dense_config(config, seed), folder, f"dense trial {k + 1}/{trials}")
        trained[(DENSE, k)] = (result, reused, "dense")
        reporter.advance("compare")
    for method, struct in plan[1:]:
        for k, seed in enumerate(seeds):
            dense_best = str(out / DENSE / f"trial_{k}" / "best.pt")
            cfg = method_config(config, method, struct, seed, target_macs=target_macs, target_sparsity=sparsity,
                                init_from=dense_best)
            folder = out / f"{method}_{struct}" / f"trial_{k}"
            result, reused = run(cfg, folder, f"{method} ({struct}) trial {k + 1}/{trials}")
            trained[(method, k)] = (result, reused, struct)
            reporter.advance("compare")
    reporter.finish("compare")

    split = "test" if all(r.test_metrics for r, _, _ in trained.values()) else "val"
    dense_means = _mean_metrics([trained[(DENSE, k)][0] for k in range(trials)], split)
    settings = _bench_settings(duration_s, threads)
    dense_export = _export(Path(trained[(DENSE, 0)][0].best_checkpoint), out / DENSE / "trial_0" / "onnx", reporter)
    rows = []
    for (method, k), (result, reused, struct) in trained.items():
        best = Path(result.best_checkpoint)
        deployed, macs_ratio, params_ratio = _deploy(best, struct, reporter)
        export = dense_export if method == DENSE and k == 0 else _export(deployed, best.parent / "onnx", reporter)
        reporter.message(f"timing {method} trial {k + 1} against dense on ONNX Runtime CPU")
        bench = _compare(dense_export, export, settings, rounds)
        metrics = _flat(result.test_metrics if split == "test" else result.best_metrics)
        delta = delta_score(tasks, _nest(metrics), dense_means)
        rows.append(MethodRow(
            method=method, structure=struct, trial=k, seed=seeds[k], run_dir=result.run_dir, deployed=str(deployed),
            macs_ratio=macs_ratio, params_ratio=params_ratio, sparsity=_zero_share(best), delta_t=delta.get("overall"),
            delta_per_task={t: v for t, v in delta.items() if t != "overall"}, latency_ms=bench[1],
            dense_latency_ms=bench[0], speedup=bench[0] / bench[1], metrics=metrics, reused=reused))
    headline = {name: task.primary_metric for name, task in tasks.items()}
    higher = {name: task.metrics[task.primary_metric] for name, task in tasks.items()}
    result = MethodsResult(str(out), split, structure, target_macs, sparsity if structure == "element" else None,
                           trials, headline, higher, tuple(rows), {**settings.to_dict(), "rounds": rounds})
    files = [write_text(out / SUMMARY_CSV, result.csv_text()), write_text(out / SUMMARY_MD, result.markdown())]
    if plots:
        files += _plots(result, out)
    result = replace(result, files=tuple(str(f) for f in [*files, out / SUMMARY_JSON]))
    write_json(out / SUMMARY_JSON, result.to_dict())
    return result


# ----------------------------------------------------------------------------- pieces
def _bench_settings(duration_s: float, threads: int | None) -> Any:
    from mtlexport.bench import BenchSettings

    return BenchSettings(warmup_ms=200.0, duration_s=duration_s, iterations=20, threads=threads)


def _fresh(target: Path, source: Path) -> bool:
    return target.exists() and target.stat().st_mtime >= source.stat().st_mtime


def _deploy(best: Path, structure: str, reporter: Reporter) -> tuple[Path, float, float]:
    """(checkpoint to deploy, MACs ratio, parameter ratio): channel runs are slimmed."""
    if structure != "channel":
        return best, 1.0, 1.0
    from mtlexport.surgery import slim_checkpoint
    from mtlexport.train.checkpoint import load_checkpoint

    slim = best.with_name("best.slim.pt")
    if _fresh(slim, best):
        report = load_checkpoint(slim).extra.get("slim") or {}
        if "macs_after" in report:
            return slim, report["macs_after"] / report["macs_before"], report["params_after"] / report["params_before"]
    reporter.message(f"slimming {best}")
    rep = slim_checkpoint(best, slim)
    return slim, rep.macs_after / rep.macs_before, rep.params_after / rep.params_before


def _export(checkpoint: Path, folder: Path, reporter: Reporter) -> Path:
    """A validated ONNX export of ``checkpoint`` into ``folder`` (reused when newer than it)."""
    from mtlexport.export import ExportOptions, export_model

    if _fresh(folder / "manifest.json", checkpoint) and (folder / "model.onnx").is_file():
        return folder
    reporter.message(f"exporting {checkpoint} to ONNX")
    export_model(checkpoint, folder, ExportOptions(engine=False), reporter=None)
    return folder


def _compare(dense: Path, candidate: Path, settings: Any, rounds: int) -> tuple[float, float]:
    """(dense, candidate) median latency in ms, batch 1, measured in alternating rounds."""
    from mtlexport.bench import compare

    report = compare(dense, candidate, backend="ort", batches="1", settings=settings, rounds=rounds)
    c = report.comparisons[0]
    return float(c.baseline_latency_ms), float(c.candidate_latency_ms)


def _zero_share(path: Path) -> float:
    """% exactly-zero weights among the convolution and linear weights of a checkpoint."""
    from mtlexport.train.checkpoint import load_checkpoint

    state = load_checkpoint(path).state_dict
    zero = total = 0
    for key, t in state.items():
        if key.endswith(".weight") and t.dim() in (2, 4):
            zero += int((t == 0).sum())
            total += t.numel()
    return 100.0 * zero / max(total, 1)


def _flat(metrics: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    from mtlexport.train.results import flatten_metrics

    return dict(flatten_metrics(metrics))


def _nest(flat: Mapping[str, float]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for key, value in flat.items():
        task, _, metric = key.partition(".")
        out.setdefault(task, {})[metric] = value
    return out


def _mean_metrics(results: Sequence[Any], split: str) -> dict[str, dict[str, float]]:
    values: dict[str, list[float]] = {}
    for r in results:
        for key, v in _flat(r.test_metrics if split == "test" else r.best_metrics).items():
            values.setdefault(key, []).append(v)
    return _nest({k: sum(v) / len(v) for k, v in values.items()})


def _plots(result: MethodsResult, out: Path) -> list[Path]:
    from mtlexport.sparsity.methods.plots import plot_delta_vs_latency, plot_mask_iou
    from mtlexport.sparsity.plots import plot_delta_vs_macs

    series: dict[str, list[tuple[float, float]]] = {}
    latency: dict[str, list[tuple[float, float]]] = {}
    for r in result.rows:
        if r.delta_t is None:
            continue
        label = r.method if r.method == DENSE else f"{r.method} ({r.structure})"
        series.setdefault(label, []).append((r.macs_ratio, r.delta_t))
        latency.setdefault(label, []).append((r.latency_ms, r.delta_t))
    files = []
    if series:
        files.append(plot_delta_vs_macs(series, out / DELTA_MACS_PLOT, title="Delta_T against MACs ratio"))
        files.append(plot_delta_vs_latency(latency, out / DELTA_LATENCY_PLOT))
    ious = {}
    for r in result.rows:
        if r.method == "disparse":
            from mtlexport.train.checkpoint import load_checkpoint

            iou = (load_checkpoint(Path(r.run_dir) / "best.pt").extra.get("sparsifier") or {}).get("iou") or {}
            if iou:
                ious[f"trial {r.trial}"] = iou
    if ious:
        files.append(plot_mask_iou(ious, out / IOU_PLOT))
    return files
