"""The quick-start demo: dense vs group-sparse training, slimming, ONNX export, benchmark.

``run_demo(out_dir, DemoOptions(...))`` calls every stage's public function in turn and
returns a ``DemoResult``; nothing here re-implements a stage. Folder written::

    dense/, sparse/          training runs (adamw; proxadam with lambda), or the sample
                             checkpoints copied there as last.pt with ``skip_train``
    slim.pt                  the sparse checkpoint with its dead channels removed (verified)
    export_dense/, export_slim/   validated ONNX export folders (``mtlexport export``)
    summary.json             ``DemoResult.to_dict()``
    summary.md               the comparison table, stage times and settings
    latency.png, channels.png     latency / throughput per batch, channels per layer

Sample checkpoints are looked up beside the config: ``<stem>_dense.pt`` and
``<stem>_sparse.pt`` (``quick_dense.pt`` for ``quick.yaml``). The bundled ones are package data
(``mtlexport.sample_models``, the checkout's ``sample_models/`` folder), so an installed wheel
runs the demo too.
"""

from __future__ import annotations

import importlib.resources
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtlexport.errors import CheckpointError, ConfigError, OutputError
from mtlexport.io import check_output_dir, write_json, write_text
from mtlexport.reporting import NullReporter, Reporter

if TYPE_CHECKING:
    from mtlexport.bench import BenchReport, BenchSettings, Comparison
    from mtlexport.export import ExportOptions, ExportReport
    from mtlexport.surgery import SlimReport
    from mtlexport.train import EvalResult, TrainConfig, TrainResult

QUICK = "quick.yaml"
DEFAULT_TARGET = 0.5
MODELS = ("dense", "sparse", "slim")


@dataclass(frozen=True)
class DemoOptions:
    """What the demo trains and how it measures; validated on construction.

    ``config`` None is the bundled ``quick.yaml`` (``sample_dir()``). ``epochs`` None keeps the config's
    ``train.epochs`` (8 for the quick config: the sample checkpoints' recipe), a number replaces
    it for both runs. The sparse run uses coupled groups (every zero group is a channel slim
    removes) and, by default, lands on ``target_macs`` (slim / dense MACs: the sample
    checkpoints' recipe); ``lam`` instead fixes the group-lasso strength (no target). ``round_to`` keeps slimmed widths multiples of 8: ONNX
    Runtime's CPU convolutions work on blocks of 8 channels, and on the quick model odd widths
    left the slim model no faster than the dense one (0.87-0.99x for 1.3x fewer MACs, against
    1.24x with 8). ``exporter`` defaults to TorchScript (dynamo takes minutes on 2 CPU cores).
    Each model is timed for ``bench_seconds`` per backend and batch size, in alternating
    rounds with its counterpart, on ``threads`` CPU threads (one by default: stable on a
    shared machine; the demo reports ratios).
    """

    config: Path | None = None
    skip_train: bool = False
    force: bool = False
    resume: bool = False
    epochs: int | None = None
    lam: float | None = None
    target_macs: float | None = DEFAULT_TARGET
    round_to: int = 8
    exporter: str = "torchscript"
    backends: tuple[str, ...] = ("ort", "torch")
    batches: tuple[int, ...] = (1, 8)
    bench_seconds: float = 2.0
    threads: int | None = 1

    def __post_init__(self) -> None:
        if self.resume and self.force:
            raise ConfigError("--resume continues the demo in --out and --force starts it over; pass one of them")
        if self.epochs is not None and (isinstance(self.epochs, bool) or not isinstance(self.epochs, int)
                                        or self.epochs < 1):
            raise ConfigError(f"--epochs must be a positive integer, got {self.epochs!r}")
        if self.lam is not None and (isinstance(self.lam, bool) or not isinstance(self.lam, (int, float))
                                     or not self.lam > 0):
            raise ConfigError(f"--lambda must be a positive number (the group-lasso strength), got {self.lam!r}")
        if self.lam is not None and self.target_macs is not None:
            raise ConfigError("--lambda fixes the group-lasso strength and --target-macs lets it adapt; pass one")
        if self.target_macs is not None and (isinstance(self.target_macs, bool) or not 0 < self.target_macs < 1):
            raise ConfigError(f"--target-macs must be a MACs ratio strictly between 0 and 1, got {self.target_macs!r}")
        if self.lam is None and self.target_macs is None:
            raise ConfigError("the sparse run needs --target-macs or --lambda")
        if isinstance(self.round_to, bool) or not isinstance(self.round_to, int) or self.round_to < 1:
            raise ConfigError(f"--round-to must be a positive integer, got {self.round_to!r}")
        if self.bench_seconds < 0:
            raise ConfigError(f"--duration-s must be >= 0, got {self.bench_seconds!r}")
        if not self.backends:
            raise ConfigError("the demo needs at least one bench backend")
        from mtlexport.bench import RUNNERS, parse_batches

        for name in self.backends:
            RUNNERS.get(name)
        object.__setattr__(self, "batches", parse_batches(self.batches))
        self.export_options()
        self.bench_settings()

    @property
    def config_path(self) -> Path:
        return Path(self.config) if self.config is not None else sample_dir() / QUICK

    def sample_checkpoints(self) -> dict[str, Path]:
        """``{"dense": <dir>/<stem>_dense.pt, "sparse": <dir>/<stem>_sparse.pt}`` beside the config."""
        p = self.config_path
        return {kind: p.with_name(f"{p.stem}_{kind}.pt") for kind in ("dense", "sparse")}

    def export_options(self) -> ExportOptions:
        """The ``ExportOptions`` of both exports: a batch range covering every benched size."""
        from mtlexport.export import BatchRange, ExportOptions

        low, high = min(self.batches), max(self.batches)
        return ExportOptions(batch=BatchRange(low, high, high), exporter=self.exporter)

    def bench_settings(self) -> BenchSettings:
        """CPU ``BenchSettings``: short warm-up, ``bench_seconds`` per model and batch."""
        from mtlexport.bench import BenchSettings

        return BenchSettings(device="cpu", warmup_ms=100.0, duration_s=self.bench_seconds, iterations=10,
                             threads=self.threads)

    def to_dict(self) -> dict[str, Any]:
        return {"config": str(self.config_path), "skip_train": self.skip_train, "force": self.force,
                "resume": self.resume,
                "epochs": self.epochs,
                "lambda": self.lam, "target_macs": self.target_macs, "round_to": self.round_to, "exporter": self.exporter,
                "backends": list(self.backends), "batches": list(self.batches), "bench_seconds": self.bench_seconds,
                "threads": self.threads}


