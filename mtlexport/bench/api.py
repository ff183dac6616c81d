"""The public entry points: ``bench_models`` (models x backends x batch sizes) and ``compare``
(two models on the same backend and settings, measured in alternating rounds)."""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mtlexport.bench.harness import Harness
from mtlexport.bench.results import BenchReport, BenchResult, Comparison, compare_results, system_info
from mtlexport.bench.runners import RUNNERS, Runner
from mtlexport.bench.settings import BenchSettings, parse_batches
from mtlexport.bench.source import ModelSource, load_references, load_source, make_inputs
from mtlexport.bench.stats import summarize
from mtlexport.errors import BackendUnavailableError, ConfigError, VerificationError
from mtlexport.reporting import NullReporter, Reporter

EngineLike = str | Path | ModelSource
DEFAULT_TOLERANCE = {"fp32": (1e-3, 1e-3), "fp16": (5e-2, 5e-2), "tf32": (5e-2, 5e-2)}


def bench_models(
    engines: Sequence[EngineLike],
    *,
    backends: Sequence[str] | None = None,
    batches: Sequence[int] | str = (1,),
    settings: BenchSettings | None = None,
    reporter: Reporter | None = None,
) -> BenchReport:
    """Benchmark every engine on every backend (default: the one its path implies) at every batch.

    A backend that cannot run here is skipped with a one-line reason (``report.skipped``) as
    long as something else runs; if nothing can run, its BackendUnavailableError is raised.
    """
    settings = settings or BenchSettings()
    reporter = reporter or NullReporter()
    sizes = parse_batches(batches)
    sources = _sources(engines, settings)
    plan = [(src, b) for src in sources for b in (backends or [src.default_backend])]
    for _, backend in plan:
        RUNNERS.get(backend)
    results: list[BenchResult] = []
    skipped: list[dict[str, str]] = []
    errors: list[BackendUnavailableError] = []
    reporter.start("bench", "benchmarking", len(plan) * len(sizes))
    with tempfile.TemporaryDirectory(prefix="mtlexport-bench-") as scratch, _finishing(reporter):
        for src, backend in plan:
            try:
                runner = _activate(src, backend, settings, Path(scratch))
            except BackendUnavailableError as exc:
                if len(plan) == 1:
                    raise
                errors.append(exc)
                skipped.append({"label": src.label, "backend": backend, "reason": str(exc)})
                reporter.message(f"skipped {src.label} on {backend}: {exc}")
                reporter.advance("bench", len(sizes))
                continue
            try:
                for batch in sizes:
                    (result,) = _measure([runner], batch, settings, rounds=1, reporter=reporter)
                    results.append(result)
            finally:
                runner.deactivate()
    if not results and errors:
        raise errors[0]
    return BenchReport(results=tuple(results), skipped=tuple(skipped), metadata=_metadata(settings, sizes))


def compare(
    baseline: EngineLike,
    candidate: EngineLike,
    *,
    backend: str | None = None,
    batches: Sequence[int] | str = (1,),
    settings: BenchSettings | None = None,
    rounds: int = 4,
    reporter: Reporter | None = None,
) -> BenchReport:
    """Measure ``baseline`` and ``candidate`` side by side on one backend and settings.

    Each batch size is measured in ``rounds`` alternating rounds (A B, B A, ...) splitting the
    iteration count and duration, so slow drift (thermal, other load) affects both equally.
    """
    settings = settings or BenchSettings()
    reporter = reporter or NullReporter()
    sizes = parse_batches(batches)
    if rounds < 1:
        raise ConfigError(f"rounds must be >= 1, got {rounds}")
    base_src, cand_src = _sources([baseline, candidate], settings)
    _check_same_input(base_src, cand_src)
    backend = backend or base_src.default_backend
    RUNNERS.get(backend)
    results: list[BenchResult] = []
    comparisons: list[Comparison] = []
    reporter.start("bench", f"comparing on {backend}", len(sizes))
    with tempfile.TemporaryDirectory(prefix="mtlexport-bench-") as scratch, _finishing(reporter):
        runners: list[Runner] = []
        try:
            for src in (base_src, cand_src):
                runners.append(_activate(src, backend, settings, Path(scratch)))
            for batch in sizes:
                base_res, cand_res = _measure(runners, batch, settings, rounds=rounds, reporter=reporter)
                results += [base_res, cand_res]
                comparisons.append(compare_results(base_res, cand_res))
        finally:
            for runner in runners:
                runner.deactivate()
    meta = {**_metadata(settings, sizes), "compare_rounds": rounds,
            "compare": {"baseline": base_src.label, "candidate": cand_src.label, "backend": backend,
                        "input_shape": list(base_src.input_shape or ())}}
    return BenchReport(results=tuple(results), comparisons=tuple(comparisons), metadata=meta)


