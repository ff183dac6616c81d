"""``export_model``: checkpoint -> validated ONNX (+ FP16), TensorRT engine, trtexec folder."""

from __future__ import annotations

import datetime as _dt
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mtlexport.errors import ConfigError
from mtlexport.export import onnx_export as ox
from mtlexport.export import trtexec
from mtlexport.export.manifest import MANIFEST_FILE, SCHEMA, SCHEMA_VERSION, file_table, sha256_file
from mtlexport.export.options import ExportOptions, choose_trt_major, resolve_size
from mtlexport.export.precision import RECIPE as FP16_RECIPE
from mtlexport.export.precision import convert_to_fp16
from mtlexport.export.pt2 import PT2_FILE, export_program, program_outputs
from mtlexport.data.samples import real_images
from mtlexport.export.trt import TrtProbe, build_engine, builder_plan, probe_tensorrt, run_engine
from mtlexport.export.validate import (OutputCheck, compare, ort_outputs, ort_run_info, ort_session,
                                       raise_for_failures, random_images, torch_outputs)
from mtlexport.io import atomic_dir, write_json
from mtlexport.models import ModelSpec
from mtlexport.reporting import NullReporter, Reporter
from mtlexport.tasks import build_tasks

STEPS = 6


@dataclass(frozen=True)
class ExportReport:
    """The outcome of one export: where it went, sizes, every check, and what was skipped."""

    out_dir: Path
    files: dict[str, int]
    checks: tuple[OutputCheck, ...]
    engine_built: bool
    trt_version: int
    notices: tuple[str, ...] = ()
    seconds: float = 0.0
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def onnx_bytes(self) -> dict[str, int]:
        """Sizes of the ONNX files."""
        return {k: v for k, v in self.files.items() if k.endswith(".onnx")}

    def to_dict(self) -> dict[str, Any]:
        return {"out_dir": str(self.out_dir), "manifest": str(self.out_dir / MANIFEST_FILE), "files": dict(self.files), "onnx_bytes": self.onnx_bytes,
                "checks": [c.to_dict() for c in self.checks], "engine_built": self.engine_built,
                "trt_version": self.trt_version, "notices": list(self.notices), "seconds": round(self.seconds, 3)}


def export_model(checkpoint: Path, out_dir: Path, options: ExportOptions,
                 reporter: Reporter | None = None, *, factory: str | None = None) -> ExportReport:
    """Export a checkpoint into ``out_dir`` (replaced atomically; left untouched on any failure).

    A checkpoint of your own model needs ``factory`` (``--model``), the one it records."""
    from mtlexport.train.checkpoint import load_checkpoint

    checkpoint = Path(checkpoint)
    ckpt = load_checkpoint(checkpoint)
    source = {"checkpoint": str(checkpoint.resolve()), "sha256": sha256_file(checkpoint), "epoch": ckpt.epoch}
    return export_network(ckpt.build_model(factory=factory), ckpt.spec, Path(out_dir), options,
                          data_config=ckpt.config.get("data"), source=source, reporter=reporter)


def export_weights(weights: Path, factory: str, out_dir: Path, options: ExportOptions,
                   reporter: Reporter | None = None) -> ExportReport:
    """Export your own model from a plain ``state_dict`` file (or a ``slim --model`` output):
    ``factory`` builds it; the outputs are named as ``forward`` returns them."""
    from mtlexport.models.factory import weights_checkpoint

    weights = Path(weights)
    ckpt = weights_checkpoint(weights, factory, (options.height or 64, options.width or 64))
    source = {"checkpoint": str(weights.resolve()), "sha256": sha256_file(weights), "epoch": 0}
    return export_network(ckpt.build_model(factory=factory), ckpt.spec, Path(out_dir), options, source=source,
                          reporter=reporter)


