"""The runner contract: a fixed lifecycle whose steps subclasses fill in through ``_impl`` methods.

Lifecycle: ``activate()`` (load the model, may raise BackendUnavailableError) ->
``prepare(images)`` once per batch size (bind inputs, allocate buffers, one untimed run) ->
any number of queries ``h2d() -> compute() -> d2h() -> synchronize()`` driven by the shared
harness -> ``outputs()`` -> ``deactivate()``. Runners never time anything themselves; they
only say which clock measures their device work (``clock()``) and whether host<->device
copies are separate stages (``transfers``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mtlexport.bench.harness import Clock, CudaEventClock, HostClock
from mtlexport.bench.settings import BenchSettings
from mtlexport.bench.source import ModelSource
from mtlexport.errors import ConfigError, MtlexportError
from mtlexport.registry import Registry


class Runner(ABC):
    """Base class of every backend runner; see the module docstring for the lifecycle."""

    name: ClassVar[str]
    devices: ClassVar[tuple[str, ...]] = ("cpu",)

    def __init__(self, source: ModelSource, settings: BenchSettings, scratch: Path | None = None) -> None:
        self.source = source
        self.settings = settings
        self.scratch = scratch
        self.is_active = False
        self.batch: int | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def activate(self) -> None:
        """Load the model; raises BackendUnavailableError (one line) where it cannot run."""
        if self.is_active:
            raise MtlexportError(f"{self.name} runner is already active")
        self._activate_impl()
        self.is_active = True

    def prepare(self, images: np.ndarray) -> None:
        """Set up buffers for ``images`` (float32 NCHW) and run once untimed."""
        self._require_active()
        if images.ndim != 4 or images.dtype != np.float32:
            raise ConfigError(f"inputs must be float32 NCHW, got {images.dtype} with shape {images.shape}")
        self._prepare_impl(np.ascontiguousarray(images))
        self.batch = int(images.shape[0])
        self.h2d()
        self.compute()
        self.d2h()
        self.synchronize()

    def h2d(self) -> None:
        """Copy the prepared input to the device (no-op without separate transfers)."""
        if self.transfers:
            self._h2d_impl()

    def compute(self) -> None:
        """Run (or enqueue) one inference on the prepared input."""
        self._compute_impl()

    def d2h(self) -> None:
        """Copy outputs back to the host (no-op without separate transfers)."""
        if self.transfers:
            self._d2h_impl()

    def synchronize(self) -> None:
        """Wait until all enqueued work is finished."""
        self._synchronize_impl()

    def outputs(self) -> dict[str, np.ndarray]:
        """Host float32 copies of the last outputs, keyed by output name."""
        self._require_active()
        return {k: np.asarray(v, dtype=np.float32) for k, v in self._outputs_impl().items()}

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Untimed convenience: prepare, run once and return the outputs."""
        self.prepare(images)
        return self.outputs()

    def deactivate(self) -> None:
        """Release everything ``activate`` and ``prepare`` acquired."""
        if self.is_active:
            try:
                self._deactivate_impl()
            finally:
                self.is_active = False
                self.batch = None

    def __enter__(self) -> Runner:
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    # --- what the harness and reports need --------------------------------------------------

    #: The torch.cuda.Stream a GPU runner enqueues its work on (None on the CPU).
    _stream: Any = None

    @property
    def on_cuda(self) -> bool:
        """True when the runner works on a CUDA device."""
        return self.settings.device == "cuda"

    @property
    def transfers(self) -> bool:
        """True when H2D / D2H are separate, timed device stages."""
        return self.on_cuda and self.settings.transfers

    def clock(self) -> Clock:
        """CUDA events on the runner's stream on a GPU, the host clock otherwise."""
        return CudaEventClock(self._stream) if self.on_cuda else HostClock()

    @property
    def precision(self) -> str:
        return self.settings.precision

    def describe(self) -> dict[str, Any]:
        """Backend settings actually in effect (for the run report)."""
        return {"transfers": self.transfers}

    def _require_active(self) -> None:
        if not self.is_active:
            raise MtlexportError(f"{self.name} runner is not active; call activate() first")

    # --- to implement -------------------------------------------------------------------------

    @abstractmethod
    def _activate_impl(self) -> None: ...

    @abstractmethod
    def _prepare_impl(self, images: np.ndarray) -> None: ...

    @abstractmethod
    def _compute_impl(self) -> None: ...

    @abstractmethod
    def _outputs_impl(self) -> dict[str, Any]: ...

    def _h2d_impl(self) -> None:
        return None

    def _d2h_impl(self) -> None:
        return None

    def _synchronize_impl(self) -> None:
        return None

    def _deactivate_impl(self) -> None:
        return None


RUNNERS: Registry[type[Runner]] = Registry("bench backend")
