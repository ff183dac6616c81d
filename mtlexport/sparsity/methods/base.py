"""What every sparsifier shares: the lifecycle the training loop calls, and per-task gradients.

Lifecycle (``mtlexport.train.loop`` calls these; every hook is optional to override):

1. ``prepare(config)`` (class method) rewrites the training config before anything is built
   (``group_lasso`` turns its settings into the proximal optimizer's);
2. ``attach(optimizer)`` once the optimizer exists;
3. ``setup(batches)`` on a fresh run only: saliencies, initial masks (never on ``--resume``);
4. per step: ``combine(losses, weighting)`` -> the loss, ``after_backward()`` (mask or translate
   gradients), ``after_step(step, batch)`` (masks, regrowth, thresholds);
5. ``report()`` per epoch, ``state_dict()`` / ``load_state_dict()`` for an exact resume.

The model's weights always hold what the method deploys (masked weights, thresholded weights
with exact zeros) whenever the loop evaluates or checkpoints, so checkpoints stay plain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from mtlexport.errors import ConfigError
from mtlexport.registry import Registry

__all__ = ["SPARSIFIERS", "RunContext", "Sparsifier", "parse_options", "task_gradients"]


@dataclass(frozen=True, eq=False)
class RunContext:
    """What a sparsifier may use of the run."""

    model: nn.Module
    tasks: Mapping[str, Any]  # name -> Task (``loss(output, batch)``), in output order
    total_steps: int
    input_shape: tuple[int, int, int]
    device: torch.device
    seed: int = 0
    world_size: int = 1
    stored: Mapping[str, Any] | None = None  # the checkpoint's extra["sparsifier"] on --resume


def parse_options(cls: type, name: str, data: Mapping[str, Any]) -> Any:
    """``sparsifier.options`` as the method's options dataclass ``cls`` (unknown keys listed)."""
    from mtlexport.schema import parse_section

    return parse_section(cls, f"sparsifier.options ({name})", dict(data))


class Sparsifier:
    """Base class: every hook does nothing (see the module docstring for the order of calls)."""

    name = ""
    landed = True  # only epochs once the final architecture stands compete for best.pt

    hooks = True  # False: ``prepare`` is all there is (the loop's own optimizer does the work)

    def __init__(self, config: Any, ctx: RunContext) -> None:
        self.config, self.ctx = config, ctx
        if ctx.world_size > 1:
            raise ConfigError(f"sparsifier {self.name} does not run distributed yet (its masks are decided "
                              "from one process's batches); train on one process")

    @classmethod
    def prepare(cls, config: Any) -> Any:
        """The training config this method trains with (default: it needs plain AdamW)."""
        if config.optimizer.name != "adamw":
            raise ConfigError(f"sparsifier {cls.name} trains with optimizer.name: adamw (the group lasso is the "
                              f"group_lasso sparsifier), got {config.optimizer.name!r}")
        return config

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    def setup(self, batches: Iterable[Mapping[str, Tensor]]) -> None:
        pass

    def combine(self, losses: Mapping[str, Tensor], weighting: nn.Module) -> Tensor:
        return weighting(losses)

    def after_backward(self) -> None:
        pass

    def after_step(self, step: int, batch: Mapping[str, Tensor]) -> None:
        pass

    def report(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


SPARSIFIERS: Registry[type[Sparsifier]] = Registry("sparsifier")


@torch.no_grad()
def _buffers(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.clone() for k, v in model.named_buffers()}


def task_gradients(model: nn.Module, tasks: Mapping[str, Any], batches: Iterable[Mapping[str, Tensor]],
                   params: Sequence[nn.Parameter], device: torch.device, max_batches: int = 1,
                   ) -> list[list[Tensor]]:
    """Per task, the gradient of its own loss w.r.t. each of ``params``, summed over up to
    ``max_batches`` batches (one forward per batch, one backward per task). The model's
    BatchNorm statistics and ``.grad`` fields are left as they were."""
    from mtlexport.train.loaders import to_device

    saved = _buffers(model)
    grads_before = [p.grad for p in params]
    was_training = model.training
    model.train()
    names = list(tasks)
    out = [[torch.zeros_like(p) for p in params] for _ in names]
    used = 0
    try:
        for batch in batches:
            if used >= max_batches:
                break
            batch = to_device(dict(batch), device)
            outputs = model(batch["image"])
            for t, name in enumerate(names):
                loss = tasks[name].loss(outputs[name], batch)
                gs = torch.autograd.grad(loss, list(params), retain_graph=t + 1 < len(names), allow_unused=True)
                for acc, g in zip(out[t], gs):
                    if g is not None:
                        acc.add_(g)
            used += 1
    finally:
        with torch.no_grad():
            for k, v in model.named_buffers():
                v.copy_(saved[k])
        for p, g in zip(params, grads_before):
            p.grad = g
        model.train(was_training)
    if used == 0:
        raise ConfigError("the train split gave no batch to compute saliencies from")
    return out


def with_sparsifier(config: Any, **changes: Any) -> Any:
    """``config`` with its ``sparsifier`` section changed."""
    return replace(config, sparsifier=replace(config.sparsifier, **changes))
