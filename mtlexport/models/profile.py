"""Parameters and multiply-accumulates per sample, counted by torch-pruning's op counter."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelProfile:
    """Size and cost of a model for one input sample of ``input_shape`` (C, H, W)."""

    params: int
    macs: int
    input_shape: tuple[int, int, int]

    @property
    def gflops(self) -> float:
        """Giga floating-point operations per sample (2 per multiply-accumulate)."""
        return 2.0 * self.macs / 1e9

    def to_dict(self) -> dict[str, object]:
        return {"params": self.params, "macs": self.macs, "gflops": self.gflops, "input_shape": list(self.input_shape)}


def profile_model(model: nn.Module, input_shape: tuple[int, int, int]) -> ModelProfile:
    """Count parameters and per-sample MACs of ``model`` on a (1, C, H, W) input, in eval mode."""
    import torch_pruning as tp

    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        example = torch.zeros(1, *input_shape, device=device)
        with torch.no_grad():
            macs, params = tp.utils.count_ops_and_params(model, example)
    finally:
        model.train(was_training)
    return ModelProfile(params=int(params), macs=int(macs), input_shape=tuple(int(s) for s in input_shape))
