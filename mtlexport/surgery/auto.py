"""``--round-to auto``: every slimmable group's width chosen by measured latency on a backend.

1. The backend is checked first: the dense checkpoint is loaded into its bench runner
   (BackendUnavailableError, one line, when it cannot run here).
2. ``search``: per-layer latencies from the on-disk ``LatencyTable`` price each group's
   candidate widths (live count, each ``--round-to`` multiple's width, dense width), and a
   coordinate descent picks the combination with the lowest predicted latency.
3. Check: the dense model, every distinct fixed multiple and the auto widths are slimmed into
   temporary checkpoints and measured whole with the bench runner and shared harness, in
   alternating rounds at the same settings. The auto widths are kept only when they measure
   no slower than the best fixed multiple; otherwise that multiple is kept and the report says
   why. Either way the surgeon then slims and verifies the real model with those widths.

Predicted latency of a variant = the dense model's measured latency minus what the table says
its conv / linear layers save; everything else (resizes, pooling, element-wise ops) is assumed
unchanged.
"""

from __future__ import annotations

import copy
import math
import statistics
import tempfile
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from mtlexport.errors import ConfigError
from mtlexport.reporting import NullReporter, Reporter
from mtlexport.surgery.analysis import analyse_group
from mtlexport.surgery.graph import build_graph, coupled_groups
from mtlexport.surgery.latency import LAYER_BACKENDS, LatencyTable
from mtlexport.surgery.policy import plan_removal
from mtlexport.surgery.remove import apply_plan, check_layers
from mtlexport.surgery.search import WidthProblem, search_widths, width_problem

DEFAULT_MULTIPLES = (1, 4, 8, 16, 32, 64)
AUTO = "auto"


@dataclass(frozen=True)
class AutoOptions:
    """How ``--round-to auto`` measures: backend, batch, threads, candidate multiples, timing.

    ``duration_s`` / ``iterations`` / ``rounds`` / ``warmup_ms``: the whole-model check (per
    model, split over alternating rounds); ``layer_ms``: timed milliseconds per new table entry;
    ``cache_dir``: where tables live (default ``latency.cache_dir()``).
    """

    backend: str = "ort"
    batch: int = 1
    threads: int = 1
    multiples: tuple[int, ...] = DEFAULT_MULTIPLES
    duration_s: float = 2.0
    iterations: int = 20
    rounds: int = 6
    warmup_ms: float = 200.0
    layer_ms: float = 20.0
    cache_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.backend not in LAYER_BACKENDS:
            raise ConfigError(f"--round-to auto measures on {', '.join(LAYER_BACKENDS)}; got --backend {self.backend!r}")
        for name in ("batch", "threads", "iterations", "rounds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"--{name} must be a positive integer, got {value!r}")
        multiples = tuple(sorted({int(m) for m in self.multiples} | {1}))
        if multiples[0] < 1:
            raise ConfigError(f"width multiples must be positive integers, got {list(self.multiples)}")
        object.__setattr__(self, "multiples", multiples)
        if self.duration_s < 0 or self.warmup_ms < 0 or self.layer_ms <= 0:
            raise ConfigError("duration_s and warmup_ms must be >= 0 and layer_ms > 0")

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "batch": self.batch, "threads": self.threads,
                "multiples": list(self.multiples), "duration_s": self.duration_s, "iterations": self.iterations,
                "rounds": self.rounds, "warmup_ms": self.warmup_ms, "layer_ms": self.layer_ms}


@dataclass(frozen=True)
class GroupWidth:
    """One slimmable group (named by its root layer): dense width, live channels, the width the
    best fixed multiple gives it, the width auto chose and the width finally kept."""

    root: str
    dense: int
    live: int
    fixed: int
    auto: int
    width: int
    layers: tuple[str, ...] = ()

    @property
    def dead_kept(self) -> int:
        """Dead channels kept (exactly: they never change the function) for speed."""
        return self.width - self.live

    def to_dict(self) -> dict[str, Any]:
        return {"root": self.root, "dense": self.dense, "live": self.live, "fixed": self.fixed, "auto": self.auto,
                "width": self.width, "dead_kept": self.dead_kept, "layers": list(self.layers)}


@dataclass(frozen=True)
class Variant:
    """One set of widths measured whole: ``dense``, ``round-to M`` or ``auto``.

    ``macs_ratio`` = dense MACs / MACs, ``speedup`` = dense latency / latency, ``realised`` =
    speedup / macs_ratio; latencies in ms (median over every timed query; ``min_ms`` fastest).
    ``same_as`` names the variant with identical widths that was measured for it.
    """

    name: str
    macs: int | None
    predicted_ms: float
    measured_ms: float
    min_ms: float
    macs_ratio: float | None
    speedup: float
    realised: float | None
    same_as: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "macs": self.macs, "predicted_ms": self.predicted_ms,
                "measured_ms": self.measured_ms, "min_ms": self.min_ms, "macs_ratio": self.macs_ratio,
                "speedup": self.speedup, "realised": self.realised, "same_as": self.same_as}


