"""Mixed precision for the training step: ``train.amp`` is ``none``, ``bf16`` or ``fp16``.

``bf16`` autocasts the forward (CUDA and CPU) and needs no loss scaling. ``fp16`` adds a
``GradScaler``; the order in a step is: scaled backward, ``unscale`` (gradients back to their
true size, inf/nan recorded), gradient clipping, then ``step``, which skips ``optimizer.step``
entirely when a gradient was not finite, so the proximal step of a group-lasso optimizer runs
on unscaled gradients and never after an overflow. DDP has all-reduced the gradients before
``unscale``, so the skip decision is the same on every rank. Validation always runs in fp32,
so its metrics equal ``mtlexport eval``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from mtlexport.errors import ConfigError

AMP_MODES = ("none", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """Autocast and loss scaling of one run (``mode`` from ``train.amp``)."""

    def __init__(self, mode: str, device: torch.device) -> None:
        if mode not in AMP_MODES:
            raise ConfigError(f"train.amp must be one of {', '.join(AMP_MODES)}, got {mode!r}")
        self.mode, self.device = mode, device
        self.scaler = torch.amp.GradScaler(device.type) if mode == "fp16" else None
        self.skipped = 0  # optimizer steps skipped for non-finite fp16 gradients

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """The forward's autocast region (nothing for ``none``)."""
        if self.mode == "none":
            yield
            return
        with torch.autocast(self.device.type, dtype=_DTYPES[self.mode]):
            yield

    def forward(self, net: nn.Module, images: Tensor) -> dict[str, Tensor]:
        """``net(images)`` under autocast, outputs in fp32 (the losses are computed in fp32)."""
        with self.autocast():
            outputs = net(images)
        if self.mode == "none":
            return outputs
        return {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in outputs.items()}

    def backward(self, loss: Tensor) -> None:
        """``loss.backward()``, scaled under fp16."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: Optimizer) -> None:
        """Gradients back to their true size (fp16); call before clipping and ``step``."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: Optimizer) -> bool:
        """``optimizer.step()`` unless fp16 found an inf/nan gradient; True when it stepped."""
        if self.scaler is None:
            optimizer.step()
            return True
        before = self.scaler.get_scale()
        self.scaler.step(optimizer)
        self.scaler.update()
        stepped = self.scaler.get_scale() >= before  # the scale only shrinks after a skipped step
        self.skipped += 0 if stepped else 1
        return stepped

    def state_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "skipped": self.skipped,
                "scaler": self.scaler.state_dict() if self.scaler is not None else None}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the scaler of a resumed run (ignored when the run used another mode)."""
        if state.get("mode") != self.mode:
            return
        self.skipped = int(state.get("skipped", 0))
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(dict(state["scaler"]))
