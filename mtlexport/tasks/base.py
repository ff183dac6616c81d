"""The task contract: head defaults, loss, split-level metrics and export tolerances."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from torch import Tensor

from mtlexport.errors import ConfigError
from mtlexport.models.spec import HeadSpec, TaskSpec
from mtlexport.registry import Registry


@dataclass(frozen=True)
class Tolerance:
    """Allowed deviation of an exported output: ``|a - b| <= atol + rtol * |b|`` element-wise."""

    atol: float
    rtol: float

    def to_dict(self) -> dict[str, float]:
        return {"atol": self.atol, "rtol": self.rtol}


class Meter(ABC):
    """Accumulates statistics over a whole split; ``compute`` gives the split's metrics."""

    @abstractmethod
    def update(self, pred: Tensor, batch: dict[str, Tensor]) -> None:
        """Add one batch of predictions (the task's raw output) and its labels."""

    @abstractmethod
    def compute(self) -> dict[str, float]:
        """Metrics over everything seen so far."""


class Task(ABC):
    """One task of a multi-task model, bound to its ``TaskSpec``.

    Subclasses set the class variables and implement ``loss`` and ``meter``. ``metrics``
    maps every metric name to True when higher is better.
    """

    type_name: ClassVar[str]
    dense: ClassVar[bool]
    target_key: ClassVar[str]
    metrics: ClassVar[dict[str, bool]]
    primary_metric: ClassVar[str]
    tolerances: ClassVar[dict[str, Tolerance]]
    losses: ClassVar[tuple[str, ...]] = ("default",)

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = self.resolve(spec)
        if ":" in self.spec.loss:  # loss: "package.module:function", imported at its first call
            self.loss = ImportedLoss(self.spec.loss, self.spec.name)  # type: ignore[method-assign]

    @property
    def name(self) -> str:
        """The task's output name."""
        return self.spec.name

    @classmethod
    def default_outputs(cls, spec: TaskSpec) -> int:
        """Output channels when the spec leaves ``num_outputs`` at 0."""
        raise ConfigError(f"task {spec.name!r} ({cls.type_name}) needs num_outputs")

    @classmethod
    def resolve(cls, spec: TaskSpec) -> TaskSpec:
        """Fill defaults (output size, head kind, loss) and validate the spec."""
        num = spec.num_outputs or cls.default_outputs(spec)
        if num < 1:
            raise ConfigError(f"task {spec.name!r}: num_outputs must be positive, got {num}")
        head = spec.head
        if head.kind == "auto":
            head = replace(head, kind="aspp" if cls.dense else "classifier")
        loss = spec.loss or cls.losses[0]
        if ":" in loss:
            from mtlexport.models.factory import check_factory_name

            check_factory_name(loss, f"task {spec.name!r} loss")
        elif loss not in cls.losses:
            raise ConfigError(f"task {spec.name!r}: unknown loss {loss!r}; valid: {list(cls.losses)} "
                              "or package.module:function (your own)")
        return replace(spec, num_outputs=num, head=head, loss=loss)

    def target_keys(self) -> tuple[str, ...]:
        """Batch keys this task reads its labels from."""
        return (self.target_key,)

    @abstractmethod
    def loss(self, pred: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """Scalar training loss for one batch."""

    @abstractmethod
    def meter(self) -> Meter:
        """A fresh metric accumulator for a split."""

    def tolerance(self, precision: str) -> Tolerance:
        """Export tolerance for ``precision`` (fp32 or fp16)."""
        try:
            return self.tolerances[precision]
        except KeyError:
            raise ConfigError(f"unknown precision {precision!r}; valid: {sorted(self.tolerances)}") from None


class ImportedLoss:
    """A task's ``loss: package.module:function`` override: ``function(pred, batch) -> scalar``,
    imported from the user's config at the first call (never when a checkpoint is only read)."""

    def __init__(self, name: str, task: str) -> None:
        self.name, self.task = name, task
        self._fn: Any = None

    def __call__(self, pred: Tensor, batch: dict[str, Tensor]) -> Tensor:
        if self._fn is None:
            from mtlexport.models.factory import import_factory

            self._fn = import_factory(self.name, f"task {self.task!r} loss")
        value = self._fn(pred, batch)
        if not isinstance(value, Tensor) or value.numel() != 1:
            raise ConfigError(f"task {self.task!r} loss {self.name} returned {type(value).__name__}"
                              f"{list(value.shape) if isinstance(value, Tensor) else ''}; it must return a scalar tensor")
        return value.reshape(())


TASKS: Registry[type[Task]] = Registry("task type")


def default_head(dense: bool) -> HeadSpec:
    """The head a task type gets when its spec says ``auto``."""
    return HeadSpec(kind="aspp" if dense else "classifier")
