"""Architecture as data: the typed spec every model is built from.

A checkpoint stores ``ModelSpec.to_dict()`` next to its ``state_dict``; ``create_model(spec)``
rebuilds the exact module tree, slimmed widths included, with no other input.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from mtlexport.errors import ConfigError
from mtlexport.schema import (
    boolean, choice, integer, mapping_of, number, parse_section, section, section_list, sequence, string, validate,
)

DENSE_TASK_TYPES = ("segmentation", "depth", "normals")
IMAGE_TASK_TYPES = ("attributes",)


def _factory_name(where: str, v: Any) -> str:
    from mtlexport.models.factory import check_factory_name

    return "" if v in ("", None) else check_factory_name(v, where)


@dataclass(frozen=True)
class BackboneSpec:
    """Shared backbone: ``name`` is a key of ``BACKBONES`` (resnet18/34/50, mobilenetv2)."""

    name: str = "resnet18"
    output_stride: int = 8
    deep_stem: bool = False
    base_width: int = 64
    width_mult: float = 1.0

    _where = "model.backbone"
    _checks = {"name": string(), "output_stride": choice(8, 16, 32), "deep_stem": boolean,
               "base_width": integer(1), "width_mult": number(strict=True)}

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class HeadSpec:
    """Task head settings. ``kind`` is a key of ``HEADS`` (aspp, classifier) or ``auto``
    (the task type's default: aspp for dense tasks, classifier for image-level ones)."""

    kind: str = "auto"
    width: int = 256
    rates: tuple[int, ...] = (12, 24, 36)
    hidden: int = 256
    image_pooling: bool = True

    _where = "head"
    _checks = {"kind": string(), "width": integer(1), "hidden": integer(1),
               "rates": sequence(integer(1), "a list of positive dilation rates"), "image_pooling": boolean}

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class TaskSpec:
    """One task: its output name, type (a key of ``TASKS``), output size and head.

    ``num_outputs`` is the number of classes for segmentation, 1 for depth, 3 for normals and
    the number of attributes for attribute classification (names in ``attributes``).
    """

    name: str
    type: str
    num_outputs: int = 0
    head: HeadSpec = field(default_factory=HeadSpec)
    loss: str = ""
    attributes: tuple[str, ...] = ()

    _where = "task"
    _checks = {"name": string(identifier=True), "type": string(), "num_outputs": integer(0), "head": section(HeadSpec),
               "loss": string(nonempty=False), "attributes": sequence(string(), "a list of attribute names")}

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class ModelSpec:
    """A whole multi-task model.

    ``widths`` maps module names (``backbone.layer1.0.conv1``) to the shapes of slimmed layers:
    ``[in, out, groups]`` for convolutions, ``[in, out]`` for linear layers and ``[features]``
    for batch norms. Layers not listed keep the widths the architecture defines.

    ``factory`` (``package.module:function``) makes it your own model: ``factory(**kwargs)``
    builds it instead of the zoo (``backbone`` and the task heads are then unused); see
    ``mtlexport.models.factory`` for when that code is imported.
    """

    backbone: BackboneSpec
    tasks: tuple[TaskSpec, ...]
    in_channels: int = 3
    widths: dict[str, tuple[int, ...]] = field(default_factory=dict)
    name: str = "multitask"
    factory: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)

    _where = "model"
    _checks = {
        "backbone": section(BackboneSpec),
        "tasks": section_list(TaskSpec, "model.tasks is empty; list at least one task"),
        "in_channels": integer(1),
        "widths": mapping_of(sequence(integer(0), "a list of layer widths (integers >= 0)"),
                             "a mapping of layer names to lists of widths"),
        "name": string(),
        "factory": _factory_name,
        "kwargs": mapping_of(lambda where, v: v, "a mapping of keyword arguments for model.factory"),
    }

    def __post_init__(self) -> None:
        validate(self)
        if self.factory and self.backbone != BackboneSpec():
            raise ConfigError("model.backbone configures the built-in backbones but model.factory builds its own "
                              "model; remove model.backbone")
        if self.kwargs and not self.factory:
            raise ConfigError("model.kwargs are the arguments of model.factory; set model.factory or remove them")
        names = [t.name for t in self.tasks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"duplicate task names {dupes}; task names must be unique")

    @property
    def task_names(self) -> tuple[str, ...]:
        """Output names, in the fixed order the model returns (and exports) them."""
        return tuple(t.name for t in self.tasks)

    def task(self, name: str) -> TaskSpec:
        """The task spec called ``name``."""
        for t in self.tasks:
            if t.name == name:
                return t
        raise ConfigError(f"no task {name!r}; tasks are {list(self.task_names)}")

    def with_widths(self, widths: dict[str, tuple[int, ...]]) -> ModelSpec:
        """A copy with ``widths`` merged over the current ones."""
        return replace(self, widths={**self.widths, **widths})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-safe dict (lists instead of tuples); ``factory`` and ``kwargs`` only
        for your own model."""
        out = _plain(asdict(self))
        if not self.factory:
            del out["factory"], out["kwargs"]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """Parse and validate a dict (e.g. the ``model:`` section of a config)."""
        if not isinstance(data, dict):
            raise ConfigError(f"model spec must be a mapping, got {type(data).__name__}")
        if data.get("factory") and "backbone" not in data:  # your own model: the zoo backbone is unused
            data = {**data, "backbone": {}}
        return parse_section(cls, "model", data)

    def to_json(self) -> str:
        """JSON text of ``to_dict()``."""
        return json.dumps(self.to_dict(), indent=2)

    def to_yaml(self) -> str:
        """YAML text of ``to_dict()``."""
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_file(cls, path: str | Path) -> ModelSpec:
        """Load a spec from a ``.json`` or ``.yaml`` file (a ``model:`` section is accepted)."""
        from mtlexport.yamlio import read_yaml_file

        data = read_yaml_file(path, "model spec")
        if isinstance(data, dict) and "model" in data and "backbone" not in data:
            data = data["model"]
        return cls.from_dict(data)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