def export_network(model: nn.Module, spec: ModelSpec, out_dir: Path, options: ExportOptions, *,
                   data_config: dict[str, Any] | None = None, source: dict[str, Any] | None = None,
                   reporter: Reporter | None = None) -> ExportReport:
    """Export an in-memory model built from ``spec`` (``export_model`` without the checkpoint)."""
    from mtlexport.train.checkpoint import check_finite_weights

    reporter = reporter or NullReporter()
    start = time.perf_counter()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file; give a folder")
    check_finite_weights(model.state_dict(), (source or {}).get("checkpoint") or "the model")
    height, width = resolve_size(options, data_config, spec.backbone.output_stride)
    chw = (spec.in_channels, height, width)
    probe = probe_tensorrt()
    major, target_from = choose_trt_major(options.trt_version, probe.major)
    names = spec.task_names
    tasks = build_tasks(spec)
    model = model.eval()
    old_cache = out_dir / trtexec.TIMING_CACHE_FILE
    cache_in = old_cache.read_bytes() if old_cache.is_file() else None

    notices: list[str] = []
    reporter.start("export", "Exporting", total=STEPS)
    # Each advance names the step that starts now (the first, ONNX export, takes the longest).
    reporter.advance("export", 0, step=f"ONNX ({options.exporter}{', onnxslim' if options.simplify else ''})")
    try:
        with atomic_dir(out_dir) as stage:
            exporter = _write_onnx(model, names, stage, chw, options)
            reporter.advance("export", step="FP16 model" if options.precision == "fp16" else "precision")
            models = {"fp32": stage / "model.onnx"}
            if options.precision == "fp16":
                _write_fp16(models["fp32"], stage / "model.fp16.onnx", names)
                models["fp16"] = stage / "model.fp16.onnx"
            reporter.advance("export", step="validating on ONNX Runtime")

            inputs, real_opt, real_note = _validation_inputs(options, data_config, chw)
            if real_note:
                notices.append(f"real-data validation skipped: {real_note}")
                reporter.message(notices[-1])
            checks: list[OutputCheck] = []
            runs: list[dict[str, Any]] = []
            refs: dict[str, list[np.ndarray]] = {key: torch_outputs(model, names, x) for key, x in inputs.items()}
            with tempfile.TemporaryDirectory(prefix="mtlexport-ort-") as scratch:
                for precision, path in models.items():
                    tolerances = {n: tasks[n].tolerance(precision) for n in names}
                    optimized = Path(scratch) / path.name
                    session = ort_session(path, optimized)
                    runs.append(ort_run_info(path, optimized))
                    for key, x in inputs.items():
                        got = ort_outputs(session, x.numpy())
                        checks += compare(path.name, f"ort:{key}", names, got, refs[key], tolerances)
            program = None
            if "pt2" in options.formats:
                example = random_images(max(2, options.batch.opt), chw[1], chw[2], options.seed, chw[0])
                program = {"file": PT2_FILE, "how": export_program(model, stage / PT2_FILE, names, example),
                           "input": ox.INPUT_NAME, "outputs": list(names), "dynamic": {"batch": 0}}
                tolerances = {n: tasks[n].tolerance("fp32") for n in names}
                runs.append({"model": PT2_FILE, "runtime": f"torch {torch.__version__}", "provider": "torch.export.load",
                             "computed_in": "float32"})
                for key, x in inputs.items():
                    checks += compare(PT2_FILE, f"torch.export:{key}", names, program_outputs(stage / PT2_FILE, x),
                                      refs[key], tolerances)
            raise_for_failures(checks)
            reporter.advance("export", step="reference outputs")

            reference = _write_reference(model, names, stage, real_opt, options, chw)
            reporter.advance("export", step="TensorRT engine")

            plan = builder_plan(major, options.precision, options.workspace_mib, options.optimization_level,
                                options.tf32)
            build = None
            if options.engine and probe.available and probe.major == major:
                build = build_engine(stage, plan, options.batch, chw, cache_in)
                tolerances = {n: task_tolerance(tasks[n], plan.engine_precision) for n in names}
                runs.append({"model": build.plan, "runtime": f"tensorrt {probe.version}", "provider": "TensorRT",
                             "computed_in": {"fp16": "float16", "tf32": "tf32", "fp32": "float32"}[plan.engine_precision]})
                for key, x in inputs.items():
                    got = run_engine(stage / build.plan, x, names)
                    checks += compare(build.plan, f"trt:{key}", names, got, refs[key], tolerances)
                raise_for_failures(checks)
            else:
                reason = _not_built_reason(options, probe, major)
                notices.append(f"TensorRT engine not built: {reason}; run trtexec_build.sh on the target machine")
                reporter.message(notices[-1])
            reporter.advance("export", step="scripts and manifest")

            settings = trtexec.BenchSettings()
            (stage / trtexec.BUILD_SCRIPT).write_text(trtexec.build_script(
                major, options.precision, options.batch, chw, options.workspace_mib, options.optimization_level,
                options.tf32))
            (stage / trtexec.BENCH_SCRIPT).write_text(trtexec.bench_script(major, options.batch, chw, settings))
            for script in (trtexec.BUILD_SCRIPT, trtexec.BENCH_SCRIPT):
                (stage / script).chmod(0o755)

            manifest = _manifest(spec, model, tasks, options, chw, exporter, probe, (major, target_from), plan, build,
                                 settings, checks, runs, notices, reference, stage, source or {}, inputs)
            if program is not None:
                manifest["programs"] = {"pt2": program}
            write_json(stage / MANIFEST_FILE, manifest)
            (stage / MANIFEST_FILE).chmod(0o644)
            stage.chmod(0o755)  # the staging folder is created private; the export is shareable
            reporter.advance("export", step="done")
            files = {k: v["bytes"] for k, v in manifest["files"].items()}
    finally:
        reporter.finish("export")
    return ExportReport(out_dir, files, tuple(checks), build is not None, major, tuple(notices),
                        time.perf_counter() - start, manifest)


