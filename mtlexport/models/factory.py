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
           "trusted_factory", "weights_checkpoint"]


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


def weights_checkpoint(path: str | Path, factory: str, size: tuple[int, int] = (64, 64)) -> Any:
    """Your own model from a plain ``state_dict`` file (or a ``slim --model`` state dict, whose
    recorded factory must be ``factory``) as an in-memory ``Checkpoint``: one ``custom`` task
    per output of ``forward`` (names and order as it returns them, generic export tolerances),
    ``in_channels`` from the first convolution, the slim widths when there are any."""
    import torch

    from mtlexport.models.spec import BackboneSpec, ModelSpec, TaskSpec
    from mtlexport.models.widths import apply_widths
    from mtlexport.train.checkpoint import Checkpoint, read_weights_only

    raw = read_weights_only(path, "state dict")
    widths: dict[str, tuple[int, ...]] = {}
    if isinstance(raw, dict) and raw.get("format") == "mtlexport.slim_state_dict":
        trusted_factory(str(raw.get("factory") or "?"), factory, path)
        widths = {k: tuple(v) for k, v in (raw.get("widths") or {}).items()}
        raw = raw.get("state_dict")
    elif isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict) or not raw or not all(isinstance(v, Tensor) for v in raw.values()):
        raise CheckpointError(f"{path} is not a state dict (a dict of tensors) for --model {factory}")
    model = call_factory(factory, {}, "--model")
    apply_widths(model, widths)
    try:
        model.load_state_dict(raw, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{path} does not match the model {factory} builds ({first})") from None
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ConfigError(f"{factory} builds a model without a Conv2d layer; mtlexport handles image models")
    channels = convs[0].in_channels
    model.eval()
    with torch.no_grad():
        outputs = model(torch.zeros(1, channels, *size))
    if not isinstance(outputs, Mapping):
        check_outputs(outputs, (), 1, f"--model {factory}")
    names = tuple(str(k) for k in outputs)
    check_outputs(outputs, names, 1, f"--model {factory}")
    spec = ModelSpec(backbone=BackboneSpec(), tasks=tuple(TaskSpec(name=n, type="custom") for n in names),
                     in_channels=channels, widths=widths, factory=factory)
    return Checkpoint(spec=spec, state_dict=model.state_dict(), path=Path(path))
