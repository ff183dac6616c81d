"""``inspect_checkpoint``: architecture, size, cost, per-layer shapes, sparsity and slim info."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtlexport.models.profile import profile_model

DEFAULT_INPUT = (256, 256)


@dataclass(frozen=True)
class LayerInfo:
    """One Conv2d or Linear layer. ``zero_in_channels`` counts input channels whose weights are
    all exactly zero (None when the layer is not a grouped conv)."""

    name: str
    type: str
    in_channels: int
    out_channels: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int
    params: int
    zero_in_channels: int | None = None


@dataclass(frozen=True)
class InspectReport:
    """Everything ``mtlexport inspect`` shows about a checkpoint."""

    checkpoint: str
    name: str
    backbone: dict[str, Any]
    output_stride: int
    in_channels: int
    tasks: list[dict[str, Any]]
    params: int
    params_by_part: dict[str, int]
    macs: int
    gflops: float
    input_shape: tuple[int, int, int]
    layers: list[LayerInfo]
    epoch: int
    metrics: dict[str, Any]
    versions: dict[str, str]
    sparsity: dict[str, Any] | None = None
    slim: dict[str, Any] | None = None
    widths_changed: int = 0
    extra_keys: list[str] = field(default_factory=list)
    non_finite_tensors: list[str] = field(default_factory=list)
    # The last sparsity record of a group-sparse run: its own groups, zero groups, removable
    # channels and the removable MACs share (empty for other checkpoints).
    trained_sparsity: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["input_shape"] = list(self.input_shape)
        return out


def inspect_checkpoint(path: str | Path, input_size: tuple[int, int] | None = None, *,
                       factory: str | None = None) -> InspectReport:
    """Summarise the checkpoint at ``path``; MACs are per sample at ``input_size`` (H, W),
    by default the size of the data it was trained on (256x256 when unknown). Your own model
    needs ``factory`` (``--model``), the one the checkpoint records."""
    from mtlexport.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    # inspect is how a broken checkpoint is diagnosed: it reports non-finite tensors, others refuse them.
    model = ckpt.build_model(check_finite=False, factory=factory)
    non_finite = [name for name, t in ckpt.state_dict.items()
                  if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())]
    spec = ckpt.spec
    h, w = input_size or ckpt.data_size or DEFAULT_INPUT
    profile = profile_model(model, (spec.in_channels, h, w))
    scope = (ckpt.config.get("optimizer") or {}).get("group_scope", "backbone")
    sparsity, zeros = _sparsity(model, scope)
    if spec.factory:  # your own model: its top-level modules
        parts = {name: _count(child) for name, child in model.named_children()}
    else:
        parts = {"backbone": _count(model.backbone)}
        parts.update({f"heads.{name}": _count(head) for name, head in model.heads.items()})
    return InspectReport(
        checkpoint=str(path), name=spec.name,
        backbone={"factory": spec.factory, "kwargs": dict(spec.kwargs)} if spec.factory else asdict(spec.backbone),
        output_stride=spec.backbone.output_stride, in_channels=spec.in_channels,
        tasks=[_task_row(t) for t in spec.tasks], params=profile.params, params_by_part=parts,
        macs=profile.macs, gflops=profile.gflops, input_shape=profile.input_shape,
        layers=_layers(model, zeros), epoch=ckpt.epoch, metrics=ckpt.metrics, versions=ckpt.versions,
        sparsity=sparsity, slim=ckpt.extra.get("slim"), widths_changed=len(spec.widths),
        extra_keys=sorted(ckpt.extra), non_finite_tensors=non_finite, trained_sparsity=_trained(ckpt),
    )


def _trained(ckpt: Any) -> dict[str, Any]:
    record = ckpt.extra.get("sparsity") or {}
    if "lasso_groups" not in record:
        return {}
    keys = ("lasso_groups", "removable_channels", "macs_ratio", "removable_macs_share", "lambda")
    out = {k: record[k] for k in keys if k in record}
    out["zero_groups"] = record.get("zero_coupled_groups", record.get("zero_lasso_groups", 0))
    out["grouping"] = (ckpt.config.get("optimizer") or {}).get("grouping", "channel")
    return out


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _task_row(task: Any) -> dict[str, Any]:
    head = task.head
    row = {"name": task.name, "type": task.type, "num_outputs": task.num_outputs, "loss": task.loss,
           "head": head.kind, "head_width": head.width}
    if head.kind == "aspp":
        row["rates"] = list(head.rates)
        row["image_pooling"] = head.image_pooling
    else:
        row["hidden"] = head.hidden
    if task.attributes:
        row["attributes"] = list(task.attributes)
    return row


def _sparsity(model: nn.Module, scope: str) -> tuple[dict[str, Any] | None, dict[str, int]]:
    try:
        from mtlexport.sparsity import sparsity_report
    except ImportError:
        return None, {}
    report = sparsity_report(model, scope)
    summary = {k: v for k, v in report.to_dict().items() if k != "layers"}
    summary["scope"] = scope
    return summary, {layer.name: layer.zero_groups for layer in report.layers}


def _layers(model: nn.Module, zeros: dict[str, int]) -> list[LayerInfo]:
    rows = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d):
            rows.append(LayerInfo(name, "Conv2d", mod.in_channels, mod.out_channels, tuple(mod.kernel_size),
                                  tuple(mod.stride), tuple(mod.dilation), mod.groups, _count(mod), zeros.get(name)))
        elif isinstance(mod, nn.Linear):
            rows.append(LayerInfo(name, "Linear", mod.in_features, mod.out_features, (), (), (), 1, _count(mod)))
    return rows
