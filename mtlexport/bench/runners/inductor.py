"""``torch.compile`` (TorchInductor) runner for checkpoints: CPU or CUDA, FP16 autocast and
channels-last as for ``torch``, CUDA graphs through ``mode="reduce-overhead"``.

``prepare`` compiles the model for the batch's static shape (the first call compiles; a shape
already compiled in this process is reused), so the harness's warm-up and timing never include
compilation. The bench API times ``prepare`` and reports it as ``prepare_s``: the compile time
of that batch size (plus one run). Inductor's on-disk caches make a second process faster.
CPU compilation needs a C++ compiler; CUDA compilation needs Triton.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from typing import Any

import numpy as np

from mtlexport.bench.runners.base import RUNNERS
from mtlexport.bench.runners.pytorch import TorchDeviceRunner
from mtlexport.errors import BackendUnavailableError, ConfigError

# Every (model, batch size, mode) is its own static graph and dynamo cache entry of one forward
# code object; the default limit (8) would be hit in one sweep and end in an error.
RECOMPILE_LIMIT = 256
CXX_CANDIDATES = ("g++", "c++", "clang++")


def _forward_module(torch: Any, model: Any, autocast_fp16: bool) -> Any:
    """``model`` behind a forward that applies FP16 autocast inside the compiled region."""

    class Forward(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, images: Any) -> Any:
            if autocast_fp16:
                with torch.autocast("cuda", dtype=torch.float16):
                    return self.model(images)
            return self.model(images)

    return Forward().eval()


def _has_cxx() -> bool:
    cxx = os.environ.get("CXX")
    return any(shutil.which(c) for c in ((cxx,) if cxx else ()) + CXX_CANDIDATES)


@RUNNERS.register("inductor")
class InductorRunner(TorchDeviceRunner):
    """Runs ``torch.compile(model, dynamic=False, fullgraph=True)`` of the checkpoint's model."""

    name = "inductor"
    devices = ("cpu", "cuda")

    @property
    def mode(self) -> str:
        """The ``torch.compile`` mode: ``reduce-overhead`` (CUDA graphs) with --cuda-graph."""
        return "reduce-overhead" if self.settings.cuda_graph else "default"

    def _activate_impl(self) -> None:
        import torch

        s = self.settings
        if self.source.checkpoint is None:
            raise ConfigError(f"backend inductor needs a .pt checkpoint (or an export folder whose checkpoint "
                              f"still exists); {self.source.path} is a {self.source.kind}")
        if s.device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError(f"backend inductor --device cuda: torch {torch.__version__} sees no CUDA GPU")
        if s.device == "cuda" and importlib.util.find_spec("triton") is None:
            raise BackendUnavailableError("backend inductor --device cuda needs triton (it ships with CUDA builds of "
                                          "torch: pip install triton)")
        if s.device == "cpu" and not _has_cxx():
            raise BackendUnavailableError("backend inductor --device cpu needs a C++ compiler (install g++ or "
                                          "clang++, or set CXX)")
        if s.precision == "fp16" and s.device != "cuda":
            raise ConfigError("inductor fp16 (autocast) needs --device cuda")

        self._torch = torch
        self._device = torch.device(s.device)
        model = self.source.build_model().to(self._device).eval()
        if s.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self._names = tuple(self.source.output_names or model.task_names)
        self._old_threads = torch.get_num_threads()
        if s.threads is not None:  # before compiling: CPU kernels take the thread count then
            torch.set_num_threads(s.threads)
        self._compiled = torch.compile(_forward_module(torch, model, s.precision == "fp16"), mode=self.mode,
                                       dynamic=False, fullgraph=True)
        self._stream = torch.cuda.Stream(device=self._device) if s.device == "cuda" else None
        self._compiled_batches: list[int] = []
        self._out: dict[str, Any] = {}
        self._host_out: dict[str, Any] = {}

    def _forward(self) -> dict[str, Any]:
        torch = self._torch
        with torch.inference_mode():
            if self.settings.cuda_graph:  # outputs of the previous replay may be overwritten now
                torch.compiler.cudagraph_mark_step_begin()
            return self._compiled(self._x)

    def _prepare_impl(self, images: np.ndarray) -> None:
        torch = self._torch
        fmt = torch.channels_last if self.settings.channels_last else torch.contiguous_format
        host = torch.from_numpy(images)
        if self.on_cuda:
            self._host_x = host.pin_memory()
            with self._stream_ctx():
                self._x = torch.empty(host.shape, device=self._device).contiguous(memory_format=fmt)
                self._x.copy_(self._host_x)
        else:
            self._x = host.contiguous(memory_format=fmt)
        self._out = self._compile_for_batch(int(images.shape[0]))
        if self.on_cuda:
            self._stream.synchronize()
            self._host_out = {k: torch.empty(v.shape, dtype=v.dtype).pin_memory() for k, v in self._out.items()}

    def _compile_for_batch(self, batch: int) -> dict[str, Any]:
        """The first call at this shape compiles; errors become one line naming the model."""
        from torch._dynamo import config as dynamo_config

        key = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"
        limit = max(int(getattr(dynamo_config, key)), RECOMPILE_LIMIT)
        try:
            with dynamo_config.patch(**{key: limit}), self._stream_ctx():
                out = self._forward()
        except Exception as exc:  # dynamo / inductor raise many types; all mean "did not compile"
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise BackendUnavailableError(f"backend inductor could not compile {self.source.label} at batch {batch}: "
                                          f"{first}") from exc
        if batch not in self._compiled_batches:
            self._compiled_batches.append(batch)
        return out

    def _compute_impl(self) -> None:
        with self._stream_ctx():
            self._out = self._forward()

    def _deactivate_impl(self) -> None:
        self._torch.set_num_threads(self._old_threads)
        self._compiled = None
        self._out = {}
        self._host_out = {}

    def describe(self) -> dict[str, Any]:
        s = self.settings
        from torch._inductor import config as inductor_config

        return {
            "transfers": self.transfers, "threads": self._torch.get_num_threads(),
            "compile": f"torch.compile(mode={self.mode!r}, dynamic=False, fullgraph=True)",
            "cuda_graph": s.cuda_graph, "channels_last": s.channels_last, "autocast_fp16": s.precision == "fp16",
            "compiled_batches": list(self._compiled_batches),
            "fx_graph_cache": bool(getattr(inductor_config, "fx_graph_cache", False)),
            "torch": str(self._torch.__version__),
        }
