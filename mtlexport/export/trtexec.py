"""trtexec build and benchmark scripts for TensorRT 10 and 11, as flag lists and bash text.

Everything here is pure (no TensorRT needed) so the flag choice per version is testable.
TensorRT 10 vs 11, as documented by NVIDIA's 10.x -> 11.x migration guide:

- TRT 11 networks are strongly typed: ``--fp16/--int8/--best`` are gone and precision must be
  baked into the ONNX (we pass ``model.fp16.onnx``); TRT 10 builds ``model.onnx`` with ``--fp16``.
- TRT 10 removed ``--workspace/--explicitBatch/--buildOnly`` (use ``--memPoolSize`` and
  ``--skipInference``); we never emit them.
- trtexec's inference defaults differ: TRT 10 runs without CUDA graphs or spin-wait and with
  host/device transfers; TRT 11 turns CUDA graphs and spin-wait on and transfers off. Our
  scripts state the wanted settings explicitly where a flag exists for them.
- ``--separateProfileRun`` (per-layer profiling in a run of its own, so it does not disturb the
  timed run) is TRT 10 only: in 11 it is a deprecated no-op and the profile run is always separate.
- TF32 is on by default in both; ``--noTF32`` turns it off (``ExportOptions.tf32=False``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from mtlexport.export.onnx_export import INPUT_NAME
from mtlexport.export.options import BatchRange

PLAN_FILE = "model.plan"
TIMING_CACHE_FILE = "timing.cache"
# Files that trtexec_build.sh / trtexec_bench.sh (or a Python build) may write after export.
BENCH_OUTPUT_FILES = ("times.json", "profile.json", "layers.json")
INPUT_FILE = "inputs/images.bin"
BUILD_SCRIPT = "trtexec_build.sh"
BENCH_SCRIPT = "trtexec_bench.sh"

# trtexec inference defaults per TensorRT major version.
RUNTIME_DEFAULTS: dict[int, dict[str, bool]] = {
    10: {"cuda_graph": False, "spin_wait": False, "data_transfers": True},
    11: {"cuda_graph": True, "spin_wait": True, "data_transfers": False},
}


@dataclass(frozen=True)
class BenchSettings:
    """trtexec benchmark settings; the defaults measure GPU compute with little host noise."""

    warmup_ms: int = 500
    duration_s: int = 10
    iterations: int = 100
    avg_runs: int = 10
    percentiles: tuple[int, ...] = (50, 90, 95, 99)
    cuda_graph: bool = True
    spin_wait: bool = True
    data_transfers: bool = False

    def runtime(self) -> dict[str, bool]:
        """The three settings whose trtexec defaults changed between TensorRT 10 and 11."""
        return {"cuda_graph": self.cuda_graph, "spin_wait": self.spin_wait, "data_transfers": self.data_transfers}

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["percentiles"] = list(self.percentiles)
        return out


def onnx_file_for(major: int, precision: str) -> str:
    """The ONNX a TensorRT ``major`` build reads: the FP16 model for TRT 11 FP16, else model.onnx."""
    return "model.fp16.onnx" if precision == "fp16" and major >= 11 else "model.onnx"


def uses_fp16_flag(major: int, precision: str) -> bool:
    """Whether the builder FP16 flag (``--fp16`` / BuilderFlag.FP16) applies: TRT 10 FP16 only."""
    return precision == "fp16" and major < 11


def shape_text(shape: tuple[int, ...]) -> str:
    """``images:NxCxHxW``."""
    return f"{INPUT_NAME}:" + "x".join(str(d) for d in shape)


def memory_text(mib: int) -> str:
    """``4G`` when a whole number of GiB, else ``512M`` (trtexec's memPoolSize units)."""
    return f"{mib // 1024}G" if mib % 1024 == 0 else f"{mib}M"


def build_flags(major: int, precision: str, batch: BatchRange, chw: tuple[int, int, int],
                workspace_mib: int, optimization_level: int, tf32: bool = True) -> list[str]:
    """trtexec flags that build ``model.plan`` (no inference) with the timing cache."""
    flags = [
        f"--onnx={onnx_file_for(major, precision)}",
        f"--saveEngine={PLAN_FILE}",
        f"--minShapes={shape_text((batch.min, *chw))}",
        f"--optShapes={shape_text((batch.opt, *chw))}",
        f"--maxShapes={shape_text((batch.max, *chw))}",
        f"--memPoolSize=workspace:{memory_text(workspace_mib)}",
        f"--timingCacheFile={TIMING_CACHE_FILE}",
        f"--builderOptimizationLevel={optimization_level}",
        "--profilingVerbosity=detailed",
        "--skipInference",
    ]
    if uses_fp16_flag(major, precision):
        flags.append("--fp16")
    if not tf32:
        flags.append("--noTF32")
    return flags


def runtime_flags(major: int, settings: BenchSettings) -> list[str]:
    """Flags that make the CUDA-graph / spin-wait / transfer settings hold on ``major``."""
    if major >= 11:
        # TRT 11 defaults are graphs on, spin-wait on, transfers off: only deviations need flags.
        flags = []
        if not settings.cuda_graph:
            flags.append("--noCudaGraph")
        if not settings.spin_wait:
            flags.append("--noSpinWait")
        if settings.data_transfers:
            flags.append("--includeDataTransfers")
        return flags
    flags = []
    if settings.cuda_graph:
        flags.append("--useCudaGraph")
    if settings.spin_wait:
        flags.append("--useSpinWait")
    if not settings.data_transfers:
        flags.append("--noDataTransfers")
    return flags


def bench_flags(major: int, batch: BatchRange, chw: tuple[int, int, int], settings: BenchSettings) -> list[str]:
    """trtexec flags that time ``model.plan`` at the OPT batch on the stored input."""
    return [
        f"--loadEngine={PLAN_FILE}",
        f"--shapes={shape_text((batch.opt, *chw))}",
        f"--loadInputs={INPUT_NAME}:{INPUT_FILE}",
        f"--warmUp={settings.warmup_ms}",
        f"--duration={settings.duration_s}",
        f"--iterations={settings.iterations}",
        f"--avgRuns={settings.avg_runs}",
        "--percentile=" + ",".join(str(p) for p in settings.percentiles),
        *runtime_flags(major, settings),
        *(["--separateProfileRun"] if major < 11 else []),
        "--exportTimes=times.json",
        "--exportProfile=profile.json",
        "--exportLayerInfo=layers.json",
    ]


def render_script(description: str, flags: list[str], notes: list[str] | None = None) -> str:
    """A bash script running ``$TRTEXEC`` (default ``trtexec``) with ``flags`` from its own folder."""
    lines = [
        "#!/usr/bin/env bash",
        f"# {description}",
        "# Generated by mtlexport; every path is relative to this folder.",
        *[f"# {note}" for note in notes or []],
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
        'TRTEXEC="${TRTEXEC:-trtexec}"',
        '"$TRTEXEC" \\',
    ]
    lines += [f"    {flag} \\" for flag in flags[:-1]] + [f"    {flags[-1]}"]
    return "\n".join(lines) + "\n"


def runtime_note(major: int, settings: BenchSettings) -> str:
    """A comment line stating the effective settings and the version's defaults."""
    want = settings.runtime()
    defaults = RUNTIME_DEFAULTS[11 if major >= 11 else 10]
    said = ", ".join(f"{k}={'on' if v else 'off'}" for k, v in want.items())
    base = ", ".join(f"{k}={'on' if v else 'off'}" for k, v in defaults.items())
    return f"Benchmark settings: {said} (TensorRT {major} trtexec defaults: {base})."


def build_script(major: int, precision: str, batch: BatchRange, chw: tuple[int, int, int],
                 workspace_mib: int, optimization_level: int, tf32: bool = True) -> str:
    """Text of ``trtexec_build.sh``."""
    flags = build_flags(major, precision, batch, chw, workspace_mib, optimization_level, tf32)
    notes = ["Rebuilding model.plan / timing.cache here is expected: 'mtlexport bench' accepts engine files "
             "written after export (they are not covered by the manifest's SHA-256 check)."]
    if precision == "fp16":
        notes.append("FP16 via --fp16 (TensorRT 10 weak typing)." if major < 11
                     else "FP16 baked into model.fp16.onnx (TensorRT 11 is strongly typed: no precision flags).")
    return render_script(f"Build {PLAN_FILE} with TensorRT {major} trtexec ({precision}).", flags, notes)


def bench_script(major: int, batch: BatchRange, chw: tuple[int, int, int], settings: BenchSettings) -> str:
    """Text of ``trtexec_bench.sh``."""
    flags = bench_flags(major, batch, chw, settings)
    return render_script(f"Benchmark {PLAN_FILE} with TensorRT {major} trtexec at batch {batch.opt}.", flags,
                         [runtime_note(major, settings)])
