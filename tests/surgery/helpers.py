"""Shared test helpers: small zoo models with randomised batch norms and zeroed input groups."""

from __future__ import annotations

import torch
from torch import nn

from mtlexport.models import ModelSpec, create_model


def small_spec(backbone: str, **backbone_kw: object) -> ModelSpec:
    """A tiny two-task model (ASPP segmentation + classifier attributes)."""
    kw = {"base_width": 8} if backbone.startswith("resnet") else {"width_mult": 0.25}
    kw.update(backbone_kw)
    head = {"width": 16, "hidden": 8, "rates": [2, 3]}
    return ModelSpec.from_dict({
        "backbone": {"name": backbone, **kw},
        "tasks": [
            {"name": "seg", "type": "segmentation", "num_outputs": 5, "head": head},
            {"name": "attr", "type": "attributes", "num_outputs": 2, "head": head},
        ],
    })


def randomise_norms(model: nn.Module, gen: torch.Generator) -> None:
    """Non-trivial batch-norm statistics and betas, so a dropped constant channel would show."""
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            n = mod.num_features
            mod.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            mod.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            mod.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            mod.bias.data.copy_(torch.randn(n, generator=gen) * 0.5)


def zero_input_groups(model: nn.Module, share: float, gen: torch.Generator, skip: tuple[str, ...] = ()) -> int:
    """Zero a random ``share`` of the input-channel groups of every non-grouped conv and linear."""
    zeroed = 0
    with torch.no_grad():
        for name, mod in model.named_modules():
            if name in skip:
                continue
            if isinstance(mod, nn.Conv2d) and mod.groups == 1 and mod.in_channels > 3:
                mask = torch.rand(mod.in_channels, generator=gen) < share
                mod.weight[:, mask] = 0
                zeroed += int(mask.sum())
            elif isinstance(mod, nn.Linear):
                mask = torch.rand(mod.in_features, generator=gen) < share
                mod.weight[:, mask] = 0
                zeroed += int(mask.sum())
    return zeroed


def sparse_model(spec: ModelSpec, share: float = 0.5, seed: int = 0) -> nn.Module:
    """``create_model(spec)`` in eval mode with random norms and zeroed input groups."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = create_model(spec).eval()
    randomise_norms(model, gen)
    zero_input_groups(model, share, gen)
    return model
