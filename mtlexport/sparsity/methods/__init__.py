"""Sparsifiers other than a bare optimizer: one file per method, registered in ``SPARSIFIERS``.

``group_lasso`` (coupled-group ProxAdam with a target), ``disparse`` (per-task saliencies and
an arbiter) and ``adapmtl`` (learned soft thresholds per component and adaptive task
weights), each selected by ``sparsifier.name`` with ``sparsifier.structure`` ``channel``
(units are the channels ``mtlexport slim`` removes, ``units.py``) or ``element``. Every method
leaves exact zeros in the model's weights, so slim, export and the sparsity accounting need
nothing new.

To add a method: subclass ``Sparsifier`` (``base.py``: the lifecycle the training loop calls),
register it with ``@SPARSIFIERS.register(name)`` in a new module here and import that module
below; its name becomes a valid ``sparsifier.name`` and ``mtlexport sweep --methods`` value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from mtlexport.sparsity.methods import adapmtl, disparse, group_lasso  # noqa: F401  (registers them)
from mtlexport.sparsity.methods.base import SPARSIFIERS, RunContext, Sparsifier

__all__ = ["SPARSIFIERS", "RunContext", "Sparsifier", "make_sparsifier", "prepare_config"]


def prepare_config(config: Any) -> Any:
    """The training config the chosen sparsifier trains with (unchanged for ``none``)."""
    name = config.sparsifier.name
    if name == "none":
        return config
    return SPARSIFIERS.get(name).prepare(config)


def make_sparsifier(config: Any, model: nn.Module, tasks: Mapping[str, Any], optimizer: Optimizer, *,
                    total_steps: int, device: torch.device, world_size: int = 1,
                    stored: Mapping[str, Any] | None = None) -> Sparsifier | None:
    """The sparsifier the training loop calls for ``config`` (a prepared ``TrainConfig``), attached
    to ``optimizer``; None without one (or when the optimizer does the work, as for group_lasso).
    ``stored`` is the checkpoint's ``extra["sparsifier"]`` on ``--resume``."""
    name = config.sparsifier.name
    if name == "none":
        return None
    cls = SPARSIFIERS.get(name)
    if not cls.hooks:
        return None
    data = config.data
    ctx = RunContext(model, tasks, total_steps, (config.model.in_channels, data.height, data.width), device,
                     seed=config.train.seed, world_size=world_size, stored=stored)
    sparsifier = cls(config.sparsifier, ctx)
    sparsifier.attach(optimizer)
    return sparsifier
