"""The shared harness: loop rule, warm-up exclusion, per-query records and exportTimes schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mtlexport.bench import EXPORT_TIMES_KEYS, BenchSettings, Harness, ModelSource, export_times, write_export_times
from mtlexport.bench.runners.base import Runner

TRTEXEC_KEYS = ["startEnqMs", "endEnqMs", "startH2dMs", "endH2dMs", "startComputeMs", "endComputeMs",
                "startD2hMs", "endD2hMs", "h2dMs", "computeMs", "d2hMs", "latencyMs"]


class StepClock:
    """A device clock whose every mark is 0.5 ms after the previous one."""

    def __init__(self) -> None:
        self.t = 0.0

    def mark(self) -> float:
        self.t += 0.5
        return self.t

    def elapsed_ms(self, start: float, end: float) -> float:
        return end - start


class FakeRunner(Runner):
    """Counts calls; ``device=True`` pretends to be a GPU runner with separate transfers."""

    name = "fake"

    def __init__(self, device: bool = False) -> None:
        super().__init__(ModelSource(path=Path("fake"), kind="onnx", label="fake", input_shape=(1, 2, 2)),
                         BenchSettings())
        self.device = device
        self.calls: dict[str, int] = {"h2d": 0, "compute": 0, "d2h": 0}

    @property
    def transfers(self) -> bool:
        return self.device

    def clock(self) -> Any:
        return StepClock() if self.device else super().clock()

    def _activate_impl(self) -> None:
        pass

    def _prepare_impl(self, images: np.ndarray) -> None:
        self.images = images

    def _h2d_impl(self) -> None:
        self.calls["h2d"] += 1

    def _compute_impl(self) -> None:
        self.calls["compute"] += 1

    def _d2h_impl(self) -> None:
        self.calls["d2h"] += 1

    def _outputs_impl(self) -> dict[str, Any]:
        return {"out": self.images * 2}


def _ready(device: bool = False) -> FakeRunner:
    runner = FakeRunner(device)
    runner.activate()
    runner.prepare(np.ones((2, 1, 2, 2), dtype=np.float32))
    return runner


def test_iterations_met_when_duration_is_zero() -> None:
    runner = _ready()
    harness = Harness(runner)
    harness.measure(iterations=7, duration_s=0.0)
    assert len(harness.records) == 7
    assert runner.calls["compute"] == 1 + 7  # prepare runs once, untimed


def test_duration_met_when_iterations_are_few() -> None:
    harness = Harness(_ready())
    harness.measure(iterations=1, duration_s=0.02)
    assert len(harness.records) >= 1
    assert harness.wall_s >= 0.02  # loop semantics, not a performance assertion


def test_warm_up_is_not_recorded() -> None:
    runner = _ready()
    harness = Harness(runner)
    warm = harness.warm_up(5)
    harness.measure(iterations=3, duration_s=0.0)
    assert warm >= 1 and harness.warmup_queries == warm
    assert len(harness.records) == 3
    assert runner.calls["compute"] == 1 + warm + 3


def test_cpu_records_have_zero_length_transfers() -> None:
    harness = Harness(_ready())
    harness.measure(iterations=4, duration_s=0.0)
    for rec in harness.records:
        assert rec.h2d_ms == 0.0 and rec.d2h_ms == 0.0
        assert rec.start_h2d == rec.end_h2d == rec.start_compute
        assert rec.end_compute == rec.start_d2h == rec.end_d2h
        assert rec.latency_ms == rec.compute_ms >= 0.0
        assert rec.start_enq <= rec.end_enq <= rec.host_end


def test_device_stages_timed_by_the_runner_clock() -> None:
    runner = _ready(device=True)
    harness = Harness(runner)
    harness.measure(iterations=3, duration_s=0.0)
    assert runner.calls == {"h2d": 1 + 3, "compute": 1 + 3, "d2h": 1 + 3}
    for rec in harness.records:  # StepClock: every span between consecutive marks is 0.5 ms
        assert (rec.h2d_ms, rec.compute_ms, rec.d2h_ms) == (0.5, 0.5, 0.5)
        assert rec.latency_ms == 1.5
    starts = [r.start_h2d for r in harness.records]
    assert starts == sorted(starts)


def test_rounds_accumulate() -> None:
    harness = Harness(_ready())
    harness.measure(iterations=2, duration_s=0.0)
    first_wall = harness.wall_s
    harness.measure(iterations=3, duration_s=0.0)
    assert len(harness.records) == 5 and harness.wall_s >= first_wall
    enq = [r.start_enq for r in harness.records]
    assert enq == sorted(enq)  # one time origin across rounds


def test_export_times_schema(tmp_path: Path) -> None:
    harness = Harness(_ready(device=True))
    harness.measure(iterations=3, duration_s=0.0)
    payload = export_times(harness.records)
    assert list(EXPORT_TIMES_KEYS) == TRTEXEC_KEYS
    assert isinstance(payload, list) and len(payload) == 3
    for item in payload:
        assert list(item) == TRTEXEC_KEYS
        assert all(isinstance(v, float) for v in item.values())
        assert item["latencyMs"] == pytest.approx(item["h2dMs"] + item["computeMs"] + item["d2hMs"])
        assert item["computeMs"] == pytest.approx(item["endComputeMs"] - item["startComputeMs"])

    class _Result:
        records = tuple(harness.records)

    (path,) = write_export_times(tmp_path / "times.json", [_Result()])  # type: ignore[list-item]
    assert json.loads(path.read_text()) == payload


class WallClock:
    """A device clock that runs in step with the host (a device idle between queries), logging
    the host time of each mark so the test can see which zero point came first."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def mark(self) -> float:
        import time

        self.log.append("device")
        return time.perf_counter()

    def elapsed_ms(self, start: float, end: float) -> float:
        return (end - start) * 1e3


@pytest.mark.parametrize("device", [False, True])
def test_device_spans_never_start_before_their_enqueue(device: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """exportTimes: startH2dMs / startComputeMs >= startEnqMs in every record (the device zero
    point is taken before the host one)."""
    import time

    from mtlexport.bench import harness as harness_module

    log: list[str] = []
    runner = _ready(device=device)
    monkeypatch.setattr(runner, "clock", lambda: WallClock(log))
    real = time.perf_counter

    def host_clock() -> float:
        log.append("host")
        return real()

    harness = Harness(runner)
    monkeypatch.setattr(harness_module.time, "perf_counter", host_clock)
    harness.measure(iterations=50, duration_s=0.0)
    monkeypatch.setattr(harness_module.time, "perf_counter", real)
    assert log[:2] == ["device", "host"]  # the zero points
    for rec in harness.records:
        assert rec.start_h2d >= rec.start_enq and rec.start_compute >= rec.start_enq
