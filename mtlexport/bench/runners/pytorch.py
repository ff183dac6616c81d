"""PyTorch eager runner for checkpoints: CPU, or CUDA with FP16 autocast, channels-last and
CUDA graphs as options. GPU work runs on a dedicated stream the harness times with events."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from mtlexport.bench.runners.base import RUNNERS, Runner
from mtlexport.errors import BackendUnavailableError, ConfigError


class TorchDeviceRunner(Runner):
    """What the eager and compiled torch runners share: the stream, transfers, sync and outputs.

    Subclasses set ``_torch``, ``_stream`` (a CUDA stream or None), ``_names``, ``_out`` and
    ``_host_out`` in ``_activate_impl`` and ``_x`` / ``_host_x`` in ``_prepare_impl``.
    """

    def _stream_ctx(self) -> contextlib.AbstractContextManager[Any]:
        return self._torch.cuda.stream(self._stream) if self.on_cuda else contextlib.nullcontext()

    def _h2d_impl(self) -> None:
        with self._stream_ctx():
            self._x.copy_(self._host_x, non_blocking=True)

    def _d2h_impl(self) -> None:
        with self._stream_ctx():
            for k, v in self._out.items():
                self._host_out[k].copy_(v, non_blocking=True)

    def _synchronize_impl(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()

    def _outputs_impl(self) -> dict[str, Any]:
        self.synchronize()
        src = self._host_out if self.transfers else self._out
        return {k: src[k].detach().float().cpu().numpy() for k in self._names}


@RUNNERS.register("torch")
class TorchRunner(TorchDeviceRunner):
    """Runs the checkpoint's ``MultiTaskNet`` eagerly (or replays a captured CUDA graph)."""

    name = "torch"
    devices = ("cpu", "cuda")

    def _activate_impl(self) -> None:
        import torch

        s = self.settings
        if self.source.checkpoint is None:
            raise ConfigError(f"backend torch needs a .pt checkpoint; {self.source.path} is a {self.source.kind} "
                              "(use --backend ort or trt)")
        if s.device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError(f"--device cuda: torch {torch.__version__} sees no CUDA GPU here")
        if s.precision == "fp16" and s.device != "cuda":
            raise ConfigError("torch fp16 (autocast) needs --device cuda")

        self._torch = torch
        self._device = torch.device(s.device)
        model = self.source.build_model().to(self._device)
        if s.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self._model = model.eval()
        self._names = tuple(self.source.output_names or self._model.task_names)
        self._old_threads = torch.get_num_threads()
        if s.threads is not None:
            torch.set_num_threads(s.threads)
        self._stream = torch.cuda.Stream(device=self._device) if s.device == "cuda" else None
        self._graph: Any = None
        self._out: dict[str, Any] = {}
        self._host_out: dict[str, Any] = {}

    def _forward(self) -> dict[str, Any]:
        torch = self._torch
        with torch.inference_mode():
            if self.settings.precision == "fp16":
                with torch.autocast("cuda", dtype=torch.float16):
                    return self._model(self._x)
            return self._model(self._x)

    def _prepare_impl(self, images: np.ndarray) -> None:
        torch = self._torch
        fmt = torch.channels_last if self.settings.channels_last else torch.contiguous_format
        host = torch.from_numpy(images)
        self._graph = None
        if not self.on_cuda:
            self._x = host.contiguous(memory_format=fmt)
            return
        self._host_x = host.pin_memory()
        with self._stream_ctx():
            self._x = torch.empty(host.shape, device=self._device).contiguous(memory_format=fmt)
            self._x.copy_(self._host_x)
            out = self._forward()
            if self.settings.cuda_graph:
                out = self._capture_graph()
        self._stream.synchronize()
        self._out = out
        self._host_out = {k: torch.empty(v.shape, dtype=v.dtype).pin_memory() for k, v in out.items()}

    def _capture_graph(self) -> dict[str, Any]:
        torch = self._torch
        for _ in range(2):  # warm-up on the capture stream, as the CUDA graph docs require
            self._forward()
        self._stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self._stream):
            static_out = self._forward()
        self._graph = graph
        return static_out

    def _compute_impl(self) -> None:
        if self._graph is not None:
            with self._stream_ctx():
                self._graph.replay()
            return
        with self._stream_ctx():
            self._out = self._forward()

    def _deactivate_impl(self) -> None:
        self._torch.set_num_threads(self._old_threads)
        self._graph = None
        self._model = None
        self._out = {}
        self._host_out = {}

    def describe(self) -> dict[str, Any]:
        s = self.settings
        return {
            "transfers": self.transfers, "threads": self._torch.get_num_threads(),
            "channels_last": s.channels_last, "autocast_fp16": s.precision == "fp16",
            "cuda_graph": s.cuda_graph, "torch": str(self._torch.__version__),
        }
