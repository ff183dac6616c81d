"""``TrainConfig``: the whole training configuration, validated, frozen and round-trippable.

Sections: ``model`` (``ModelSpec``), ``data`` (``DataConfig``), ``train``, ``optimizer``,
``schedule``, ``loss_weighting`` and ``sparsifier`` (``SparsifierConfig``). Every bad value
raises a one-line ``ConfigError`` that names the key path (``optimizer.lr must be a positive
number, got -1``). ``--set a.b=value`` overrides are applied to the raw mapping before validation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtlexport.data.config import DataConfig
from mtlexport.errors import ConfigError
from mtlexport.models.spec import ModelSpec
from mtlexport.schema import (
    boolean, choice, fraction, integer, mapping_of, number, optional, parse_section, section_dict, sequence, string,
    validate,
)
from mtlexport.train.sparsifier_config import SparsifierConfig


def _below_one(where: str, v: Any) -> float:
    if not 0 <= number()(where, v) < 1:
        raise ConfigError(f"{where} must be a number in [0, 1), got {v!r}")
    return float(v)


_betas = sequence(_below_one, "a list of two numbers in [0, 1)", length=2)
_weights = mapping_of(number(), "a mapping of task names to numbers")


# ----------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class TrainSettings:
    """Loop settings. ``monitor`` is ``loss`` (mean validation task loss, lower is better) or
    ``task.metric`` (e.g. ``segmentation.miou``; direction from the task); ``patience`` 0 = no
    early stopping; ``grad_clip`` 0 = no clipping. ``sync_bn`` normalises with the statistics of
    the global batch under torchrun (plain BatchNorm in checkpoints); ``amp`` is ``none``,
    ``bf16`` (autocast, CUDA and CPU) or ``fp16`` (autocast and a GradScaler)."""

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
    sync_bn: bool = False
    amp: str = "none"

    _where = "train"
    _checks = {
        "epochs": integer(1), "batch_size": integer(1), "seed": integer(0), "device": choice("auto", "cpu", "cuda"),
        "num_workers": integer(0), "eval_every": integer(1), "patience": integer(0), "monitor": string(),
        "min_delta": number(), "grad_clip": number(), "deterministic": boolean, "sync_bn": boolean,
        "amp": choice("none", "bf16", "fp16"),
    }

    def __post_init__(self) -> None:
        validate(self)


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

    _where = "optimizer"
    _yaml_keys = {"lam": "lambda"}
    _checks = {
        "name": choice("adamw", "proxadam", "proxsgd"), "lr": number(strict=True), "weight_decay": number(),
        "betas": _betas, "eps": number(strict=True), "momentum": number(maximum=1.0), "lam": number(),
        "group_scope": choice("backbone", "all"), "prox": choice("adaptive", "uniform"),
        "grouping": choice("channel", "coupled"), "coupled_norms": boolean,
        "target_macs": optional(fraction), "target_group_sparsity": optional(fraction),
        "target_at": fraction, "freeze_at": optional(number(maximum=1.0)),
    }

    def __post_init__(self) -> None:
        validate(self)
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

    _where = "schedule"
    _checks = {
        "name": choice("none", "cosine", "step", "poly"), "warmup_epochs": number(),
        "min_lr_ratio": number(maximum=1.0), "step_size": integer(1), "gamma": number(strict=True),
        "power": number(strict=True),
    }

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class LossWeightingConfig:
    """``uncertainty`` (Kendall et al.: learnable log-variances, initial value ``init_log_var``)
    or ``fixed`` (``weights`` per task name; missing tasks weigh 1)."""

    name: str = "uncertainty"
    weights: dict[str, float] = field(default_factory=dict)
    init_log_var: float = 0.0

    _where = "loss_weighting"
    _checks = {"name": choice("uncertainty", "fixed"), "weights": _weights,
               "init_log_var": number(minimum=-50.0)}

    def __post_init__(self) -> None:
        validate(self)


_SECTIONS: dict[str, type] = {
    "train": TrainSettings, "optimizer": OptimizerConfig, "schedule": ScheduleConfig,
    "loss_weighting": LossWeightingConfig, "sparsifier": SparsifierConfig,
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
    sparsifier: SparsifierConfig = field(default_factory=SparsifierConfig)

    def __post_init__(self) -> None:
        names = set(self.model.task_names)
        unknown = sorted(set(self.loss_weighting.weights) - names)
        if unknown:
            raise ConfigError(f"loss_weighting.weights names unknown task(s) {unknown}; tasks are {sorted(names)}")
        if self.optimizer.name == "adamw" and self.optimizer.lam > 0:
            raise ConfigError(f"optimizer.lambda is {self.optimizer.lam:g} but adamw does not apply the group lasso; "
                              "use optimizer.name proxadam or proxsgd")
        stride = self.model.backbone.output_stride
        for key in ("height", "width"):
            size = getattr(self.data, key)
            if size % stride:
                lower, upper = max(stride, size - size % stride), size - size % stride + stride
                raise ConfigError(f"data.{key} {size} is not divisible by the backbone's output stride {stride} "
                                  f"(export would refuse the model); use e.g. {lower} or {upper}")
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
            out[key] = section_dict(getattr(self, key))
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
            kwargs[key] = parse_section(section, key, data.get(key))
        return cls(**kwargs)

    @classmethod
    def from_file(cls, path: str | Path, overrides: Iterable[str] = (), *, factory: str | None = None) -> TrainConfig:
        """Read a YAML/JSON file and apply ``section.key=value`` overrides before validating;
        ``factory`` (``--model``) sets ``model.factory`` (a different one in the file is refused)."""
        data = apply_overrides(read_config_file(path), overrides)
        if factory:
            model = data.get("model")
            named = model.get("factory") if isinstance(model, dict) else None
            if named and named != factory:
                raise ConfigError(f"--model {factory} differs from model.factory {named} in {path}; pass the same "
                                  "factory or leave one of them out")
            data["model"] = {**(model if isinstance(model, dict) else {}), "factory": factory}
        return cls.from_dict(data)

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
            if not classes and task.num_outputs and data.factory and "segmentation" in keys:
                pass  # your own data without num_classes: the config's num_outputs says
            elif not classes:
                raise ConfigError(f"{where} is a segmentation task but dataset {data.name!r} "
                                  "has no segmentation labels" + (" (or no num_classes: set the task's num_outputs)"
                                                                  if data.factory else ""))
            elif task.num_outputs == 0:
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
    if model.factory and info.get("channels"):  # your own model takes the images your data has
        model = replace(model, in_channels=int(info["channels"]))
    return replace(config, model=model, data=data)
