"""``MultiTaskNet`` and ``create_model``: the single way to build a model from its spec."""

from __future__ import annotations

from dataclasses import replace

from torch import Tensor, nn

from mtlexport.models.registry import BACKBONES, HEADS
from mtlexport.models.spec import ModelSpec, TaskSpec
from mtlexport.models.widths import apply_widths


class MultiTaskNet(nn.Module):
    """Shared backbone run once; one head per task; returns ``{task_name: output}`` in spec order."""

    def __init__(self, backbone: nn.Module, heads: dict[str, nn.Module], spec: ModelSpec | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleDict(heads)
        self.spec = spec

    @property
    def task_names(self) -> tuple[str, ...]:
        """Output names in the order ``forward`` returns them."""
        return tuple(self.heads.keys())

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        features = self.backbone(images)
        size = (images.shape[-2], images.shape[-1])
        return {name: head(features, size) for name, head in self.heads.items()}


def resolve_spec(spec: ModelSpec) -> ModelSpec:
    """Fill task defaults (output sizes, head kinds, losses) from the task types; validates names."""
    from mtlexport.tasks import get_task_type

    BACKBONES.get(spec.backbone.name)
    tasks: list[TaskSpec] = []
    for task in spec.tasks:
        task_type = get_task_type(task.type)
        resolved = task_type.resolve(task)
        HEADS.get(resolved.head.kind)
        tasks.append(resolved)
    return replace(spec, tasks=tuple(tasks))


def create_model(spec: ModelSpec, factory: str | None = None) -> MultiTaskNet:
    """Build the model ``spec`` describes, slimmed widths included (weights freshly initialised).

    A spec with ``factory`` set (your own model) is built by that factory, which is imported
    only when ``factory`` names it too (``mtlexport.models.factory``); the result is then the
    user's module, not a ``MultiTaskNet``."""
    if spec.factory or factory:
        from mtlexport.models.factory import build_user_model

        return build_user_model(spec, factory)  # type: ignore[return-value]
    spec = resolve_spec(spec)
    backbone = BACKBONES.get(spec.backbone.name)(spec.backbone, spec.in_channels)
    heads = {
        t.name: HEADS.get(t.head.kind)(backbone.out_channels, t.num_outputs, t.head)
        for t in spec.tasks
    }
    model = MultiTaskNet(backbone, heads, spec)
    if spec.widths:
        apply_widths(model, spec.widths)
    return model
