"""The one timing harness every runner is measured with (runners never time themselves).

Per query the harness calls the runner's stages ``h2d -> compute -> d2h`` and marks a
*device clock* between them, then ``synchronize``. The device clock is the host clock for CPU
runners and CUDA events on the runner's stream for GPU runners, so GPU compute is timed by
events while end-to-end host wall time is timed separately with ``perf_counter``. When a
runner has no separate transfers (CPU, or GPU with transfers excluded) the H2D / D2H spans
are zero-length at the edges of the compute span, as in trtexec with ``--noDataTransfers``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mtlexport.bench.runners.base import Runner

EXPORT_TIMES_KEYS: tuple[str, ...] = (
    "startEnqMs", "endEnqMs", "startH2dMs", "endH2dMs", "startComputeMs", "endComputeMs",
    "startD2hMs", "endD2hMs", "h2dMs", "computeMs", "d2hMs", "latencyMs",
)


class Clock(Protocol):
    """Marks points in a runner's execution order; differences are read after synchronising."""

    def mark(self) -> Any:
        """Record a point now (host) or enqueue one on the runner's stream (device)."""

    def elapsed_ms(self, start: Any, end: Any) -> float:
        """Milliseconds from mark ``start`` to mark ``end`` (both completed)."""


class HostClock:
    """The host's monotonic high-resolution clock."""

    def mark(self) -> float:
        return time.perf_counter()

    def elapsed_ms(self, start: float, end: float) -> float:
        return (end - start) * 1e3


class CudaEventClock:
    """CUDA events recorded on ``stream`` (a ``torch.cuda.Stream``); needs torch with CUDA."""

    def __init__(self, stream: Any) -> None:
        import torch

        self._torch = torch
        self.stream = stream

    def mark(self) -> Any:
        event = self._torch.cuda.Event(enable_timing=True)
        event.record(self.stream)
        return event

    def elapsed_ms(self, start: Any, end: Any) -> float:
        return float(start.elapsed_time(end))


@dataclass(frozen=True)
class QueryRecord:
    """One timed query; timestamps in ms relative to the start of the measurement.

    Enqueue and ``host_end`` are host times; H2D / compute / D2H come from the device clock.
    """

    start_enq: float
    end_enq: float
    start_h2d: float
    end_h2d: float
    start_compute: float
    end_compute: float
    start_d2h: float
    end_d2h: float
    host_end: float

    @property
    def h2d_ms(self) -> float:
        return self.end_h2d - self.start_h2d

    @property
    def compute_ms(self) -> float:
        return self.end_compute - self.start_compute

    @property
    def d2h_ms(self) -> float:
        return self.end_d2h - self.start_d2h

    @property
    def latency_ms(self) -> float:
        """trtexec's latency: H2D + compute + D2H."""
        return self.h2d_ms + self.compute_ms + self.d2h_ms

    @property
    def enqueue_ms(self) -> float:
        return self.end_enq - self.start_enq

    @property
    def host_ms(self) -> float:
        """End-to-end host wall time of the query (enqueue start to synchronised)."""
        return self.host_end - self.start_enq

    def to_export_times(self) -> dict[str, float]:
        """One element of trtexec's ``--exportTimes`` array, keys in its order."""
        values = (
            self.start_enq, self.end_enq, self.start_h2d, self.end_h2d, self.start_compute,
            self.end_compute, self.start_d2h, self.end_d2h, self.h2d_ms, self.compute_ms,
            self.d2h_ms, self.latency_ms,
        )
        return dict(zip(EXPORT_TIMES_KEYS, (float(v) for v in values)))


def export_times(records: list[QueryRecord] | tuple[QueryRecord, ...]) -> list[dict[str, float]]:
    """trtexec ``--exportTimes`` payload: an array with one object per timed query."""
    return [r.to_export_times() for r in records]


class Harness:
    """Warms up and times one activated, prepared runner; rounds accumulate (for interleaving)."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.clock: Clock = runner.clock()
        self.records: list[QueryRecord] = []
        self.wall_s = 0.0
        self.warmup_queries = 0
        self._host0: float | None = None
        self._dev0: Any = None

    def warm_up(self, warmup_ms: float) -> int:
        """Run untimed queries for ``warmup_ms`` milliseconds; returns how many ran."""
        run = self.runner
        deadline = time.perf_counter() + warmup_ms / 1e3
        count = 0
        while time.perf_counter() < deadline:
            if run.transfers:
                run.h2d()
            run.compute()
            if run.transfers:
                run.d2h()
            run.synchronize()
            count += 1
        self.warmup_queries += count
        return count

    def measure(self, iterations: int, duration_s: float) -> None:
        """Time queries until BOTH ``iterations`` ran and ``duration_s`` seconds passed."""
        run, clock = self.runner, self.clock
        if self._host0 is None:
            run.synchronize()
            # Device zero first, host zero second: every device mark of a query is taken after its
            # host start, so with this order startH2dMs / startComputeMs never precede startEnqMs.
            self._dev0 = clock.mark()
            self._host0 = time.perf_counter()
        host0, dev0 = self._host0, self._dev0
        transfers = run.transfers
        count = 0
        first = time.perf_counter()
        last_end = first
        while count < iterations or (last_end - first) < duration_s:
            h_start = time.perf_counter()
            if transfers:
                m0 = clock.mark()
                run.h2d()
                m1 = clock.mark()
                run.compute()
                m2 = clock.mark()
                run.d2h()
                m3 = clock.mark()
            else:
                m0 = m1 = clock.mark()
                run.compute()
                m2 = m3 = clock.mark()
            h_enq = time.perf_counter()
            run.synchronize()
            last_end = time.perf_counter()
            t0, t1, t2, t3 = (clock.elapsed_ms(dev0, m) for m in (m0, m1, m2, m3))
            self.records.append(QueryRecord(
                start_enq=(h_start - host0) * 1e3, end_enq=(h_enq - host0) * 1e3,
                start_h2d=t0, end_h2d=t1, start_compute=t1, end_compute=t2,
                start_d2h=t2, end_d2h=t3, host_end=(last_end - host0) * 1e3,
            ))
            count += 1
        self.wall_s += last_end - first
