"""``DataConfig``: which dataset to build and how (embedded as the ``data:`` section)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from mtlexport.errors import ConfigError

_INT_FIELDS = ("height", "width", "num_train", "num_val", "num_test", "seed", "max_objects")
_OPTIONAL_STR_FIELDS = ("root", "cache_dir")
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

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"data.name must be a non-empty string, got {self.name!r}")
        for key in _OPTIONAL_STR_FIELDS:
            value = getattr(self, key)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"data.{key} must be a path string or null, got {value!r}")
        for key in _INT_FIELDS:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"data.{key} must be an integer, got {value!r}")
        for key in ("height", "width"):
            value = getattr(self, key)
            if value <= 0 or value % 8:
                raise ConfigError(f"data.{key} must be a positive multiple of 8, got {value}")
        for key in ("num_train", "num_val", "num_test", "seed"):
            if getattr(self, key) < 0:
                raise ConfigError(f"data.{key} must be >= 0, got {getattr(self, key)}")
        if not 1 <= self.max_objects <= MAX_OBJECTS_LIMIT:
            raise ConfigError(
                f"data.max_objects must be between 1 and {MAX_OBJECTS_LIMIT}, got {self.max_objects}"
            )
        attrs = self.attributes
        if isinstance(attrs, list):
            attrs = tuple(attrs)
            object.__setattr__(self, "attributes", attrs)
        if not isinstance(attrs, tuple) or not all(isinstance(a, str) and a for a in attrs):
            raise ConfigError(f"data.attributes must be a list of names, got {self.attributes!r}")
        if len(set(a.lower() for a in attrs)) != len(attrs):
            raise ConfigError(f"data.attributes has duplicates: {list(attrs)}")

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of every sample."""
        return (self.height, self.width)

    def to_dict(self) -> dict[str, Any]:
        """Plain (YAML/JSON-serialisable) mapping; ``from_dict`` inverts it."""
        out = asdict(self)
        out["attributes"] = list(self.attributes)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> DataConfig:
        """Build from a mapping (e.g. the ``data:`` section of a YAML file); None = defaults."""
        if data is None:
            return cls()
        if isinstance(data, DataConfig):
            return data
        if not isinstance(data, dict):
            raise ConfigError(f"data section must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown key(s) {unknown} in data; valid keys: {sorted(known)}")
        clean = dict(data)
        if isinstance(clean.get("attributes"), list):
            clean["attributes"] = tuple(clean["attributes"])
        return cls(**clean)
