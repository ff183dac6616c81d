"""TensorRT runner for serialized plans: ``execute_async_v3`` on device buffers, optional CUDA
graph, transfers included or excluded. Device buffers and the stream come from torch.

Shapes: the input's per-sample shape comes from the export manifest beside the plan (or
``--input-size``); the batch must lie inside the engine's optimisation profile.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mtlexport.bench.runners.base import RUNNERS, Runner
from mtlexport.errors import BackendUnavailableError, ConfigError, ExportError


def _import_trt() -> Any:
    from mtlexport.export.trt import import_tensorrt

    return import_tensorrt("backend trt")


@RUNNERS.register("trt")
class TrtRunner(Runner):
    """One engine and execution context; all I/O tensors bound by name to torch CUDA buffers."""

    name = "trt"
    devices = ("cuda",)

    def _activate_impl(self) -> None:
        trt = _import_trt()
        import torch

        if not torch.cuda.is_available():
            raise BackendUnavailableError(f"backend trt: no CUDA GPU visible to torch {torch.__version__}")
        if self.settings.device != "cuda":
            raise ConfigError("backend trt runs on the GPU only; pass --device cuda")
        if self.source.plan is None:
            raise ConfigError(f"backend trt needs a .plan or an export directory with model.plan; "
                              f"{self.source.path} is a {self.source.kind}")
        self._trt, self._torch = trt, torch
        self._logger = trt.Logger(trt.Logger.ERROR)
        self._runtime = trt.Runtime(self._logger)
        engine = self._runtime.deserialize_cuda_engine(self.source.plan.read_bytes())
        if engine is None:
            raise ExportError(f"TensorRT {trt.__version__} cannot load {self.source.plan}: plans are tied to the "
                              "TensorRT version and GPU they were built with; rebuild it here")
        self._engine = engine
        self._context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self._inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(self._inputs) != 1:
            raise ExportError(f"{self.source.plan} has inputs {self._inputs}; mtlexport plans have one (images)")
        self._stream = torch.cuda.Stream()
        self._graph: Any = None

    def _torch_dtype(self, name: str) -> Any:
        return self._torch.from_numpy(np.empty(0, dtype=self._trt.nptype(self._engine.get_tensor_dtype(name)))).dtype

    def _prepare_impl(self, images: np.ndarray) -> None:
        torch, ctx, name = self._torch, self._context, self._inputs[0]
        lo, _, hi = self._engine.get_tensor_profile_shape(name, 0)
        if not all(a <= b <= c for a, b, c in zip(lo, images.shape, hi)):
            raise ConfigError(f"shape {list(images.shape)} is outside the plan's profile {list(lo)}..{list(hi)}; "
                              "choose --batch inside it or rebuild the plan")
        if not ctx.set_input_shape(name, tuple(images.shape)):
            raise ConfigError(f"TensorRT rejected input shape {list(images.shape)}; choose --batch inside the plan's "
                              "optimisation profile")
        in_dtype = self._torch_dtype(name)
        self._host_x = torch.from_numpy(images).to(in_dtype).pin_memory()
        self._dev_x = self._host_x.to("cuda")
        ctx.set_tensor_address(name, self._dev_x.data_ptr())
        self._dev_out, self._host_out = {}, {}
        for out in self._outputs:
            shape = tuple(ctx.get_tensor_shape(out))
            self._dev_out[out] = torch.empty(shape, dtype=self._torch_dtype(out), device="cuda")
            self._host_out[out] = torch.empty(shape, dtype=self._dev_out[out].dtype).pin_memory()
            ctx.set_tensor_address(out, self._dev_out[out].data_ptr())
        self._graph = None
        if self.settings.cuda_graph:
            self._enqueue()  # one run before capture lets TensorRT finish shape-dependent setup
            self._stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self._stream):
                self._enqueue()
            self._graph = graph

    def _enqueue(self) -> None:
        if not self._context.execute_async_v3(self._stream.cuda_stream):
            raise ExportError("TensorRT execute_async_v3 failed")

    def _h2d_impl(self) -> None:
        with self._torch.cuda.stream(self._stream):
            self._dev_x.copy_(self._host_x, non_blocking=True)

    def _compute_impl(self) -> None:
        if self._graph is not None:
            with self._torch.cuda.stream(self._stream):
                self._graph.replay()
        else:
            self._enqueue()

    def _d2h_impl(self) -> None:
        with self._torch.cuda.stream(self._stream):
            for n, buf in self._dev_out.items():
                self._host_out[n].copy_(buf, non_blocking=True)

    def _synchronize_impl(self) -> None:
        self._stream.synchronize()

    def _outputs_impl(self) -> dict[str, Any]:
        self.synchronize()
        src = self._host_out if self.transfers else self._dev_out
        return {n: src[n].float().cpu().numpy() for n in self._outputs}

    def _deactivate_impl(self) -> None:
        self._graph = None
        self._context = None
        self._engine = None
        self._dev_out, self._host_out = {}, {}

    @property
    def precision(self) -> str:
        """What the plan computes in (fp16, tf32 or fp32, from the export manifest): its outputs
        are checked with that tolerance set, whatever ``--precision`` says."""
        return self.source.plan_precision or self.settings.precision

    def describe(self) -> dict[str, Any]:
        return {"transfers": self.transfers, "cuda_graph": self.settings.cuda_graph,
                "tensorrt": self._trt.__version__, "plan": self.source.plan.name if self.source.plan else None}