@dataclass(frozen=True)
class DemoResult:
    """Everything the demo produced: per-stage results (as the stages return them), times, files."""

    out_dir: Path
    options: DemoOptions
    checkpoints: dict[str, Path]
    lam: float
    recipe: str  # how the sparse model was trained, in words (its checkpoint's config)
    train: dict[str, TrainResult]
    evaluation: dict[str, EvalResult]
    slim: SlimReport
    exports: dict[str, ExportReport]
    bench: dict[str, BenchReport]
    stages: dict[str, float]
    total_s: float
    load_average: tuple[float, float, float]
    files: dict[str, Path] = field(default_factory=dict)
    notices: tuple[str, ...] = ()

    def comparisons(self) -> list[Comparison]:
        """Every ``Comparison`` (dense baseline, slim candidate), backend by backend."""
        return [c for report in self.bench.values() for c in report.comparisons]

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir), "options": self.options.to_dict(),
            "checkpoints": {k: str(v) for k, v in self.checkpoints.items()}, "lambda": self.lam, "recipe": self.recipe,
            "table": {"columns": list(TABLE_COLUMNS), "rows": summary_rows(self)},
            "train": {k: v.to_dict() for k, v in self.train.items()},
            "evaluation": {k: v.to_dict() for k, v in self.evaluation.items()},
            "slim": self.slim.to_dict(), "exports": {k: v.to_dict() for k, v in self.exports.items()},
            "bench": {k: v.to_dict() for k, v in self.bench.items()},
            "stages": dict(self.stages), "total_s": self.total_s, "load_average": list(self.load_average),
            "files": {k: str(v) for k, v in self.files.items()}, "notices": list(self.notices),
        }


def sample_dir() -> Path:
    """The folder of the bundled sample configs and checkpoints: the ``mtlexport.sample_models``
    package data of an installed wheel, else the checkout's ``sample_models/`` folder."""
    try:
        path = Path(str(importlib.resources.files("mtlexport.sample_models")))
        if (path / QUICK).is_file():
            return path
    except ModuleNotFoundError:
        pass
    checkout = Path(__file__).resolve().parents[1] / "sample_models"
    if (checkout / QUICK).is_file():
        return checkout
    raise ConfigError(f"the bundled sample models ({QUICK} and its checkpoints) are not installed; "
                      "reinstall mtlexport or pass --config FILE.yaml")


