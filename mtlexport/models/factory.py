"""Your own model: ``package.module:function`` factories, and the one rule for importing them.

A model factory returns an ``nn.Module`` whose ``forward(images)`` returns ``{task: tensor}``
(one entry per task of the spec). A spec with ``factory`` set records the factory's name, its
``kwargs`` and, after slimming, the per-layer ``widths``; ``build_user_model`` rebuilds it as
``factory(**kwargs)`` plus ``apply_widths``.

Security: mtlexport imports code only from a factory the user names (``--model`` or the
``model.factory`` of their own config). A checkpoint only records the name; ``trusted_factory``
refuses to load one unless the user names the same factory.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from mtlexport.errors import CheckpointError, ConfigError

_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")

__all__ = ["build_user_model", "call_factory", "check_factory_name", "check_outputs", "import_factory",
           "trusted_factory"]


def check_factory_name(text: Any, where: str = "--model") -> str:
    """``text`` if it looks like ``package.module:function`` (ConfigError otherwise); imports nothing."""
    if not isinstance(text, str) or not _NAME.match(text):
        shown = repr(text) if len(repr(text)) <= 60 else repr(text)[:57] + "..."
        raise ConfigError(f"{where} must look like package.module:function, got {shown}")
    return text


def import_factory(text: str, where: str = "--model") -> Callable[..., Any]:
    """Import the callable ``package.module:function`` names (the module must be importable,
    e.g. from a folder on PYTHONPATH)."""
    module_name, _, attr = check_factory_name(text, where).partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{where} {text}: cannot import {module_name!r} ({exc}); put its folder on PYTHONPATH "
                          "or install the package") from None
    for part in attr.split("."):
        obj = getattr(obj, part, None)
    if not callable(obj):
        raise ConfigError(f"{where} {text}: {module_name!r} has no callable {attr!r}")
    return obj


def call_factory(text: str, kwargs: Mapping[str, Any] | None = None, where: str = "--model") -> nn.Module:
    """``factory(**kwargs)``, checked to be an ``nn.Module``."""
    fn = import_factory(text, where)
    try:
        model = fn(**dict(kwargs or {}))
    except TypeError as exc:
        raise ConfigError(f"{where} {text} does not take these kwargs {sorted(kwargs or {})}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{where} {text} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def trusted_factory(recorded: str, given: str | None, where: str | Path = "checkpoint") -> str:
    """The factory to import for a file that records ``recorded``: only ``given`` (the user's
    ``--model``), and only when it is the same; CheckpointError otherwise. Imports nothing."""
    if not recorded:
        if given:
            raise CheckpointError(f"{where} holds a built-in mtlexport model, not one of a factory; drop --model {given}")
        return ""
    if not given:
        raise CheckpointError(
            f"{where} holds a model built by a factory ({_short(recorded)}); mtlexport never imports code a file "
            "names: pass --model package.module:factory, the factory you trust that built it")
    if given != recorded:
        raise CheckpointError(
            f"{where} was built by factory {_short(recorded)}, not {given} (--model); refusing to load it: pass "
            f"the checkpoint written for {given}, or --model with the factory that built this file")
    return given


def build_user_model(spec: Any, factory: str | None, where: str | Path = "checkpoint") -> nn.Module:
    """The model of a ``ModelSpec`` with ``factory`` set: ``factory(**spec.kwargs)`` with the
    recorded ``widths`` applied (weights freshly initialised). ``factory`` is the one the user
    named; it must equal ``spec.factory``."""
    from mtlexport.models.widths import apply_widths

    name = trusted_factory(spec.factory, factory, where)
    model = call_factory(name, spec.kwargs, "model.factory")
    if spec.widths:
        apply_widths(model, {k: tuple(v) for k, v in spec.widths.items()})
    return model


def check_outputs(outputs: Any, task_names: tuple[str, ...], batch: int, where: str) -> None:
    """Check a forward's result against the spec: a dict with one tensor per task, batch first."""
    if not isinstance(outputs, Mapping):
        raise ConfigError(f"{where}: forward(images) returned a {type(outputs).__name__}; it must return a dict "
                          f"{{task name: tensor}} with the tasks {list(task_names)}")
    missing = [n for n in task_names if n not in outputs]
    if missing:
        raise ConfigError(f"{where}: forward(images) returned {sorted(map(str, outputs))} but the config lists tasks "
                          f"{list(task_names)}; missing {missing}: name model.tasks after the model's outputs")
    for name in task_names:
        value = outputs[name]
        if not isinstance(value, Tensor) or value.dim() < 1 or value.shape[0] != batch:
            shape = list(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ConfigError(f"{where}: output {name!r} is {shape}; each output must be a tensor with the batch "
                              f"({batch}) first")


def _short(text: str) -> str:
    return repr(text) if len(text) <= 80 else repr(text[:77] + "...")