@dataclass(frozen=True)
class AutoReport:
    """What ``--round-to auto`` measured and chose; part of ``SlimReport.auto``.

    ``chosen`` is ``auto`` or the fixed multiple kept instead (``reason`` says why);
    ``layer_entries``: latency-table entries the search looked up, ``layer_measurements``: how
    many of them this run measured (the rest came from the cached ``table``).
    """

    options: AutoOptions
    device: str
    groups: tuple[GroupWidth, ...]
    variants: tuple[Variant, ...]
    chosen: str
    best_fixed: str
    reason: str
    table: str
    layer_entries: int
    layer_measurements: int
    search: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def variant(self, name: str) -> Variant:
        """The variant called ``name`` (``dense``, ``auto``, ``round-to 8``)."""
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {"options": self.options.to_dict(), "device": self.device, "chosen": self.chosen,
                "best_fixed": self.best_fixed, "reason": self.reason,
                "groups": [g.to_dict() for g in self.groups], "variants": [v.to_dict() for v in self.variants],
                "table": self.table, "layer_entries": self.layer_entries,
                "layer_measurements": self.layer_measurements, "search": dict(self.search),
                "seconds": dict(self.seconds), "notes": list(self.notes)}


def choose_widths(
    path: str | Path,
    ckpt: Any,
    model: nn.Module,
    example: Tensor,
    input_shape: tuple[int, int, int],
    options: AutoOptions,
    *,
    protected: Collection[str] = (),
    fold_constants: bool = False,
    reporter: Reporter | None = None,
) -> tuple[dict[str, int], AutoReport]:
    """Widths (group root -> width) for ``model`` (the dense model of checkpoint ``ckpt`` at
    ``path``, left unchanged) chosen by measured latency, and the report of how."""
    from mtlexport.bench import BenchSettings, load_source

    reporter = reporter or NullReporter()
    seconds: dict[str, float] = {}
    tick = time.perf_counter()

    def lap(key: str) -> None:
        nonlocal tick
        now = time.perf_counter()
        seconds[key] = round(now - tick, 3)
        tick = now

    o = options
    size = tuple(input_shape[1:])
    settings = BenchSettings(warmup_ms=o.warmup_ms, duration_s=o.duration_s, iterations=o.iterations,
                             threads=o.threads, input_size=size)
    reporter.start("auto", f"latency-aware widths on {o.backend}", 3)
    runners: list[Any] = []
    try:
        with tempfile.TemporaryDirectory(prefix="mtlexport-auto-") as tmp:
            scratch = Path(tmp)
            runners.append(_activate(load_source(path, size, label="dense"), o.backend, settings, scratch))
            table = LatencyTable(o.backend, o.threads, directory=o.cache_dir, layer_ms=o.layer_ms)
            lap("backend")
            dg, output_fns = build_graph(model, example)
            groups = coupled_groups(dg, model, output_fns)
            analyses = [analyse_group(dg, g, fold_constants) for g in groups]
            problem = width_problem(model, groups, analyses, protected, (o.batch, *input_shape))
            reporter.advance("auto", stage="layer table")
            result = search_widths(problem, table, o.multiples)
            lap("search")
            reporter.advance("auto", stage="measure", layers=table.measured)
            named = {f"round-to {m}": problem.fixed(m) for m in o.multiples}
            named[AUTO] = result.widths
            measured_as: dict[str, str] = {}
            first: dict[tuple[tuple[str, int], ...], str] = {}
            sources = []
            for name, widths in named.items():
                key = tuple(sorted(widths.items()))
                if key in first:
                    measured_as[name] = first[key]
                    continue
                first[key] = measured_as[name] = name
                file = scratch / f"{len(sources)}.pt"
                _write_candidate(ckpt, model, example, widths, file, protected, fold_constants)
                sources.append(load_source(file, size, label=name))
            for src in sources:
                runners.append(_activate(src, o.backend, settings, scratch))
            times = _measure(runners, o.batch, settings, o.rounds)
            lap("measure")
    finally:
        for runner in reversed(runners):
            runner.deactivate()
        reporter.finish("auto")
    labels = ["dense", *(s.label for s in sources)]
    by_label = dict(zip(labels, times))
    macs = {"dense": runners[0].source.macs, **{s.label: s.macs for s in sources}}
    dense_ms = statistics.median(by_label["dense"])
    dense_layers = problem.layer_ms(problem.dense(), table)
    variants = [_variant("dense", "", macs["dense"], dense_ms, by_label["dense"], macs["dense"], dense_ms)]
    for name, widths in named.items():
        src = measured_as[name]
        predicted = dense_ms - (dense_layers - problem.layer_ms(widths, table))
        variants.append(_variant(name, "" if src == name else src, macs[src], predicted, by_label[src],
                                 macs["dense"], dense_ms))
    chosen, best_fixed, reason = _decide(variants)
    final = named[chosen]
    report = AutoReport(
        options=o, device=table.device, groups=_group_rows(problem, named[best_fixed], result.widths, final),
        variants=tuple(variants), chosen=chosen, best_fixed=best_fixed, reason=reason, table=str(table.path),
        layer_entries=len(table.used),
        layer_measurements=table.measured,
        search={"passes": result.passes, "moves": result.moves, "predicted_best_multiple": result.best_multiple},
        seconds=seconds, notes=_notes(table, variants),
    )
    return dict(final), report


