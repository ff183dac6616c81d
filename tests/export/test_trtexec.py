"""trtexec scripts and flags for TensorRT 10 and 11."""

from __future__ import annotations

import re

from mtlexport.export.options import BatchRange
from mtlexport.export.trtexec import (BenchSettings, bench_flags, bench_script, build_flags, build_script,
                                      memory_text, runtime_flags)

BATCH = BatchRange(1, 4, 8)
CHW = (3, 64, 96)
REMOVED_IN_10 = ("--workspace", "--explicitBatch", "--buildOnly")
PRECISION_FLAGS = ("--fp16", "--int8", "--best")


def test_build_flags_trt10_fp32() -> None:
    flags = build_flags(10, "fp32", BATCH, CHW, 4096, 3)
    assert flags[:5] == ["--onnx=model.onnx", "--saveEngine=model.plan", "--minShapes=images:1x3x64x96",
                         "--optShapes=images:4x3x64x96", "--maxShapes=images:8x3x64x96"]
    assert "--memPoolSize=workspace:4G" in flags
    assert "--timingCacheFile=timing.cache" in flags and "--builderOptimizationLevel=3" in flags
    assert "--skipInference" in flags
    assert not any(f.startswith(REMOVED_IN_10 + PRECISION_FLAGS) for f in flags)


def test_fp16_uses_flag_on_trt10_and_fp16_onnx_on_trt11() -> None:
    trt10 = build_flags(10, "fp16", BATCH, CHW, 4096, 3)
    trt11 = build_flags(11, "fp16", BATCH, CHW, 4096, 3)
    assert "--fp16" in trt10 and "--onnx=model.onnx" in trt10
    assert "--onnx=model.fp16.onnx" in trt11
    assert not any(f.startswith(REMOVED_IN_10 + PRECISION_FLAGS) for f in trt11)


def test_memory_units() -> None:
    assert memory_text(4096) == "4G"
    assert memory_text(1536) == "1536M"


def test_runtime_flags_are_explicit_per_version() -> None:
    default = BenchSettings()  # graphs on, spin-wait on, transfers off
    assert runtime_flags(10, default) == ["--useCudaGraph", "--useSpinWait", "--noDataTransfers"]
    assert runtime_flags(11, default) == []  # TRT 11's own defaults
    opposite = BenchSettings(cuda_graph=False, spin_wait=False, data_transfers=True)
    assert runtime_flags(10, opposite) == []
    assert runtime_flags(11, opposite) == ["--noCudaGraph", "--noSpinWait", "--includeDataTransfers"]


def test_bench_flags() -> None:
    flags = bench_flags(10, BATCH, CHW, BenchSettings())
    for expected in ("--loadEngine=model.plan", "--shapes=images:4x3x64x96", "--loadInputs=images:inputs/images.bin",
                     "--warmUp=500", "--duration=10", "--iterations=100", "--avgRuns=10",
                     "--percentile=50,90,95,99", "--exportTimes=times.json", "--exportProfile=profile.json",
                     "--exportLayerInfo=layers.json"):
        assert expected in flags


def test_scripts_are_bash_and_relative() -> None:
    for major in (10, 11):
        for text in (build_script(major, "fp16", BATCH, CHW, 4096, 3), bench_script(major, BATCH, CHW, BenchSettings())):
            lines = text.splitlines()
            assert lines[0] == "#!/usr/bin/env bash"
            assert "set -euo pipefail" in lines and 'cd "$(dirname "$0")"' in lines
            assert not re.search(r"=\s*/|\.\./", text), "scripts must only reference files in the folder"
    assert "TensorRT 11" in bench_script(11, BATCH, CHW, BenchSettings())
    assert "cuda_graph=on, spin_wait=on, data_transfers=off" in bench_script(11, BATCH, CHW, BenchSettings())


def test_separate_profile_run_only_on_trt10() -> None:
    # TRT 11 trtexec: a deprecated no-op (the profiling run is always separate there).
    assert "--separateProfileRun" in bench_flags(10, BATCH, CHW, BenchSettings())
    assert "--separateProfileRun" not in bench_flags(11, BATCH, CHW, BenchSettings())
    assert "--separateProfileRun" not in bench_script(11, BATCH, CHW, BenchSettings())


def test_tf32_flag_only_when_turned_off() -> None:
    for major in (10, 11):
        assert "--noTF32" not in build_flags(major, "fp32", BATCH, CHW, 4096, 3)
        assert "--noTF32" in build_flags(major, "fp32", BATCH, CHW, 4096, 3, tf32=False)
        assert "--noTF32" in build_script(major, "fp32", BATCH, CHW, 4096, 3, tf32=False)