class _Stages:
    """Times each stage and reports it: a ``demo`` progress task plus one line per stage."""

    def __init__(self, names: list[str], reporter: Reporter) -> None:
        self.names, self.reporter = names, reporter
        self.seconds: dict[str, float] = {}
        self.start = time.perf_counter()

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        index = self.names.index(name) + 1
        self.reporter.advance("demo", 0, stage=name)
        tick = time.perf_counter()
        yield
        now = time.perf_counter()
        self.seconds[name] = round(now - tick, 3)
        self.reporter.advance("demo", 1, stage=name)
        self.reporter.message(f"[{index}/{len(self.names)}] {name}: {now - tick:.1f} s "
                              f"(elapsed {now - self.start:.0f} s)")


def run_demo(out_dir: str | Path, options: DemoOptions | None = None, *,
             reporter: Reporter | None = None) -> DemoResult:
    """Train (or reuse) dense and group-sparse models, slim, export and benchmark them; write
    ``summary.json``, ``summary.md`` and plots into ``out_dir`` (which must be new or empty,
    unless ``options.force`` replaces it or ``options.resume`` continues the demo in it: the
    trainings resume, the later stages, a minute at most, run again)."""
    from mtlexport.bench import compare, load_source
    from mtlexport.export import export_model
    from mtlexport.surgery import slim_checkpoint
    from mtlexport.train import evaluate_checkpoint

    options = options or DemoOptions()
    reporter = reporter or NullReporter()
    out = Path(out_dir)
    _check_out_dir(out, options.force or options.resume)
    configs = _configs(options) if not options.skip_train else {}
    samples = _check_samples(options) if options.skip_train else {}
    export_options, settings = options.export_options(), options.bench_settings()

    names = ["copy sample checkpoints"] if options.skip_train else ["train dense", "train sparse"]
    names += ["slim", "evaluate", "export dense", "export slim"]
    names += [f"bench {b}" for b in options.backends] + ["summary"]
    stage = _Stages(names, reporter)
    reporter.start("demo", "demo", total=len(names))
    try:
        ckpts: dict[str, Path] = {}
        train: dict[str, TrainResult] = {}
        if options.skip_train:
            with stage("copy sample checkpoints"):
                for kind, src in samples.items():
                    ckpts[kind] = out / kind / "last.pt"
                    ckpts[kind].parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, ckpts[kind])
        else:
            from mtlexport.train import train as train_run

            for kind, cfg in configs.items():
                with stage(f"train {kind}"):
                    # --resume: a finished run is reused as it is, an interrupted one continues.
                    train[kind] = train_run(cfg, out / kind, resume=options.resume, force=options.force,
                                            reporter=reporter)
                    ckpts[kind] = Path(train[kind].last_checkpoint)

        with stage("slim"):
            ckpts["slim"] = out / "slim.pt"
            slim = slim_checkpoint(ckpts["sparse"], ckpts["slim"], round_to=options.round_to, reporter=reporter)
        with stage("evaluate"):
            evaluation = {kind: evaluate_checkpoint(ckpts[kind], split="test", baselines=kind == "dense",
                                                    reporter=reporter) for kind in MODELS}
        exports = {}
        for kind in ("dense", "slim"):
            with stage(f"export {kind}"):
                exports[kind] = export_model(ckpts[kind], out / f"export_{kind}", export_options, reporter)

        bench = {}
        for backend in options.backends:
            with stage(f"bench {backend}"):
                if backend == "torch":
                    pair = [load_source(ckpts[k], label=k) for k in ("dense", "slim")]
                else:
                    pair = [load_source(exports[k].out_dir, label=k) for k in ("dense", "slim")]
                bench[backend] = compare(*pair, backend=backend, batches=options.batches, settings=settings,
                                         reporter=reporter)

        with stage("summary"):
            lam, recipe = _sparse_recipe(ckpts["sparse"])
            result = DemoResult(
                out_dir=out, options=options, checkpoints=ckpts, lam=lam, recipe=recipe, train=train,
                evaluation=evaluation, slim=slim, exports=exports, bench=bench, stages={}, total_s=0.0,
                load_average=_load_average(), notices=_notices(slim),
            )
            for text in result.notices:
                reporter.message(text)
            files = _write_plots(out, result)
        stages = dict(stage.seconds)
        result = replace(result, stages=stages, total_s=round(time.perf_counter() - stage.start, 3),
                         files={**files, "summary.md": out / "summary.md", "summary.json": out / "summary.json"})
        write_text(out / "summary.md", summary_markdown(result))
        write_json(out / "summary.json", result.to_dict())
        return result
    finally:
        reporter.finish("demo")


