"""Results as data: ``BenchResult`` (one per model x backend x batch), ``Comparison`` and the run
report ``BenchReport``; plus the file writers (CSV, trtexec ``--exportTimes`` JSON)."""

from __future__ import annotations

import csv
import io
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from mtlexport.bench.harness import QueryRecord, export_times
from mtlexport.bench.stats import LatencyStats
from mtlexport.io import write_json, write_text


@dataclass(frozen=True)
class BenchResult:
    """One measured configuration. Latency is trtexec's (H2D + compute + D2H, device clock);
    ``host`` is the end-to-end host wall time per query; throughput uses total host wall time.
    ``prepare_s`` is the untimed set-up of this batch size before warm-up (buffers, the first
    runs and, for ``inductor``, compiling the model: its compile time, 0 when reused)."""

    label: str
    engine: str
    kind: str
    backend: str
    device: str
    batch: int
    precision: str
    input_shape: tuple[int, ...]
    settings: dict[str, Any]
    queries: int
    warmup_queries: int
    wall_s: float
    throughput_qps: float
    images_per_s: float
    macs_per_sample: int | None
    gflops_per_s: float | None
    latency: LatencyStats
    compute: LatencyStats
    h2d: LatencyStats
    d2h: LatencyStats
    enqueue: LatencyStats
    host: LatencyStats
    check: dict[str, Any]
    prepare_s: float = 0.0
    records: tuple[QueryRecord, ...] = field(default=(), repr=False)

    @property
    def key(self) -> str:
        """A short unique name: ``label/backend/b<batch>``."""
        return f"{self.label}/{self.backend}/b{self.batch}"

    def to_dict(self, include_records: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "label": self.label, "engine": self.engine, "kind": self.kind, "backend": self.backend,
            "device": self.device, "batch": self.batch, "precision": self.precision,
            "input_shape": list(self.input_shape), "settings": self.settings, "queries": self.queries,
            "warmup_queries": self.warmup_queries, "wall_s": self.wall_s, "throughput_qps": self.throughput_qps,
            "images_per_s": self.images_per_s, "macs_per_sample": self.macs_per_sample,
            "gflops_per_s": self.gflops_per_s, "prepare_s": self.prepare_s,
        }
        for name in ("latency", "compute", "h2d", "d2h", "enqueue", "host"):
            out[f"{name}_ms"] = getattr(self, name).to_dict()
        out["check"] = self.check
        if include_records:
            out["export_times"] = export_times(self.records)
        return out


@dataclass(frozen=True)
class Comparison:
    """Candidate vs baseline on the same backend, batch, input shape and settings.

    ``speedup`` = baseline / candidate median latency (below 1: the candidate is slower,
    ``slower`` is True); ``macs_ratio`` = baseline / candidate MACs per sample (the theoretical
    speedup). ``realised`` = speedup / macs_ratio, the share of the theoretical speedup the
    candidate achieved: defined only when the candidate has fewer MACs (``macs_ratio`` > 1) and
    is not slower, else None and ``note`` says why. ``speedup_min`` / ``realised_min`` use the
    fastest query of each model instead: the intrinsic cost, robust to a loaded machine.
    """

    backend: str
    batch: int
    baseline: str
    candidate: str
    baseline_latency_ms: float
    candidate_latency_ms: float
    baseline_qps: float
    candidate_qps: float
    speedup: float
    throughput_ratio: float
    macs_ratio: float | None
    realised: float | None
    speedup_min: float
    realised_min: float | None
    input_shape: tuple[int, ...] = ()
    slower: bool = False
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["input_shape"] = list(self.input_shape)
        return out


