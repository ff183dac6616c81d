"""Architecture as data: the typed spec every model is built from.

A checkpoint stores ``ModelSpec.to_dict()`` next to its ``state_dict``; ``create_model(spec)``
rebuilds the exact module tree, slimmed widths included, with no other input.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mtlexport.errors import ConfigError

DENSE_TASK_TYPES = ("segmentation", "depth", "normals")
IMAGE_TASK_TYPES = ("attributes",)


@dataclass(frozen=True)
class BackboneSpec:
    """Shared backbone: ``name`` is a key of ``BACKBONES`` (resnet18/34/50, mobilenetv2)."""

    name: str = "resnet18"
    output_stride: int = 8
    deep_stem: bool = False
    base_width: int = 64
    width_mult: float = 1.0

    def __post_init__(self) -> None:
        if self.output_stride not in (8, 16, 32):
            raise ConfigError(f"backbone.output_stride must be 8, 16 or 32, got {self.output_stride}")
        if self.base_width < 1:
            raise ConfigError(f"backbone.base_width must be positive, got {self.base_width}")
        if self.width_mult <= 0:
            raise ConfigError(f"backbone.width_mult must be positive, got {self.width_mult}")


@dataclass(frozen=True)
class HeadSpec:
    """Task head settings. ``kind`` is a key of ``HEADS`` (aspp, classifier) or ``auto``
    (the task type's default: aspp for dense tasks, classifier for image-level ones)."""

    kind: str = "auto"
    width: int = 256
    rates: tuple[int, ...] = (12, 24, 36)
    hidden: int = 256
    image_pooling: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "rates", tuple(int(r) for r in self.rates))
        if self.width < 1 or self.hidden < 1:
            raise ConfigError("head.width and head.hidden must be positive")
        if any(r < 1 for r in self.rates):
            raise ConfigError(f"head.rates must be positive dilation rates, got {list(self.rates)}")


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

    def __post_init__(self) -> None:
        object.__setattr__(self, "attributes", tuple(self.attributes))
        if not self.name.isidentifier():
            raise ConfigError(f"task name {self.name!r} must be a valid identifier (it names an output)")


@dataclass(frozen=True)
class ModelSpec:
    """A whole multi-task model.

    ``widths`` maps module names (``backbone.layer1.0.conv1``) to the shapes of slimmed layers:
    ``[in, out, groups]`` for convolutions, ``[in, out]`` for linear layers and ``[features]``
    for batch norms. Layers not listed keep the widths the architecture defines.
    """

    backbone: BackboneSpec
    tasks: tuple[TaskSpec, ...]
    in_channels: int = 3
    widths: dict[str, tuple[int, ...]] = field(default_factory=dict)
    name: str = "multitask"

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "widths", {k: tuple(int(x) for x in v) for k, v in self.widths.items()})
        if not self.tasks:
            raise ConfigError("model.tasks is empty; list at least one task")
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
        """Plain JSON/YAML-safe dict (lists instead of tuples)."""
        return _plain(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """Parse and validate a dict (e.g. the ``model:`` section of a config)."""
        if not isinstance(data, dict):
            raise ConfigError(f"model spec must be a mapping, got {type(data).__name__}")
        _check_keys("model", data, cls)
        if "backbone" not in data or "tasks" not in data:
            raise ConfigError("model spec needs 'backbone' and 'tasks'")
        backbone = _build("model.backbone", BackboneSpec, data["backbone"])
        raw_tasks = data["tasks"]
        if not isinstance(raw_tasks, list):
            raise ConfigError("model.tasks must be a list of task mappings")
        tasks = []
        for i, raw in enumerate(raw_tasks):
            where = f"model.tasks[{i}]"
            if not isinstance(raw, dict):
                raise ConfigError(f"{where} must be a mapping with at least 'name' and 'type'")
            _check_keys(where, raw, TaskSpec)
            raw = dict(raw)
            head = _build(f"{where}.head", HeadSpec, raw.pop("head", {}) or {})
            for key in ("name", "type"):
                if key not in raw:
                    raise ConfigError(f"{where} needs '{key}'")
            tasks.append(_build(where, TaskSpec, {**raw, "head": head}))
        rest = {k: v for k, v in data.items() if k not in ("backbone", "tasks")}
        widths = rest.pop("widths", {}) or {}
        if not isinstance(widths, dict):
            raise ConfigError("model.widths must map layer names to lists of ints")
        return _build("model", cls, {**rest, "backbone": backbone, "tasks": tuple(tasks), "widths": widths})

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


def _check_keys(where: str, data: dict[str, Any], cls: type) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {where}; valid keys: {sorted(known)}")


def _build(where: str, cls: type, data: Any) -> Any:
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    _check_keys(where, data, cls)
    hints = {f.name: f.type for f in fields(cls)}
    clean: dict[str, Any] = {}
    for key, value in data.items():
        clean[key] = _coerce(f"{where}.{key}", hints[key], value)
    try:
        return cls(**clean)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _coerce(where: str, hint: Any, value: Any) -> Any:
    """Check scalar types from the (string) annotation; ints are accepted for floats."""
    hint = str(hint)
    if hint == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
    elif hint == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        value = float(value)
    elif hint == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
    elif hint == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
    elif hint.startswith("tuple[int"):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{where} must be a list of integers, got {value!r}")
    elif hint.startswith("tuple[str"):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where} must be a list of strings, got {value!r}")
    return value