def _write_onnx(model: nn.Module, names: tuple[str, ...], stage: Path, chw: tuple[int, int, int],
                options: ExportOptions) -> str:
    path = stage / "model.onnx"
    example = random_images(max(2, options.batch.opt), chw[1], chw[2], options.seed, chw[0])
    exporter = ox.export_onnx(model, path, names, example, options.opset, options.exporter)
    ox.normalise_batch_dim(path)
    ox.check_onnx(path, names)
    if options.simplify:
        ox.simplify_onnx(path)
        ox.normalise_batch_dim(path)
        ox.check_onnx(path, names)
    return exporter


def _write_fp16(src: Path, dst: Path, names: tuple[str, ...]) -> None:
    import onnx

    onnx.save(convert_to_fp16(ox.load_onnx(src)), str(dst))
    ox.check_onnx(dst, names)


def _validation_inputs(options: ExportOptions, data_config: dict[str, Any] | None,
                       chw: tuple[int, int, int]) -> tuple[dict[str, Tensor], Tensor | None, str | None]:
    """Random and (when available) real inputs at the MIN and MAX batch, plus a real OPT batch."""
    batches = sorted({options.batch.min, options.batch.max})
    inputs = {f"random@{b}": random_images(b, chw[1], chw[2], options.seed + b, chw[0]) for b in batches}
    note = None
    if options.real_data:
        real, note = real_images(data_config, options.batch.max, chw[1], chw[2])
        if real is not None and real.shape[1] == chw[0]:
            inputs.update({f"real@{b}": real[:b] for b in batches})
        elif real is not None:
            real, note = None, f"dataset images have {real.shape[1]} channels, the model takes {chw[0]}"
    else:
        real, note = None, "--no-real-data"
    return inputs, (real[: options.batch.opt] if real is not None else None), note


def _write_reference(model: nn.Module, names: tuple[str, ...], stage: Path, x: Tensor | None,
                     options: ExportOptions, chw: tuple[int, int, int]) -> dict[str, Any]:
    """``inputs/images.bin`` at the OPT batch (real data when available) and ``refs/<output>.bin``
    from PyTorch, raw little-endian float32."""
    kind = "real"
    if x is None:
        x, kind = random_images(options.batch.opt, chw[1], chw[2], options.seed, chw[0]), "random"
    (stage / "inputs").mkdir()
    (stage / "refs").mkdir()
    x.numpy().astype("<f4").tofile(stage / trtexec.INPUT_FILE)
    outputs = {}
    for name, ref in zip(names, torch_outputs(model, names, x), strict=True):
        rel = f"refs/{name}.bin"
        ref.astype("<f4").tofile(stage / rel)
        outputs[name] = {"file": rel, "shape": list(ref.shape)}
    return {"input": {"file": trtexec.INPUT_FILE, "shape": list(x.shape), "source": kind},
            "outputs": outputs, "dtype": "float32", "byte_order": "little"}


def _versions(exporter: str, opset: int, probe: TrtProbe, built: bool) -> dict[str, Any]:
    import onnx
    import onnxruntime
    import onnxslim

    import mtlexport

    out: dict[str, Any] = {"mtlexport": mtlexport.__version__, "torch": str(torch.__version__),
                           "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                           "onnxslim": str(getattr(onnxslim, "__version__", "unknown")),
                           "opset": opset, "exporter": exporter}
    if built:
        out.update({"tensorrt": probe.version, "cuda": probe.cuda, "gpu": probe.gpu})
    return out


def task_tolerance(task: Any, precision: str) -> Any:
    """The task's tolerance for ``precision``; ``tf32`` (TensorRT's default for FP32 layers) takes
    the fp16 one: TF32 rounds to FP16's 10-bit mantissa (with FP32's range)."""
    return task.tolerance("fp16" if precision == "tf32" else precision)


