"""``SparsifierConfig``: the ``sparsifier:`` section of a training config.

``name`` picks a method from ``mtlexport.sparsity.methods.SPARSIFIERS`` (``none`` trains as the
``optimizer`` section says, which is how configs with ``optimizer.name: proxadam`` keep
working). ``structure`` is ``channel`` (coupled channel groups that ``mtlexport slim`` removes)
or ``element`` (single weights). ``target_macs`` (slim / dense MACs; channel only) or
``target_sparsity`` (share of removed units: weights, or channel groups) is reached by
``target_at`` (a fraction of training). ``scope`` is ``backbone`` or ``all`` (null: the
method's default). DiSparse reads ``variant``, ``arbiter`` and ``init_from``; every method
validates its own ``options`` mapping (unknown keys list the valid ones).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mtlexport.errors import ConfigError
from mtlexport.schema import choice, fraction, optional, string, validate

__all__ = ["SparsifierConfig"]


def _options(where: str, v: Any) -> dict[str, Any]:
    if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
        raise ConfigError(f"{where} must be a mapping of option names to values, got {v!r}")
    return dict(v)


@dataclass(frozen=True)
class SparsifierConfig:
    """Which sparsifier trains the model and what it aims for (see the module docstring)."""

    name: str = "none"
    structure: str = "channel"
    variant: str = "static"
    arbiter: str = "unanimous"
    init_from: str | None = None
    scope: str | None = None
    target_macs: float | None = None
    target_sparsity: float | None = None
    target_at: float = 0.75
    options: dict[str, Any] = field(default_factory=dict)

    _where = "sparsifier"
    _checks = {
        "name": string(), "structure": choice("channel", "element"),
        "variant": choice("static", "pretrained", "dynamic"), "arbiter": choice("unanimous", "majority"),
        "init_from": optional(string()), "scope": optional(choice("backbone", "all")),
        "target_macs": optional(fraction), "target_sparsity": optional(fraction), "target_at": fraction,
        "options": _options,
    }

    def __post_init__(self) -> None:
        validate(self)
        if self.name == "none":
            return
        if self.target_macs is not None and self.target_sparsity is not None:
            raise ConfigError("set at most one of sparsifier.target_macs and sparsifier.target_sparsity")
        if self.target_macs is None and self.target_sparsity is None:
            raise ConfigError(f"sparsifier {self.name!r} needs a target: set sparsifier.target_macs (channel) "
                              "or sparsifier.target_sparsity")
        if self.structure == "element" and self.target_macs is not None:
            raise ConfigError("element-wise zeros remove no MACs: with sparsifier.structure: element set "
                              "sparsifier.target_sparsity instead of target_macs")
        if self.variant == "pretrained" and not self.init_from:
            raise ConfigError("sparsifier.variant: pretrained prunes a trained model: set sparsifier.init_from "
                              "to a dense checkpoint (e.g. runs/dense/best.pt)")

    @property
    def target(self) -> tuple[str, float]:
        """("macs", R) or ("sparsity", S)."""
        if self.target_macs is not None:
            return "macs", self.target_macs
        return "sparsity", float(self.target_sparsity or 0.0)
