"""Benchmarking: one runner per backend, one shared timing harness, trtexec-style statistics,
reports (table data, JSON, CSV, trtexec ``--exportTimes``) and plots.

Entry points: ``bench_models(engines, backends=..., batches=..., settings=...)`` and
``compare(baseline, candidate, backend=..., ...)`` return a ``BenchReport`` of frozen
``BenchResult`` / ``Comparison`` records; nothing here prints (pass a Reporter).

Adding a runner: subclass ``mtlexport.bench.runners.base.Runner`` in a new module under
``runners/``, set ``name`` (the CLI value of ``--backend``) and ``devices``, fill in
``_activate_impl`` (lazy-import the backend; raise ``BackendUnavailableError`` with one line
saying why it cannot run), ``_prepare_impl``, ``_compute_impl`` and ``_outputs_impl`` (plus
``_h2d_impl`` / ``_d2h_impl`` / ``_synchronize_impl`` and ``clock()`` for a device backend),
decorate the class with ``@RUNNERS.register("name")`` and import the module in
``runners/__init__.py``. Never time anything in a runner: the harness does. The contract
tests in ``tests/bench/test_runners.py`` iterate over ``RUNNERS`` and cover it automatically.
"""

from mtlexport.bench.api import bench_models, check_outputs, compare
from mtlexport.bench.plot import plot_report
from mtlexport.bench.harness import EXPORT_TIMES_KEYS, Harness, QueryRecord, export_times
from mtlexport.bench.results import (
    BenchReport,
    BenchResult,
    Comparison,
    compare_results,
    report_csv,
    write_csv,
    write_export_times,
)
from mtlexport.bench.runners import RUNNERS, Runner
from mtlexport.bench.settings import BenchSettings, parse_batches, parse_size
from mtlexport.bench.source import ModelSource, load_source
from mtlexport.bench.stats import LatencyStats, median, percentile, percentile_index, summarize


__all__ = [
    "EXPORT_TIMES_KEYS",
    "RUNNERS",
    "BenchReport",
    "BenchResult",
    "BenchSettings",
    "Comparison",
    "Harness",
    "LatencyStats",
    "ModelSource",
    "QueryRecord",
    "Runner",
    "bench_models",
    "check_outputs",
    "compare",
    "compare_results",
    "export_times",
    "load_source",
    "median",
    "parse_batches",
    "parse_size",
    "percentile",
    "percentile_index",
    "plot_report",
    "report_csv",
    "summarize",
    "write_csv",
    "write_export_times",
]