# ------------------------------------------------------------------ checks before any work
def _check_out_dir(out: Path, force: bool) -> None:
    check_output_dir(out)
    if out.is_dir() and any(out.iterdir()) and not force:
        raise OutputError(f"--out {out} is not empty; pass --force to replace the demo's files there, "
                          "or choose a new folder")


def _configs(options: DemoOptions) -> dict[str, TrainConfig]:
    """The dense (adamw) and sparse (proxadam, lambda) training configs, ``epochs`` each."""
    from mtlexport.train import TrainConfig

    base = TrainConfig.from_file(options.config_path)
    dense_opt = replace(base.optimizer, name="adamw", lam=0.0, target_macs=None, target_group_sparsity=None)
    sparse_opt = replace(base.optimizer, name="proxadam", grouping="coupled", lam=float(options.lam or 0.0),
                         target_macs=options.target_macs, target_group_sparsity=None)
    train = replace(base.train, epochs=options.epochs or base.train.epochs)
    return {"dense": replace(base, train=train, optimizer=dense_opt),
            "sparse": replace(base, train=train, optimizer=sparse_opt)}


def _check_samples(options: DemoOptions) -> dict[str, Path]:
    samples = options.sample_checkpoints()
    missing = [str(p) for p in samples.values() if not p.is_file()]
    if missing:
        raise CheckpointError(f"--skip-train needs the sample checkpoints {' and '.join(missing)}; "
                              "run 'mtlexport demo' without --skip-train to train them")
    return samples


def _sparse_recipe(path: Path) -> tuple[float, str]:
    """The sparse run's (starting) lambda and its recipe in words, from its checkpoint's config."""
    from mtlexport.train import load_checkpoint

    optimizer = load_checkpoint(path).config.get("optimizer") or {}
    lam = float(optimizer.get("lambda", 0.0) or 0.0)
    grouping = optimizer.get("grouping", "channel")
    if optimizer.get("target_macs") is not None:
        return lam, f"{grouping} groups, MACs target {float(optimizer['target_macs']):g}"
    return lam, f"{grouping} groups, lambda {lam:g}"


def _load_average() -> tuple[float, float, float]:
    """1, 5 and 15 minute load averages (zeros where the OS has none): timings depend on them."""
    return os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)


def _notices(slim: SlimReport) -> tuple[str, ...]:
    if slim.removed == 0:
        return ("no channel was removable: the sparse model has no dead channel group; "
                "lower --target-macs, raise --lambda or --epochs",)
    return ()


def _write_plots(out: Path, result: DemoResult) -> dict[str, Path]:
    """latency.png, and channels.png: the figure ``mtlexport plot`` draws for the sparse checkpoint
    (input channels per convolution, all vs non-zero, layer names on the axis)."""
    from mtlexport.bench import BenchReport, plot_report
    from mtlexport.sparsity.plots import channel_report, plot_channels

    merged = BenchReport(results=tuple(r for report in result.bench.values() for r in report.results))
    sparse = result.checkpoints["sparse"]
    report = channel_report(sparse)
    title = (f"sparse model: {report.group_sparsity:.1f}% zero groups, {report.param_sparsity:.1f}% zero parameters; "
             f"slim removes {result.slim.removed} channels")
    return {"latency.png": plot_report(out / "latency.png", merged),
            "channels.png": plot_channels(report, out / "channels.png", title=title)}


# ------------------------------------------------------------------ the comparison table
TABLE_COLUMNS = ("", "baseline", "dense", "sparse", "slim", "slim vs dense")