def _check_same_input(baseline: ModelSource, candidate: ModelSource) -> None:
    """Refuse to compare models measured on different inputs: their speedup would mean nothing."""
    a, b = baseline.input_shape, candidate.input_shape
    if a is None or b is None or tuple(a) == tuple(b):
        return
    raise ConfigError(
        f"--compare: {baseline.label} (baseline) takes {'x'.join(map(str, a))} inputs but {candidate.label} "
        f"takes {'x'.join(map(str, b))}; pass --input-size HxW to time both at one size, or export both at "
        "the same size")


@contextlib.contextmanager
def _finishing(reporter: Reporter) -> Iterator[None]:
    try:
        yield
    finally:
        reporter.finish("bench")


def _sources(engines: Sequence[EngineLike], settings: BenchSettings) -> list[ModelSource]:
    sources = [e if isinstance(e, ModelSource) else load_source(e, settings.input_size, precision=settings.precision)
               for e in engines]
    seen: dict[str, int] = {}
    unique = []
    for src in sources:  # comparing a model with itself, or two export dirs' model.onnx
        seen[src.label] = seen.get(src.label, 0) + 1
        unique.append(src if seen[src.label] == 1 else replace(src, label=f"{src.label}-{seen[src.label]}"))
    return unique


def _activate(src: ModelSource, backend: str, settings: BenchSettings, scratch: Path) -> Runner:
    runner = RUNNERS.get(backend)(src, settings, scratch)
    runner.activate()
    return runner


def time_alternating(runners: Sequence[Runner], batch: int, settings: BenchSettings,
                     rounds: int) -> list[tuple[Harness, dict[str, Any], dict[str, Any], float]]:
    """Prepare and check every runner at ``batch``, then time them in alternating rounds.

    Returns, per runner: its harness (with the timed records), the output check, its
    description and the untimed preparation seconds.
    """
    harnesses, checks, described, prepared = [], [], [], []
    for runner in runners:
        images = make_inputs(runner.source, batch, settings.seed)
        start = time.perf_counter()
        runner.prepare(images)  # untimed set-up; for inductor this compiles the model at this batch
        prepared.append(time.perf_counter() - start)
        checks.append(check_outputs(runner.outputs(), runner.source, batch, settings, runner.precision))
        described.append(runner.describe())
        harness = Harness(runner)
        harness.warm_up(settings.warmup_ms)
        harnesses.append(harness)
    iterations = math.ceil(settings.iterations / rounds)
    duration = settings.duration_s / rounds
    for k in range(rounds):
        order = harnesses if k % 2 == 0 else harnesses[::-1]
        for harness in order:
            if k > 0:
                harness.warm_up(settings.warmup_ms / rounds)
            harness.measure(iterations, duration)
    return list(zip(harnesses, checks, described, prepared))


def _measure(runners: list[Runner], batch: int, settings: BenchSettings, rounds: int,
             reporter: Reporter) -> list[BenchResult]:
    """Time every runner at ``batch`` (``time_alternating``) and turn each into a ``BenchResult``."""
    results = []
    for runner, (harness, check, desc, prepare_s) in zip(runners, time_alternating(runners, batch, settings, rounds)):
        result = _result(runner, harness, batch, check, desc, prepare_s)
        results.append(result)
        reporter.advance("bench", 1 if runner is runners[-1] else 0, model=result.label,
                         latency_ms=result.latency.median, qps=result.throughput_qps)
        if result.latency.cv > settings.cv_warn:
            reporter.message(f"{result.key}: latency varies by {result.latency.cv:.1%} (coefficient of variation "
                             f"> {settings.cv_warn:.0%}); close other programs or raise --duration-s")
    return results


