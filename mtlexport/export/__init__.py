"""Export: validated ONNX (FP32 and FP16), TensorRT engines and trtexec-ready folders.

Owns ``export_model`` (checkpoint -> folder), ``load_export_dir`` (folder -> verified
``ExportManifest``, used by the bench helper) and the pieces behind them, one module each:
``options`` (validated settings), ``onnx_export`` (exporters, checker, onnxslim), ``pt2``
(``torch.export`` program),
``precision`` (FP16 with FP32 I/O), ``validate`` (ONNX Runtime / TensorRT vs PyTorch, on
random images and on ``mtlexport.data.samples``),
``trt`` (TensorRT Python API, lazy), ``trtexec`` (scripts per TRT version) and
``manifest``. Add a backend by writing its build/run pair like ``trt`` and recording it in
the manifest's ``tensorrt``-like section; bump ``SCHEMA_VERSION`` when a field changes meaning.

Export folder (every path relative to it)::

    model.onnx            FP32 model: input ``images`` (batch x C x H x W, float32, NCHW,
                          symbolic dim ``batch``), one output per task named after the task,
                          in spec order
    model.fp16.onnx       only with --precision fp16: float16 inside, float32 I/O
    model.pt2             only with --format pt2: torch.export program (dynamic batch, outputs
                          as a tuple in task order), validated like the ONNX
    trtexec_build.sh      builds model.plan (+ timing.cache) with trtexec
    trtexec_bench.sh      times model.plan; writes times.json, profile.json, layers.json
    inputs/images.bin     raw little-endian float32 input at the OPT batch
    refs/<output>.bin     PyTorch outputs for that input (same encoding)
    model.plan            raw TensorRT plan (no header): built here, or later by trtexec_build.sh
    timing.cache          TensorRT timing cache (reused by the next build into this folder)
    engine.layers.json    engine inspector layer information (DETAILED, shapes at OPT), when built
    engine_build.log      TensorRT builder log, when built
    manifest.json         everything below

The last four (and trtexec_bench.sh's times/profile/layers.json) are engine artifacts: they may
be written after export and are not covered by the SHA-256 check (see ``manifest``).

``manifest.json`` (schema ``mtlexport.export``, ``schema_version`` 2; 1 still loads)::

    schema, schema_version, created (UTC ISO-8601)
    versions      mtlexport, torch, onnx, onnxruntime, onnxslim, opset, exporter;
                  tensorrt, cuda, gpu when an engine was built
    options       the ExportOptions used
    input         name, dtype, layout "NCHW", shape ["batch", C, H, W],
                  batch {min, opt, max}, min_shape, opt_shape, max_shape
    outputs[]     name, task, task_type, num_outputs, dtype, shape ["batch", ...],
                  tolerance {fp32, fp16, tf32: {atol, rtol}}   (model order)
    precision     requested ("fp32"|"fp16"), models {fp32: file, fp16: file},
                  recipe {name, onnx, description, tensorrt, validated (fp16: what was
                  really checked where)}
    validation    passed, inputs (e.g. "random@1", "real@8"), real_data, notices,
                  runs[] {model, runtime, provider, computed_in, casts_in_model,
                  casts_inserted, conv_weight_types}   (what each runtime really ran),
                  checks[] {model, check, output, batch, max_abs, max_rel, worst,
                  atol, rtol, mismatched, total, passed}
    reference     input {file, shape, source}, outputs {name: {file, shape}},
                  dtype "float32", byte_order "little"
    tensorrt      target_major, target_from ("requested"|"installed"|"default"),
                  engine_built, engine_precision ("fp16"|"tf32"|"fp32": the tolerance
                  set a plan is checked with), not_built_reason, probe {...}, builder
                  {major, network_flags, fp16_flag, onnx_file, workspace_mib,
                  optimization_level, profiling_verbosity, tf32},
                  build {plan, layers, log, seconds, timing_cache, plan_bytes} | null
    trtexec       build_script, bench_script, build_flags[], bench_flags[],
                  bench {warmup_ms, duration_s, iterations, avg_runs, percentiles,
                  cuda_graph, spin_wait, data_transfers}, runtime {cuda_graph,
                  spin_wait, data_transfers}, runtime_defaults (of target_major)
    source        checkpoint, sha256, epoch, spec {name, backbone, output_stride,
                  tasks[{name, type}], widths_count, params, macs_per_sample}
    programs      pt2 {file, how, input, outputs, dynamic} (only with --format pt2)
    files         {relative path: {sha256, bytes}} for every export artifact (verified)
    engine_files  the same for the engine artifacts present at export time (not verified)
"""

from mtlexport.export.exporter import ExportReport, export_model, export_network, export_weights
from mtlexport.export.manifest import ExportManifest, load_export_dir
from mtlexport.export.options import BatchRange, ExportOptions, choose_trt_major
from mtlexport.export.trtexec import BenchSettings
from mtlexport.export.validate import OutputCheck

__all__ = [
    "BatchRange",
    "BenchSettings",
    "ExportManifest",
    "ExportOptions",
    "ExportReport",
    "OutputCheck",
    "choose_trt_major",
    "export_model",
    "export_network",
    "export_weights",
    "load_export_dir",
]