def compare_results(baseline: BenchResult, candidate: BenchResult) -> Comparison:
    """Side-by-side figures of two results measured with the same backend, batch and input shape."""
    if tuple(baseline.input_shape) != tuple(candidate.input_shape):
        from mtlexport.errors import ConfigError

        raise ConfigError(f"cannot compare {candidate.label} ({_shape(candidate.input_shape)}) with "
                          f"{baseline.label} ({_shape(baseline.input_shape)}): the inputs differ")
    speedup = _ratio(baseline.latency.median, candidate.latency.median)
    speedup_min = _ratio(baseline.latency.min, candidate.latency.min)
    macs_ratio = None
    if baseline.macs_per_sample and candidate.macs_per_sample:
        macs_ratio = baseline.macs_per_sample / candidate.macs_per_sample
    slower = speedup < 1.0
    parts = [f"the candidate is slower ({1 / speedup:.2f}x the baseline's median latency)"] if slower else []
    if macs_ratio is None:
        parts.append("MACs unknown")
    elif macs_ratio <= 1.0:
        parts.append(f"it does not have fewer MACs (MACs ratio {macs_ratio:.2f})")
    elif slower:
        parts.append(f"despite {macs_ratio:.2f}x fewer MACs")
    note = (", ".join(parts) + ": no realised share") if parts else ""
    fewer = macs_ratio is not None and macs_ratio > 1.0
    return Comparison(
        backend=baseline.backend, batch=baseline.batch, baseline=baseline.label, candidate=candidate.label,
        baseline_latency_ms=baseline.latency.median, candidate_latency_ms=candidate.latency.median,
        baseline_qps=baseline.throughput_qps, candidate_qps=candidate.throughput_qps, speedup=speedup,
        throughput_ratio=_ratio(candidate.throughput_qps, baseline.throughput_qps),
        macs_ratio=macs_ratio, realised=speedup / macs_ratio if fewer and not slower else None,
        speedup_min=speedup_min,
        realised_min=speedup_min / macs_ratio if fewer and speedup_min >= 1.0 else None,  # type: ignore[operator]
        input_shape=tuple(baseline.input_shape[1:]), slower=slower, note=note,
    )


def _shape(shape: tuple[int, ...]) -> str:
    """``3x64x64`` for a (batch, C, H, W) or (C, H, W) shape."""
    return "x".join(str(d) for d in (shape[1:] if len(shape) == 4 else shape))


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("inf")


@dataclass(frozen=True)
class BenchReport:
    """A whole run: results, comparisons, backends skipped (with why) and run metadata."""

    results: tuple[BenchResult, ...]
    comparisons: tuple[Comparison, ...] = ()
    skipped: tuple[dict[str, str], ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, include_records: bool = False) -> dict[str, Any]:
        return {
            "metadata": self.metadata,
            "results": [r.to_dict(include_records) for r in self.results],
            "comparisons": [c.to_dict() for c in self.comparisons],
            "skipped": list(self.skipped),
        }


def system_info(device: str) -> dict[str, Any]:
    """Machine and library versions recorded with every run (no heavy imports)."""
    import torch

    info: dict[str, Any] = {
        "device": device, "platform": platform.platform(), "python": platform.python_version(),
        "cpu": _cpu_name(), "cpu_count": _cpu_count(), "gpu": None,
    }
    if device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    versions = {}
    for dist in ("mtlexport", "torch", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    if "mtlexport" not in versions:
        import mtlexport

        versions["mtlexport"] = mtlexport.__version__
    info["versions"] = versions
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_count() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


CSV_COLUMNS = (
    "label", "backend", "device", "batch", "precision", "queries", "latency_mean_ms", "latency_median_ms",
    "latency_p90_ms", "latency_p95_ms", "latency_p99_ms", "latency_min_ms", "latency_max_ms", "latency_cv",
    "compute_mean_ms", "host_mean_ms", "throughput_qps", "images_per_s", "macs_per_sample", "gflops_per_s",
    "prepare_s",
)


def report_csv(report: BenchReport) -> str:
    """CSV text with one row per result."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in report.results:
        lat = r.latency
        writer.writerow([
            r.label, r.backend, r.device, r.batch, r.precision, r.queries, lat.mean, lat.median, lat.p90, lat.p95,
            lat.p99, lat.min, lat.max, lat.cv, r.compute.mean, r.host.mean, r.throughput_qps, r.images_per_s,
            r.macs_per_sample if r.macs_per_sample is not None else "",
            r.gflops_per_s if r.gflops_per_s is not None else "", r.prepare_s,
        ])
    return buf.getvalue()


def write_csv(path: str | Path, report: BenchReport) -> Path:
    """Write ``report_csv(report)`` atomically."""
    return write_text(path, report_csv(report))


def write_export_times(path: str | Path, results: tuple[BenchResult, ...] | list[BenchResult]) -> list[Path]:
    """Write trtexec ``--exportTimes`` JSON: to ``path`` for one result, else one file per result
    named ``<stem>.<label>.<backend>.b<batch><suffix>`` beside it. Returns the paths written."""
    target = Path(path)
    if len(results) == 1:
        return [write_json(target, export_times(results[0].records))]
    written = []
    for r in results:
        name = f"{target.stem}.{r.label}.{r.backend}.b{r.batch}{target.suffix or '.json'}"
        written.append(write_json(target.with_name(name), export_times(r.records)))
    return written