def summary_rows(result: DemoResult) -> list[list[Any]]:
    """The comparison table as plain values (None = not applicable): the primary metric of each
    task on the test split (↑ higher / ↓ lower is better), the backbone's group sparsity and
    share of its input channels removed, parameters, MACs per image, ONNX size, and the
    median latency per backend and batch size (``ort b8 ms``) with the speedup."""
    ev = result.evaluation
    dense = ev["dense"]
    rows: list[list[Any]] = []
    for task, metric in dense.primary.items():
        higher = dense.higher_is_better.get(task, {}).get(metric, True)
        values = [ev[k].metrics.get(task, {}).get(metric) for k in MODELS]
        base = dense.baseline.get(task, {}).get(metric)
        rows.append([f"{task}.{metric} {'↑' if higher else '↓'}", base, *values, _delta(values[0], values[2])])
    slim = result.slim
    rows.append(["group sparsity", None, None, f"{slim.group_sparsity:.1%}", None, None])
    rows.append(["channels removed", None, None, None, f"{slim.realised:.1%}", None])
    params = (slim.params_before / 1e6, slim.params_after / 1e6)
    macs = (slim.macs_before / 1e6, slim.macs_after / 1e6)
    rows.append(["parameters (M)", None, params[0], params[0], params[1], _change(*params)])
    rows.append(["MACs / image (M)", None, macs[0], macs[0], macs[1], _change(*macs)])
    sizes = [result.exports[k].onnx_bytes.get("model.onnx", 0) / 1e6 for k in ("dense", "slim")]
    rows.append(["ONNX MB", None, sizes[0], None, sizes[1], _change(sizes[0], sizes[1])])
    for c in result.comparisons():
        speed = f"{c.speedup:.2f}x faster" if c.speedup >= 1 else f"{1 / c.speedup:.2f}x slower"
        rows.append([f"{c.backend} b{c.batch} ms", None, c.baseline_latency_ms, None, c.candidate_latency_ms, speed])
    return rows


def _delta(before: float | None, after: float | None) -> str | None:
    return None if before is None or after is None else f"{after - before:+.3g}"


def _change(before: float, after: float) -> str | None:
    return f"{(after - before) / before:+.1%}" if before > 0 and after >= 0 else None


def epochs_trained(result: DemoResult) -> int | str:
    """Epochs the demo trained for (the config's unless ``--epochs`` replaced them)."""
    runs = list(result.train.values())
    return runs[0].epochs_run if runs else "?"


def summary_markdown(result: DemoResult) -> str:
    """``summary.md``: settings, the comparison table, speedup against the MACs ratio, stage times."""
    o = result.options
    how = "sample checkpoints" if o.skip_train else f"{epochs_trained(result)} epoch(s) each"
    lines = [
        "# mtlexport demo: dense vs group-sparse -> slim", "",
        f"Config `{o.config_path}`, {how}; group lasso with {result.recipe}; slim widths rounded to "
        f"{o.round_to}. Metrics on the test split; median latency on the CPU ({', '.join(o.backends)}, "
        f"{o.threads or 'default'} thread(s)), {o.bench_seconds:g} s per model and batch in alternating rounds. "
        "Last column: metric difference, relative size change, or speedup.", "",
        _markdown_table(list(TABLE_COLUMNS), summary_rows(result)), "",
    ]
    for c in result.comparisons():
        if c.macs_ratio:
            lines.append(f"- {c.backend} batch {c.batch}: speedup {c.speedup:.2f}x of median latencies "
                         f"({c.speedup_min:.2f}x of minimum latencies) for a MACs ratio of {c.macs_ratio:.2f}x: "
                         + (f"{c.realised:.0%} of it realised" if c.realised is not None else c.note))
    verification = "passed" if result.slim.passed else "FAILED"
    lines += [f"- slim verification {verification}: max relative output error {result.slim.max_rel_error:.2e} "
              f"(tolerance {result.slim.tol:g}, {result.slim.dtype})", ""]
    lines += [f"> {text}" for text in result.notices] + ([""] if result.notices else [])
    load = ", ".join(f"{x:.2f}" for x in result.load_average)
    lines += [_markdown_table(["stage", "seconds"], [[k, v] for k, v in result.stages.items()]), "",
              f"Total {result.total_s:.0f} s; load average at the end {load} on {os.cpu_count()} CPU(s).", ""]
    lines += [f"- {name}: `{path}`" for name, path in result.files.items()]
    lines += [f"- {kind} checkpoint: `{path}`" for kind, path in result.checkpoints.items()]
    lines += [f"- {kind} export: `{report.out_dir}`" for kind, report in result.exports.items()]
    return "\n".join(lines) + "\n"


def _markdown_table(columns: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join(["---"] + ["---:"] * (len(columns) - 1)) + "|"]
    out += ["| " + " | ".join(format_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(out)


def format_cell(value: Any) -> str:
    """A table cell: floats with 4 significant digits, integers with separators, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3e}" if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3) else f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
