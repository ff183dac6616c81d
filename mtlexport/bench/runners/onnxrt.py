"""ONNX Runtime runner: the CPU provider with thread and graph-optimisation settings, or the
CUDA / TensorRT providers (onnxruntime-gpu) with IO binding to device buffers.

Every run goes through IO binding with pre-allocated outputs, so output allocation is not
timed on any provider. On the GPU, device buffers are torch CUDA tensors and ORT is given the
same stream (``user_compute_stream``) the harness records its events on.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from mtlexport.bench.runners.base import RUNNERS, Runner
from mtlexport.bench.source import export_checkpoint_onnx
from mtlexport.errors import BackendUnavailableError, ConfigError

_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
               "all": "ORT_ENABLE_ALL"}
_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise BackendUnavailableError("backend ort: onnxruntime is not installed (pip install 'mtlexport[cpu]', "
                                      "or 'mtlexport[gpu]' on a CUDA machine)") from None
    return onnxruntime


def providers_for(provider: str, gpu_options: dict[str, Any] | None = None) -> list[Any]:
    """The execution provider list for ``provider`` (cpu, cuda or tensorrt), highest priority
    first, each GPU provider with ``gpu_options``: TensorRT falls back to CUDA for the nodes it
    does not take, and CUDA to the CPU."""
    if provider == "cpu":
        return [_PROVIDERS["cpu"]]
    chain = ["tensorrt", "cuda"] if provider == "tensorrt" else ["cuda"]
    return [(_PROVIDERS[p], dict(gpu_options or {})) for p in chain] + [_PROVIDERS["cpu"]]


def _both_flavours_installed() -> bool:
    from importlib import metadata

    found = set()
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            metadata.version(dist)
            found.add(dist)
        except metadata.PackageNotFoundError:
            pass
    return len(found) == 2


@RUNNERS.register("ort")
class OrtRunner(Runner):
    """One ``InferenceSession`` per activation; IO binding for every query."""

    name = "ort"
    devices = ("cpu", "cuda")

    def provider_name(self) -> str:
        """The execution provider key: cpu on --device cpu, cuda (or tensorrt) on --device cuda."""
        if self.settings.device == "cpu":
            return "cpu"
        return self.settings.ort_provider or "cuda"

    def _activate_impl(self) -> None:
        ort = _import_ort()
        s = self.settings
        provider = self.provider_name()
        available = ort.get_available_providers()
        if _PROVIDERS[provider] not in available:
            fix = ("both onnxruntime and onnxruntime-gpu are installed and the CPU build shadows the GPU one: "
                   "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"
                   if _both_flavours_installed() else "install onnxruntime-gpu on a CUDA machine")
            raise BackendUnavailableError(
                f"backend ort: the {provider} execution provider is not available in onnxruntime {ort.__version__} "
                f"(providers: {', '.join(available)}); {fix}")
        torch = None
        if s.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise BackendUnavailableError("backend ort --device cuda: torch sees no CUDA GPU for the device buffers")
            self._stream = torch.cuda.Stream()
        self._torch = torch
        self._path = self._model_path()
        opts = ort.SessionOptions()
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[s.graph_opt_level])
        if s.threads is not None:
            opts.intra_op_num_threads = s.threads
        if s.inter_op_threads is not None:
            opts.inter_op_num_threads = s.inter_op_threads
            opts.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        opts.log_severity_level = 3
        gpu_opts = {"device_id": 0, "user_compute_stream": str(self._stream.cuda_stream)} if provider != "cpu" else None
        providers = providers_for(provider, gpu_opts)
        try:
            self._session = ort.InferenceSession(str(self._path), sess_options=opts, providers=providers)
        except Exception as exc:  # ORT raises its own Fail / InvalidGraph types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise BackendUnavailableError(f"backend ort cannot load {self._path.name}: {first[:200]}") from None
        self._ort = ort
        self._opts = opts
        self._input = self._session.get_inputs()[0].name
        self._names = tuple(o.name for o in self._session.get_outputs())

    def _model_path(self) -> Path:
        src = self.source
        if self.settings.precision == "fp16":
            if src.onnx_fp16 is None:
                raise ConfigError(f"ort fp16 needs an export directory with model.fp16.onnx; {src.path} has none")
            return src.onnx_fp16
        if src.onnx is not None:
            return src.onnx
        if src.checkpoint is not None and src.input_shape is not None:
            if self.scratch is None:
                raise ConfigError("backend ort on a checkpoint needs a scratch folder to export ONNX into")
            folder = Path(tempfile.mkdtemp(prefix="onnx-", dir=self.scratch))
            return export_checkpoint_onnx(src.checkpoint, src.input_shape, folder / "model.onnx", src.factory)
        raise ConfigError(f"backend ort needs a .onnx, an export directory or a checkpoint; {src.path} is a {src.kind}")

    def _prepare_impl(self, images: np.ndarray) -> None:
        sess = self._session
        self._binding = sess.io_binding()
        if not self.on_cuda:
            self._host_x = images
            self._binding.bind_cpu_input(self._input, images)
            first = sess.run(list(self._names), {self._input: images})
            self._host_out = {n: np.empty_like(v) for n, v in zip(self._names, first)}
            for n, buf in self._host_out.items():
                self._binding.bind_ortvalue_output(n, self._ort.OrtValue.ortvalue_from_numpy(buf))
            return
        torch = self._torch
        self._host_x = torch.from_numpy(images).pin_memory()
        self._dev_x = self._host_x.to("cuda")
        first = sess.run(list(self._names), {self._input: images})
        self._dev_out = {n: torch.empty(v.shape, dtype=torch.float32, device="cuda") for n, v in zip(self._names, first)}
        self._host_out = {n: torch.empty(v.shape, dtype=torch.float32).pin_memory() for n, v in self._dev_out.items()}
        self._binding.bind_input(self._input, "cuda", 0, np.float32, tuple(self._dev_x.shape), self._dev_x.data_ptr())
        for n, buf in self._dev_out.items():
            self._binding.bind_output(n, "cuda", 0, np.float32, tuple(buf.shape), buf.data_ptr())

    def _h2d_impl(self) -> None:
        with self._torch.cuda.stream(self._stream):
            self._dev_x.copy_(self._host_x, non_blocking=True)

    def _compute_impl(self) -> None:
        self._session.run_with_iobinding(self._binding)

    def _d2h_impl(self) -> None:
        with self._torch.cuda.stream(self._stream):
            for n, buf in self._dev_out.items():
                self._host_out[n].copy_(buf, non_blocking=True)

    def _synchronize_impl(self) -> None:
        if self.on_cuda:
            self._stream.synchronize()

    def _outputs_impl(self) -> dict[str, Any]:
        if not self.on_cuda:
            return {n: self._host_out[n].copy() for n in self._names}
        self.synchronize()
        src = self._host_out if self.transfers else self._dev_out
        return {n: src[n].cpu().numpy() for n in self._names}

    def _deactivate_impl(self) -> None:
        self._binding = None
        self._session = None
        self._host_out = {}

    def describe(self) -> dict[str, Any]:
        s = self.settings
        return {
            "transfers": self.transfers, "provider": _PROVIDERS[self.provider_name()], "io_binding": True,
            "intra_op_threads": s.threads or "default", "inter_op_threads": s.inter_op_threads or "default",
            "graph_optimization_level": s.graph_opt_level, "model": self._path.name,
            "onnxruntime": self._ort.__version__,
        }
