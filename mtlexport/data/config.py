"""``DataConfig``: which dataset to build and how (embedded as the ``data:`` section)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mtlexport.errors import ConfigError
from mtlexport.schema import (
    integer, mapping_of, multiple_of, optional, parse_section, sequence, string, validate,
)

MAX_OBJECTS_LIMIT = 16


@dataclass(frozen=True)
class DataConfig:
    """Dataset selection and generation settings; validated on construction.

    ``num_train/num_val/num_test`` and ``max_objects`` apply to the synthetic scenes only;
    ``attributes`` empty means the dataset's default attributes.
    """

    name: str = "synthetic"
    root: str | None = None
    height: int = 64
    width: int = 64
    num_train: int = 2048
    num_val: int = 256
    num_test: int = 256
    seed: int = 0
    cache_dir: str | None = None
    attributes: tuple[str, ...] = ()
    max_objects: int = 4
    factory: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    _where = "data"
    _checks = {
        "name": string(), "root": optional(string()), "cache_dir": optional(string()),
        "height": multiple_of(8), "width": multiple_of(8),
        "num_train": integer(0), "num_val": integer(0), "num_test": integer(0), "seed": integer(0),
        "attributes": sequence(string(), "a list of attribute names"),
        "max_objects": integer(1, MAX_OBJECTS_LIMIT),
        "factory": optional(lambda where, v: _factory_name(where, v)),
        "kwargs": mapping_of(lambda where, v: v, "a mapping of keyword arguments for data.factory"),
    }

    def __post_init__(self) -> None:
        validate(self)
        if self.name == "factory" and not self.factory:
            raise ConfigError("data.name factory needs data.factory: package.module:function (your data factory)")
        if self.factory and self.name != "factory":
            raise ConfigError(f"data.factory is set but data.name is {self.name!r}; set data.name: factory")
        if self.kwargs and not self.factory:
            raise ConfigError("data.kwargs are the arguments of data.factory; set data.factory or remove them")
        if len(set(a.lower() for a in self.attributes)) != len(self.attributes):
            raise ConfigError(f"data.attributes has duplicates: {list(self.attributes)}")

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of every sample."""
        return (self.height, self.width)

    def to_dict(self) -> dict[str, Any]:
        """Plain (YAML/JSON-serialisable) mapping; ``from_dict`` inverts it."""
        out = asdict(self)
        out["attributes"] = list(self.attributes)
        if self.factory:
            out["kwargs"] = dict(self.kwargs)
        else:  # the keys of your own data only appear where they are used
            del out["factory"], out["kwargs"]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> DataConfig:
        """Build from a mapping (e.g. the ``data:`` section of a YAML file); None = defaults."""
        if data is not None and not isinstance(data, (dict, DataConfig)):
            raise ConfigError(f"data section must be a mapping, got {type(data).__name__}")
        return parse_section(cls, "data", data)


def _factory_name(where: str, v: Any) -> str:
    from mtlexport.models.factory import check_factory_name

    return check_factory_name(v, where)
