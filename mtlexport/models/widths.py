"""Per-layer widths: read them off a module tree and re-apply them to a fresh one.

This is how slimmed models reload (as in timm's pruned models): build the default
architecture, then replace every listed Conv2d / Linear / BatchNorm with one of the recorded
shape. Works for any ``nn.Module``, not only the zoo.
"""

from __future__ import annotations

import torch
from torch import nn

from mtlexport.errors import CheckpointError

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def layer_widths(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Shapes of every conv (in, out, groups), linear (in, out) and batch norm (features)."""
    out: dict[str, tuple[int, ...]] = {}
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d):
            out[name] = (mod.in_channels, mod.out_channels, mod.groups)
        elif isinstance(mod, nn.Linear):
            out[name] = (mod.in_features, mod.out_features)
        elif isinstance(mod, _NORMS):
            out[name] = (mod.num_features,)
    return out


def changed_widths(before: dict[str, tuple[int, ...]], after: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """The entries of ``after`` that differ from ``before``."""
    return {k: v for k, v in after.items() if before.get(k) != v}


def apply_widths(model: nn.Module, widths: dict[str, tuple[int, ...]]) -> nn.Module:
    """Replace the listed layers of ``model`` in place by freshly initialised ones of the given shape."""
    modules = dict(model.named_modules())
    for name, shape in widths.items():
        mod = modules.get(name)
        if mod is None:
            raise CheckpointError(f"width entry for unknown layer {name!r}; the spec does not match this architecture")
        new = _resized(name, mod, tuple(shape))
        if new is not mod:
            _set_submodule(model, name, new)
    return model


def _resized(name: str, mod: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    dev = _device_of(mod)
    if isinstance(mod, nn.Conv2d):
        if len(shape) != 3:
            raise CheckpointError(f"width entry for conv {name!r} must be [in, out, groups], got {list(shape)}")
        cin, cout, groups = shape
        if (cin, cout, groups) == (mod.in_channels, mod.out_channels, mod.groups):
            return mod
        return nn.Conv2d(
            cin, cout, mod.kernel_size, stride=mod.stride, padding=mod.padding, dilation=mod.dilation,
            groups=groups, bias=mod.bias is not None, padding_mode=mod.padding_mode,
        ).to(dev)
    if isinstance(mod, nn.Linear):
        if len(shape) != 2:
            raise CheckpointError(f"width entry for linear {name!r} must be [in, out], got {list(shape)}")
        if shape == (mod.in_features, mod.out_features):
            return mod
        return nn.Linear(shape[0], shape[1], bias=mod.bias is not None).to(dev)
    if isinstance(mod, _NORMS):
        if len(shape) != 1:
            raise CheckpointError(f"width entry for batch norm {name!r} must be [features], got {list(shape)}")
        if shape[0] == mod.num_features:
            return mod
        return type(mod)(shape[0], eps=mod.eps, momentum=mod.momentum, affine=mod.affine,
                         track_running_stats=mod.track_running_stats).to(dev)
    raise CheckpointError(f"width entry for {name!r}, a {type(mod).__name__}; only Conv2d, Linear and BatchNorm can be resized")


def _device_of(mod: nn.Module) -> torch.device:
    for p in mod.parameters():
        return p.device
    return torch.device("cpu")


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