def _result(runner: Runner, harness: Harness, batch: int, check: dict[str, Any], desc: dict[str, Any],
            prepare_s: float) -> BenchResult:
    recs = harness.records
    src = runner.source
    qps = len(recs) / harness.wall_s if harness.wall_s > 0 else float("inf")
    macs = src.macs
    return BenchResult(
        label=src.label, engine=str(src.path), kind=src.kind, backend=runner.name, device=runner.settings.device,
        batch=batch, precision=runner.precision, input_shape=(batch, *(src.input_shape or ())), settings=desc,
        queries=len(recs), warmup_queries=harness.warmup_queries, wall_s=harness.wall_s, throughput_qps=qps,
        images_per_s=qps * batch, macs_per_sample=macs,
        gflops_per_s=2.0 * macs * batch * qps / 1e9 if macs else None,
        latency=summarize([r.latency_ms for r in recs]), compute=summarize([r.compute_ms for r in recs]),
        h2d=summarize([r.h2d_ms for r in recs]), d2h=summarize([r.d2h_ms for r in recs]),
        enqueue=summarize([r.enqueue_ms for r in recs]), host=summarize([r.host_ms for r in recs]),
        check=check, prepare_s=prepare_s, records=tuple(recs),
    )


def check_outputs(outputs: dict[str, np.ndarray], source: ModelSource, batch: int,
                  settings: BenchSettings, precision: str | None = None) -> dict[str, Any]:
    """Check outputs are finite and, with an export's input and references, match them within
    the tolerances the source records for ``precision`` (what the runner computed in; default
    ``settings.precision``). Every failing output is collected before one VerificationError."""
    precision = precision or settings.precision
    failures = [f"{name} has non-finite values" for name, v in outputs.items() if not np.isfinite(v).all()]
    check: dict[str, Any] = {"finite": not failures, "reference": "none", "precision": precision}
    opt = source.opt_batch
    if source.refs and source.inputs_bin is not None and opt:
        from mtlexport.export.validate import compare as compare_to_reference  # imports torch: only here
        from mtlexport.tasks import Tolerance

        refs = load_references(source, opt)
        rows = np.arange(batch) % opt  # inputs repeat the reference batch's rows cyclically
        errors: dict[str, float] = {}
        tolerances = source.tolerances_for(precision)
        for name, ref in refs.items():
            if name not in outputs:
                failures.append(f"{name} is missing from the outputs")
                continue
            got = outputs[name].reshape(batch, -1)
            want = ref[rows]
            if got.shape != want.shape:
                failures.append(f"{name} has {got.shape[1]} values per sample, the reference {want.shape[1]}")
                continue
            atol, rtol = tolerances.get(name, DEFAULT_TOLERANCE.get(precision, DEFAULT_TOLERANCE["fp32"]))
            (result,) = compare_to_reference(source.label, "reference", (name,), [got], [want],
                                             {name: Tolerance(atol=atol, rtol=rtol)})
            errors[name] = result.max_abs
            if not result.passed:
                failures.append(f"{name} max |error| {result.max_abs:.3g} exceeds atol {atol:g} + rtol {rtol:g}")
        check["reference"] = "failed" if failures else "passed"
        check["max_abs_error"] = errors
    if failures and settings.verify:
        raise VerificationError(f"{source.label}: outputs failed checks at batch {batch}: " + "; ".join(failures))
    check["failures"] = failures
    return check


def _metadata(settings: BenchSettings, sizes: tuple[int, ...]) -> dict[str, Any]:
    return {**system_info(settings.device), "settings": settings.to_dict(), "batches": list(sizes),
            "timing": "harness: warm-up excluded; runs until both iterations and duration are met; "
                      "device spans by CUDA events on GPU, host clock on CPU"}