def _notes(table: LatencyTable, variants: Sequence[Variant]) -> tuple[str, ...]:
    notes = [table.save_error] if table.save_error else []
    if any(v.predicted_ms <= 0 for v in variants):
        notes.append(f"the layer table predicts savings beyond the dense model's whole measured latency: its entries "
                     f"were probably timed under heavy load; delete {table.path} and rerun on a quieter machine")
    return tuple(notes)


def _decide(variants: Sequence[Variant]) -> tuple[str, str, str]:
    fixed = [v for v in variants if v.name.startswith("round-to ")]
    best = min(fixed, key=lambda v: (v.measured_ms, int(v.name.split()[-1])))
    auto = next(v for v in variants if v.name == AUTO)
    if auto.same_as == best.name or best.same_as == auto.name:
        return AUTO, best.name, f"auto chose the widths of {best.name}, the fastest fixed multiple measured"
    if auto.measured_ms <= best.measured_ms:
        gain = best.measured_ms / auto.measured_ms - 1 if auto.measured_ms > 0 else 0.0
        return AUTO, best.name, (f"auto measured {auto.measured_ms:.3f} ms, {gain:.1%} faster than the best fixed "
                                 f"multiple ({best.name}, {best.measured_ms:.3f} ms)")
    return best.name, best.name, (f"auto measured {auto.measured_ms:.3f} ms, slower than {best.name} "
                                  f"({best.measured_ms:.3f} ms) although the layer table predicted it no slower; "
                                  f"kept {best.name}")


def _variant(name: str, same_as: str, macs: int | None, predicted: float, times: list[float],
             dense_macs: int | None, dense_ms: float) -> Variant:
    measured = statistics.median(times)
    ratio = dense_macs / macs if macs and dense_macs else None
    speedup = dense_ms / measured if measured > 0 else math.inf
    return Variant(name=name, macs=macs, predicted_ms=predicted, measured_ms=measured, min_ms=min(times),
                   macs_ratio=ratio, speedup=speedup, realised=speedup / ratio if ratio else None, same_as=same_as)


def _group_rows(problem: WidthProblem, fixed: dict[str, int], auto: dict[str, int],
                final: dict[str, int]) -> tuple[GroupWidth, ...]:
    rows = []
    for root, b in problem.bounds.items():
        layers = tuple(t.name for t in problem.touching(root))
        rows.append(GroupWidth(root=root, dense=b.dense, live=b.live, fixed=fixed[root], auto=auto[root],
                               width=final[root], layers=layers))
    return tuple(rows)


def _write_candidate(ckpt: Any, model: nn.Module, example: Tensor, widths: dict[str, int], target: Path,
                     protected: Collection[str], fold_constants: bool) -> None:
    """Slim a copy of ``model`` to ``widths`` and save it as a checkpoint the runners load."""
    from mtlexport.models.widths import changed_widths, layer_widths
    from mtlexport.train.checkpoint import Checkpoint, save_checkpoint

    slim = copy.deepcopy(model)
    dg, output_fns = build_graph(slim, example)
    analyses = [analyse_group(dg, g, fold_constants) for g in coupled_groups(dg, slim, output_fns)]
    apply_plan(dg, plan_removal(analyses, protected=protected, widths=widths))
    check_layers(slim)
    spec = ckpt.spec.with_widths(changed_widths(layer_widths(model), layer_widths(slim)))
    save_checkpoint(target, Checkpoint(spec=spec, state_dict=slim.state_dict(), config=ckpt.config))


def _activate(source: Any, backend: str, settings: Any, scratch: Path) -> Any:
    from mtlexport.bench import RUNNERS

    runner = RUNNERS.get(backend)(source, settings, scratch)
    runner.activate()
    return runner


def _measure(runners: Sequence[Any], batch: int, settings: Any, rounds: int) -> list[list[float]]:
    """Latencies (ms) of every runner's queries, timed by the bench harness in alternating rounds."""
    from mtlexport.bench.api import time_alternating

    return [[r.latency_ms for r in h.records] for h, *_ in time_alternating(runners, batch, settings, rounds)]
