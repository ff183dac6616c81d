"""``TrainConfig``: the whole training configuration, validated, frozen and round-trippable.

Sections: ``model`` (``ModelSpec``), ``data`` (``DataConfig``), ``train``, ``optimizer``,
``schedule`` and ``loss_weighting``. Every bad value raises a one-line ``ConfigError`` that
names the key path (``optimizer.lr must be a positive number, got -1``). ``--set a.b=value``
overrides are applied to the raw mapping before validation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from mtlexport.data.config import DataConfig
from mtlexport.errors import ConfigError
from mtlexport.models.spec import ModelSpec

Check = Callable[[str, Any], Any]


# ----------------------------------------------------------------------------- value checks
def _int(minimum: int) -> Check:
    def check(where: str, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            raise ConfigError(f"{where} must be {what}, got {v!r}")
        return v

    return check


def _num(minimum: float = 0.0, strict: bool = False, maximum: float | None = None) -> Check:
    def check(where: str, v: Any) -> float:
        ok = not isinstance(v, bool) and isinstance(v, (int, float))
        if ok:
            ok = v > minimum if strict else v >= minimum
            ok = ok and (maximum is None or v <= maximum)
        if not ok:
            if maximum is not None:
                what = f"a number in [{minimum:g}, {maximum:g}]"
            else:
                what = "a positive number" if strict and minimum == 0 else f"a number >= {minimum:g}"
            raise ConfigError(f"{where} must be {what}, got {v!r}")
        return float(v)

    return check


def _optional(check: Check) -> Check:
    """``check``, or None (YAML ``null``) for "not set"."""

    def optional(where: str, v: Any) -> Any:
        return None if v is None else check(where, v)

    return optional


def _fraction(where: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
        raise ConfigError(f"{where} must be a number strictly between 0 and 1, got {v!r}")
    return float(v)


def _choice(*options: str) -> Check:
    def check(where: str, v: Any) -> str:
        if v not in options:
            raise ConfigError(f"{where} must be one of {', '.join(options)}, got {v!r}")
        return v

    return check


def _bool(where: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"{where} must be true or false, got {v!r}")
    return v


def _str(where: str, v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{where} must be a non-empty string, got {v!r}")
    return v


def _betas(where: str, v: Any) -> tuple[float, float]:
    if (not isinstance(v, (list, tuple)) or len(v) != 2
            or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in v)):
        raise ConfigError(f"{where} must be a list of two numbers in [0, 1), got {v!r}")
    return (float(v[0]), float(v[1]))


def _weights(where: str, v: Any) -> dict[str, float]:
    if not isinstance(v, dict):
        raise ConfigError(f"{where} must map task names to numbers, got {v!r}")
    return {str(k): _num()(f"{where}.{k}", w) for k, w in v.items()}


def _parse_section(cls: type, where: str, data: Any, checks: Mapping[str, Check]) -> Any:
    """Build dataclass ``cls`` from a mapping: unknown keys and bad values raise ConfigError."""
    if data is None:
        data = {}
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{where} section must be a mapping, got {type(data).__name__}")
    aliases = getattr(cls, "_yaml_keys", {})
    inverse = {v: k for k, v in aliases.items()}
    known = sorted(aliases.get(f.name, f.name) for f in fields(cls))
    unknown = sorted(k for k in data if inverse.get(k, k) not in {f.name for f in fields(cls)})
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {where}; valid keys: {known}")
    clean = {}
    for key, value in data.items():
        attr = inverse.get(key, key)
        clean[attr] = checks[attr](f"{where}.{key}", value)
    return cls(**clean)


def _section_dict(obj: Any) -> dict[str, Any]:
    aliases = getattr(type(obj), "_yaml_keys", {})
    out: dict[str, Any] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        out[aliases.get(f.name, f.name)] = list(value) if isinstance(value, tuple) else (
            dict(value) if isinstance(value, dict) else value)
    return out


# ----------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class TrainSettings:
    """Loop settings. ``monitor`` is ``loss`` (mean validation task loss, lower is better) or
    ``task.metric`` (e.g. ``segmentation.miou``; direction from the task); ``patience`` 0 = no
    early stopping; ``grad_clip`` 0 = no clipping."""

    epochs: int = 10
    batch_size: int = 16
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    eval_every: int = 1
    patience: int = 0
    monitor: str = "loss"
    min_delta: float = 0.0
    grad_clip: float = 0.0
    deterministic: bool = True

    _checks = {
        "epochs": _int(1), "batch_size": _int(1), "seed": _int(0), "device": _choice("auto", "cpu", "cuda"),
        "num_workers": _int(0), "eval_every": _int(1), "patience": _int(0), "monitor": _str,
        "min_delta": _num(), "grad_clip": _num(), "deterministic": _bool,
    }


@dataclass(frozen=True)
class OptimizerConfig:
    """Optimizer behind ``mtlexport.sparsity.build_optimizer``; ``lam`` is YAML key ``lambda``
    (group-lasso strength, used by proxadam / proxsgd; the starting value when a target is set);
    ``group_scope`` says which convolutions are grouped; ``prox`` chooses the adaptive or
    uniform proximal step; ``grouping`` is ``channel`` (the paper's input-channel groups) or
    ``coupled`` (one group per channel the surgeon can remove; ``coupled_norms`` adds its
    BatchNorm entries). ``target_macs`` (slim / dense MACs) or ``target_group_sparsity`` (share
    of zero groups) lets a controller adapt lambda to land on the target at ``target_at`` (a
    fraction of training) and hold it; ``freeze_at`` keeps the groups that are zero at that
    fraction of training zero (``null``: never)."""

    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    momentum: float = 0.9
    lam: float = 0.0
    group_scope: str = "backbone"
    prox: str = "adaptive"
    grouping: str = "channel"
    coupled_norms: bool = False
    target_macs: float | None = None
    target_group_sparsity: float | None = None
    target_at: float = 0.75
    freeze_at: float | None = 0.75

    _yaml_keys = {"lam": "lambda"}
    _checks = {
        "name": _choice("adamw", "proxadam", "proxsgd"), "lr": _num(strict=True), "weight_decay": _num(),
        "betas": _betas, "eps": _num(strict=True), "momentum": _num(maximum=1.0), "lam": _num(),
        "group_scope": _choice("backbone", "all"), "prox": _choice("adaptive", "uniform"),
        "grouping": _choice("channel", "coupled"), "coupled_norms": _bool,
        "target_macs": _optional(_fraction), "target_group_sparsity": _optional(_fraction),
        "target_at": _fraction, "freeze_at": _optional(_num(maximum=1.0)),
    }

    def __post_init__(self) -> None:
        if self.target_macs is not None and self.target_group_sparsity is not None:
            raise ConfigError("set at most one of optimizer.target_macs and optimizer.target_group_sparsity")
        targeted = self.target_macs is not None or self.target_group_sparsity is not None
        if targeted and self.name == "adamw":
            raise ConfigError("a sparsity target needs the group lasso: set optimizer.name to proxadam or proxsgd")


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate schedule, evaluated every step from the fractional epoch: linear warm-up
    over ``warmup_epochs``, then ``cosine`` (to ``min_lr_ratio``), ``step`` (times ``gamma``
    every ``step_size`` epochs), ``poly`` (``(1 - t)^power``) or ``none``."""

    name: str = "none"
    warmup_epochs: float = 0.0
    min_lr_ratio: float = 0.0
    step_size: int = 30
    gamma: float = 0.1
    power: float = 0.9

    _checks = {
        "name": _choice("none", "cosine", "step", "poly"), "warmup_epochs": _num(),
        "min_lr_ratio": _num(maximum=1.0), "step_size": _int(1), "gamma": _num(strict=True),
        "power": _num(strict=True),
    }


@dataclass(frozen=True)
class LossWeightingConfig:
    """``uncertainty`` (Kendall et al.: learnable log-variances, initial value ``init_log_var``)
    or ``fixed`` (``weights`` per task name; missing tasks weigh 1)."""

    name: str = "uncertainty"
    weights: dict[str, float] = field(default_factory=dict)
    init_log_var: float = 0.0

    _checks = {"name": _choice("uncertainty", "fixed"), "weights": _weights,
               "init_log_var": _num(minimum=-50.0)}


_SECTIONS: dict[str, type] = {
    "train": TrainSettings, "optimizer": OptimizerConfig, "schedule": ScheduleConfig,
    "loss_weighting": LossWeightingConfig,
}


@dataclass(frozen=True)
class TrainConfig:
    """The full training configuration; ``to_dict()`` is stored in every checkpoint."""

    model: ModelSpec
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainSettings = field(default_factory=TrainSettings)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss_weighting: LossWeightingConfig = field(default_factory=LossWeightingConfig)

    def __post_init__(self) -> None:
        names = set(self.model.task_names)
        unknown = sorted(set(self.loss_weighting.weights) - names)
        if unknown:
            raise ConfigError(f"loss_weighting.weights names unknown task(s) {unknown}; tasks are {sorted(names)}")
        if self.optimizer.name == "adamw" and self.optimizer.lam > 0:
            raise ConfigError(f"optimizer.lambda is {self.optimizer.lam:g} but adamw does not apply the group lasso; "
                              "use optimizer.name proxadam or proxsgd")
        monitor = self.train.monitor
        if monitor != "loss":
            task, _, metric = monitor.partition(".")
            if task not in names or not metric:
                raise ConfigError(
                    f"train.monitor must be 'loss' or 'task.metric' with a task of the model "
                    f"({sorted(names)}), got {monitor!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-safe mapping; ``from_dict`` inverts it."""
        out: dict[str, Any] = {"model": self.model.to_dict(), "data": self.data.to_dict()}
        for key in _SECTIONS:
            out[key] = _section_dict(getattr(self, key))
        return out

    @classmethod
    def from_dict(cls, data: Any) -> TrainConfig:
        """Validate a mapping (the parsed YAML file)."""
        if not isinstance(data, dict):
            raise ConfigError(f"a training config must be a mapping of sections, got {type(data).__name__}")
        valid = ["model", "data", *_SECTIONS]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ConfigError(f"unknown section(s) {unknown} in the config; valid sections: {valid}")
        if "model" not in data:
            raise ConfigError("the config needs a 'model:' section")
        kwargs: dict[str, Any] = {"model": ModelSpec.from_dict(data["model"]),
                                  "data": DataConfig.from_dict(data.get("data"))}
        for key, section in _SECTIONS.items():
            kwargs[key] = _parse_section(section, key, data.get(key), section._checks)
        return cls(**kwargs)

    @classmethod
    def from_file(cls, path: str | Path, overrides: Iterable[str] = ()) -> TrainConfig:
        """Read a YAML/JSON file and apply ``section.key=value`` overrides before validating."""
        return cls.from_dict(apply_overrides(read_config_file(path), overrides))

    def to_yaml(self) -> str:
        """YAML text of ``to_dict()``."""
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The raw mapping in a YAML or JSON config file."""
    from mtlexport.yamlio import read_yaml_file

    p = Path(path)
    data = read_yaml_file(p, "config")
    if not isinstance(data, dict):
        raise ConfigError(f"{p} must contain a mapping of config sections, got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` items (value parsed as YAML, ``1e-5`` being a float; list items by index,
    e.g. ``model.tasks.0.head.width=32``) to a deep copy of ``data``."""
    import copy

    import yaml

    from mtlexport.yamlio import load_yaml

    out = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like section.key=value")
        try:
            value = load_yaml(raw) if raw.strip() else None
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: the value is not valid YAML") from None
        parts = key.strip().split(".")
        node: Any = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"override {key!r}: {'.'.join(parts[:i])} has no item {part}")
                idx: Any = int(part)
            elif isinstance(node, dict):
                idx = part
                if not last and not isinstance(node.get(part), (dict, list)):
                    node[part] = {}
            else:
                raise ConfigError(f"override {key!r}: {'.'.join(parts[:i])} is not a section")
            if last:
                node[idx] = value
            else:
                node = node[idx]
    return out


def resolve_config(config: TrainConfig, info: Mapping[str, Any] | None = None) -> TrainConfig:
    """Fill what the dataset decides: segmentation ``num_outputs`` from its classes, attribute
    names (checked, spelled as the dataset spells them), and task defaults (heads, losses).

    ``info`` is the dataset's metadata (``dataset_info``); read from ``config.data`` when None.
    """
    from dataclasses import replace

    from mtlexport.models.multitask import resolve_spec
    from mtlexport.train.loaders import dataset_info

    data = config.data
    wanted = [a for t in config.model.tasks if t.type == "attributes" for a in t.attributes]
    if wanted and not data.attributes:
        data = replace(data, attributes=tuple(dict.fromkeys(wanted)))
    if info is None:
        info = dataset_info(data)
    keys = set(info.get("label_keys") or ())
    available = tuple(info.get("attribute_names") or ())
    lookup = {a.lower(): a for a in available}
    tasks = []
    for i, task in enumerate(config.model.tasks):
        where = f"model.tasks[{i}] ({task.name})"
        if task.type == "segmentation":
            classes = info.get("num_classes")
            if not classes:
                raise ConfigError(f"{where} is a segmentation task but dataset {data.name!r} "
                                  "has no segmentation labels")
            if task.num_outputs == 0:
                task = replace(task, num_outputs=int(classes))
            elif task.num_outputs != classes:
                raise ConfigError(
                    f"{where}.num_outputs is {task.num_outputs} but dataset {data.name!r} has {classes} classes")
        elif task.type == "attributes":
            names = task.attributes or available
            if not names:
                raise ConfigError(f"{where} is an attributes task but dataset {data.name!r} has no attributes")
            missing = [a for a in names if a.lower() not in lookup]
            if missing:
                raise ConfigError(
                    f"{where}.attributes {missing} are not in dataset {data.name!r}; valid: {list(available)}")
            task = replace(task, attributes=tuple(lookup[a.lower()] for a in names))
        elif task.type in ("depth", "normals") and keys and task.type not in keys:
            raise ConfigError(
                f"{where}: dataset {data.name!r} has no {task.type!r} labels; it has {sorted(keys)}")
        tasks.append(task)
    model = resolve_spec(replace(config.model, tasks=tuple(tasks)))
    return replace(config, model=model, data=data)
