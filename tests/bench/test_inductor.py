"""The inductor runner: compiles in ``prepare`` only (warm-up and timing never compile), agrees
with eager PyTorch, reports its compile time, and refuses cleanly where it cannot compile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mtlexport.bench import RUNNERS, BenchSettings, Harness, bench_models, load_source
from mtlexport.bench.source import make_inputs
from mtlexport.errors import BackendUnavailableError


def test_compiles_in_prepare_and_never_while_timed(dense_ckpt: Path, tmp_path: Path) -> None:
    source = load_source(dense_ckpt)
    images = make_inputs(source, 2)
    with RUNNERS.get("torch")(source, BenchSettings(threads=1), tmp_path) as eager:
        expected = eager.infer(images)
    with RUNNERS.get("inductor")(source, BenchSettings(threads=1), tmp_path) as runner:
        got = runner.infer(images)
        assert runner.describe()["compiled_batches"] == [2]
        harness = Harness(runner)
        with torch.compiler.set_stance("fail_on_recompile"):  # any compilation now raises
            harness.warm_up(5)
            harness.measure(iterations=3, duration_s=0.0)
        assert len(harness.records) == 3
    for name, out in expected.items():
        np.testing.assert_allclose(got[name], out, rtol=1e-4, atol=1e-5)


def test_bench_reports_the_compile_time_apart(dense_ckpt: Path, fast: BenchSettings) -> None:
    report = bench_models([dense_ckpt], backends=["inductor"], batches=(2,), settings=fast)
    (result,) = report.results
    assert result.backend == "inductor" and result.queries >= fast.iterations
    assert result.prepare_s > 0 and result.to_dict()["prepare_s"] == result.prepare_s
    assert result.settings["compile"] == "torch.compile(mode='default', dynamic=False, fullgraph=True)"
    assert result.settings["compiled_batches"] == [2]


def test_missing_compiler_is_one_line(dense_ckpt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mtlexport.bench.runners import inductor

    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(inductor.shutil, "which", lambda name: None)
    runner = RUNNERS.get("inductor")(load_source(dense_ckpt), BenchSettings())
    with pytest.raises(BackendUnavailableError, match="needs a C\\+\\+ compiler") as info:
        runner.activate()
    assert "\n" not in str(info.value)


@pytest.mark.gpu
@pytest.mark.parametrize("options", [{}, {"cuda_graph": True}, {"precision": "fp16", "channels_last": True}])
def test_inductor_cuda_options(options: dict, dense_ckpt: Path, tmp_path: Path) -> None:
    settings = BenchSettings(device="cuda", **options)
    with RUNNERS.get("inductor")(load_source(dense_ckpt), settings, tmp_path) as runner:
        outputs = runner.infer(make_inputs(runner.source, 2))
        assert all(np.isfinite(v).all() for v in outputs.values())
        harness = Harness(runner)
        with torch.compiler.set_stance("fail_on_recompile"):
            harness.measure(iterations=3, duration_s=0.0)
        assert all(r.compute_ms > 0 for r in harness.records)