def _manifest(spec: ModelSpec, model: nn.Module, tasks: dict[str, Any], options: ExportOptions,
              chw: tuple[int, int, int], exporter: str, probe: TrtProbe, target: tuple[int, str], plan: Any,
              build: Any, settings: trtexec.BenchSettings, checks: list[OutputCheck], runs: list[dict[str, Any]],
              notices: list[str], reference: dict[str, Any], stage: Path, source: dict[str, Any],
              inputs: dict[str, Tensor]) -> dict[str, Any]:
    from mtlexport.models.profile import profile_model

    major, target_from = target
    profile = profile_model(model, chw)
    b = options.batch
    outputs = []
    for name in spec.task_names:
        task = tasks[name]
        shape = ["batch", *reference["outputs"][name]["shape"][1:]]
        outputs.append({"name": name, "task": name, "task_type": task.spec.type, "num_outputs": task.spec.num_outputs,
                        "dtype": "float32", "shape": shape,
                        "tolerance": {p: task_tolerance(task, p).to_dict() for p in ("fp32", "fp16", "tf32")}})
    models = {"fp32": "model.onnx", **({"fp16": "model.fp16.onnx"} if options.precision == "fp16" else {})}
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(exporter, options.opset, probe, build is not None),
        "options": options.to_dict(),
        "input": {"name": ox.INPUT_NAME, "dtype": "float32", "layout": "NCHW", "shape": ["batch", *chw],
                  "batch": b.to_dict(), "min_shape": [b.min, *chw], "opt_shape": [b.opt, *chw],
                  "max_shape": [b.max, *chw]},
        "outputs": outputs,
        "precision": {"requested": options.precision, "models": models,
                      "recipe": _recipe(options.precision, major, runs)},
        "validation": {"passed": all(c.passed for c in checks), "inputs": sorted(inputs),
                       "real_data": any(k.startswith("real@") for k in inputs), "notices": list(notices),
                       "runs": runs, "checks": [c.to_dict() for c in checks]},
        "reference": reference,
        "tensorrt": {"target_major": major, "target_from": target_from, "engine_built": build is not None,
                     "engine_precision": plan.engine_precision,
                     "not_built_reason": None if build else _not_built_reason(options, probe, major),
                     "probe": probe.to_dict(), "builder": plan.to_dict(),
                     "build": build.to_dict() if build else None},
        "trtexec": {"build_script": trtexec.BUILD_SCRIPT, "bench_script": trtexec.BENCH_SCRIPT,
                    "build_flags": trtexec.build_flags(major, options.precision, b, chw, options.workspace_mib,
                                                       options.optimization_level, options.tf32),
                    "bench_flags": trtexec.bench_flags(major, b, chw, settings), "bench": settings.to_dict(),
                    "runtime": settings.runtime(), "runtime_defaults": trtexec.RUNTIME_DEFAULTS[major]},
        "source": {**source, "spec": {"name": spec.name, "backbone": "factory" if spec.factory else spec.backbone.name,
                                      "factory": spec.factory or None,
                                      "output_stride": spec.backbone.output_stride,
                                      "tasks": [{"name": t.name, "type": t.type} for t in spec.tasks],
                                      "widths_count": len(spec.widths), "params": profile.params,
                                      "macs_per_sample": profile.macs}},
        "files": file_table(stage),
        "engine_files": file_table(stage, engine=True),
    }


def _not_built_reason(options: ExportOptions, probe: TrtProbe, major: int) -> str:
    if not options.engine:
        return "--no-engine was given"
    return probe.reason or f"the installed TensorRT is {probe.major} but the target is {major} (--trt-version)"


def _recipe(precision: str, major: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    if precision == "fp32":
        return {"name": "fp32", "onnx": "model.onnx", "tensorrt": "FP32 (no precision flags)"}
    ort = next((r for r in runs if r["model"] == "model.fp16.onnx"), {})
    engine = next((r for r in runs if r.get("provider") == "TensorRT"), None)
    validated = (f"model.fp16.onnx was validated on {ort.get('runtime', 'onnxruntime')} CPU, which computed its "
                 f"convolutions in {ort.get('computed_in', 'unknown')} (it inserted {ort.get('casts_inserted', '?')} "
                 "Casts): that checks the graph and the float16 rounding of the weights, not float16 arithmetic; ")
    validated += ("the TensorRT engine check ran it in float16" if engine else
                  "float16 arithmetic is first checked when an engine is built (the engine check) or on a GPU "
                  "provider ('mtlexport bench' with references)")
    return {"name": FP16_RECIPE, "onnx": "model.fp16.onnx",
            "description": "float16 weights and activations, float32 inputs/outputs via Cast; Resize scales kept float32",
            "tensorrt": "model.onnx + BuilderFlag.FP16 / --fp16" if major < 11
            else "model.fp16.onnx, strongly typed (no precision flags)",
            "validated": validated}
