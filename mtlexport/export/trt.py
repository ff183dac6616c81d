"""TensorRT engine build and one verification run, through the Python API of TRT 10 and 11.

``tensorrt`` is imported lazily (the ``trt`` extra); ``probe_tensorrt`` says whether a build
can happen here and, if not, why. The plan file is the raw ``build_serialized_network`` bytes:
no header, so trtexec and C++ loaders read it; metadata goes to the manifest instead.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from mtlexport.errors import BackendUnavailableError, ExportError
from mtlexport.export.onnx_export import INPUT_NAME
from mtlexport.export.options import BatchRange
from mtlexport.export.trtexec import onnx_file_for, uses_fp16_flag


@dataclass(frozen=True)
class TrtProbe:
    """Whether an engine can be built here; ``reason`` says why not."""

    available: bool
    reason: str | None = None
    version: str | None = None
    major: int | None = None
    cuda: str | None = None
    gpu: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BuilderPlan:
    """The version-dependent builder choices (pure data, testable without TensorRT)."""

    major: int
    network_flags: int
    fp16_flag: bool
    onnx_file: str
    workspace_mib: int
    optimization_level: int
    profiling_verbosity: str = "DETAILED"
    tf32: bool = True

    @property
    def engine_precision(self) -> str:
        """Which tolerance set the engine is validated with: fp16, tf32 or fp32."""
        if self.fp16_flag or self.onnx_file.endswith(".fp16.onnx"):
            return "fp16"
        return "tf32" if self.tf32 else "fp32"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def builder_plan(major: int, precision: str, workspace_mib: int, optimization_level: int,
                 tf32: bool = True) -> BuilderPlan:
    """Network flags are 0 on 10 and 11 (explicit batch is the only mode; TRT 11 is strongly
    typed by default); the FP16 flag exists only on 10, TRT 11 reads the FP16 ONNX instead.
    TF32 is on in a fresh builder config of both; ``tf32=False`` clears it."""
    return BuilderPlan(major=major, network_flags=0, fp16_flag=uses_fp16_flag(major, precision),
                       onnx_file=onnx_file_for(major, precision), workspace_mib=workspace_mib,
                       optimization_level=optimization_level, tf32=tf32)


_LIBRARY = re.compile(r"(lib[\w.+-]*?\.so(?:\.\d+)*|[\w.+-]+\.dll)")


def import_tensorrt(who: str = "tensorrt") -> Any:
    """Import the ``tensorrt`` module, or raise BackendUnavailableError (one line) saying what
    is missing: the package itself, or a native library it needs (e.g. ``libnvinfer``)."""
    try:
        import tensorrt
    except ModuleNotFoundError as exc:
        if exc.name == "tensorrt":
            raise BackendUnavailableError(f"{who}: the tensorrt package is not installed (install the 'trt' extra "
                                          "on a machine with an NVIDIA GPU)") from None
        raise BackendUnavailableError(f"{who}: tensorrt is installed but its module {exc.name!r} is missing; "
                                      "reinstall the 'trt' extra") from None
    except (ImportError, OSError) as exc:  # the bindings load libnvinfer & co. when imported
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        found = _LIBRARY.search(first)
        if found:
            raise BackendUnavailableError(
                f"{who}: tensorrt is installed but the TensorRT library {found.group(1)} cannot be loaded ({first}); "
                "install the TensorRT runtime libraries (the tensorrt-cu*-libs wheels from NVIDIA's index) or add "
                "their folder to LD_LIBRARY_PATH") from None
        raise BackendUnavailableError(f"{who}: tensorrt is installed but cannot be imported: {first}") from None
    return tensorrt


def probe_tensorrt() -> TrtProbe:
    """Import tensorrt and look for a CUDA GPU; never raises."""
    try:
        trt = import_tensorrt()
    except BackendUnavailableError as exc:
        return TrtProbe(False, str(exc))
    import torch

    version = str(getattr(trt, "__version__", "0"))
    major = _major(version)
    if not torch.cuda.is_available():
        return TrtProbe(False, f"no CUDA GPU is visible to torch (tensorrt {version} is installed)", version, major)
    return TrtProbe(True, None, version, major, str(torch.version.cuda), torch.cuda.get_device_name(0))


def _major(version: str) -> int | None:
    try:
        return int(version.split(".")[0])
    except ValueError:
        return None


@dataclass(frozen=True)
class EngineBuild:
    """What a build produced (file names relative to the export folder)."""

    plan: str
    layers: str
    log: str
    seconds: float
    timing_cache: str
    plan_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _collector(trt: Any) -> Any:
    class LogCollector(trt.ILogger):
        """Keeps every builder/runtime message for the build log."""

        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.lines: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            self.lines.append(f"[{getattr(severity, 'name', severity)}] {msg}")

    return LogCollector()


def build_engine(folder: Path, plan: BuilderPlan, batch: BatchRange, chw: tuple[int, int, int],
                 cache_in: bytes | None) -> EngineBuild:
    """Build ``model.plan`` in ``folder`` from ``plan.onnx_file``; writes the timing cache,
    the engine inspector's layer JSON and the build log beside it."""
    trt = import_tensorrt("engine build")

    logger = _collector(trt)
    start = time.perf_counter()
    builder = trt.Builder(logger)
    network = builder.create_network(plan.network_flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(folder / plan.onnx_file)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        _write_log(folder, logger.lines)
        raise ExportError(f"TensorRT cannot parse {plan.onnx_file}: {errors[:500]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_mib << 20)
    config.builder_optimization_level = plan.optimization_level
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if plan.fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)
    if not plan.tf32:
        config.clear_flag(trt.BuilderFlag.TF32)
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, (batch.min, *chw), (batch.opt, *chw), (batch.max, *chw))
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(cache_in or b"")
    config.set_timing_cache(cache, ignore_mismatch=True)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        _write_log(folder, logger.lines)
        raise ExportError(f"TensorRT failed to build an engine from {plan.onnx_file}; see the build log lines: "
                          + " | ".join(logger.lines[-3:]))
    plan_bytes = bytes(serialized)
    (folder / "model.plan").write_bytes(plan_bytes)  # raw plan: no header
    (folder / "timing.cache").write_bytes(bytes(config.get_timing_cache().serialize()))
    seconds = time.perf_counter() - start
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(plan_bytes)
    # Without an execution context whose input shape is set, dynamic dimensions print as -1.
    context = engine.create_execution_context()
    set_input_shape(context, (batch.opt, *chw))
    inspector = engine.create_engine_inspector()
    inspector.execution_context = context
    (folder / "engine.layers.json").write_text(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    _write_log(folder, logger.lines)
    return EngineBuild("model.plan", "engine.layers.json", "engine_build.log", round(seconds, 3),
                       "timing.cache", len(plan_bytes))


def set_input_shape(context: Any, shape: tuple[int, ...]) -> None:
    """``context.set_input_shape`` for ``images``; ExportError when TensorRT rejects the shape
    (it returns False, e.g. outside the optimisation profile, instead of raising)."""
    if not context.set_input_shape(INPUT_NAME, tuple(shape)):
        raise ExportError(f"TensorRT rejected input shape {list(shape)} for {INPUT_NAME!r}; it must lie inside the "
                          "engine's optimisation profile (export --batch MIN:OPT:MAX)")


def _write_log(folder: Path, lines: list[str]) -> None:
    (folder / "engine_build.log").write_text("\n".join(lines) + "\n")


def run_engine(plan_path: Path, images: Tensor, names: tuple[str, ...]) -> list[np.ndarray]:
    """Run the engine once on ``images`` with torch CUDA tensors as I/O buffers."""
    import torch

    trt = import_tensorrt("engine check")

    logger = _collector(trt)
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(plan_path.read_bytes())
    if engine is None:
        raise ExportError(f"TensorRT cannot load {plan_path.name}: " + " | ".join(logger.lines[-3:]))
    context = engine.create_execution_context()
    x = images.to(device="cuda", dtype=torch.float32).contiguous()
    set_input_shape(context, tuple(x.shape))
    context.set_tensor_address(INPUT_NAME, x.data_ptr())
    outputs: dict[str, Tensor] = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) != trt.TensorIOMode.OUTPUT:
            continue
        dtype = torch.from_numpy(np.empty(0, dtype=trt.nptype(engine.get_tensor_dtype(name)))).dtype
        out = torch.empty(tuple(context.get_tensor_shape(name)), dtype=dtype, device="cuda")
        context.set_tensor_address(name, out.data_ptr())
        outputs[name] = out
    stream = torch.cuda.Stream()
    if not context.execute_async_v3(stream.cuda_stream):
        raise ExportError("TensorRT execute_async_v3 failed: " + " | ".join(logger.lines[-3:]))
    stream.synchronize()
    missing = [n for n in names if n not in outputs]
    if missing:
        raise ExportError(f"engine lacks outputs {missing}; it has {sorted(outputs)}")
    return [outputs[n].float().cpu().numpy() for n in names]
