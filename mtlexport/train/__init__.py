"""Training: config, the multi-task loop, loss weighting, evaluation, checkpoints, DDP setup.

``train(config, out_dir)`` runs one resumable training run, ``train_trials`` repeats it over
seeds, ``evaluate`` / ``evaluate_checkpoint`` score models per task, ``inspect_checkpoint``
summarises a checkpoint. Add a loss-weighting scheme by registering it in
``LOSS_WEIGHTINGS`` (``weighting.py``); optimizers come from ``mtlexport.sparsity.OPTIMIZERS``.
"""

from mtlexport.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from mtlexport.train.config import (
    LossWeightingConfig,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
    TrainSettings,
    apply_overrides,
    resolve_config,
)
from mtlexport.train.evaluate import EvalResult, evaluate, evaluate_checkpoint
from mtlexport.train.inspect import InspectReport, inspect_checkpoint
from mtlexport.train.loop import train, train_trials
from mtlexport.train.results import TrainResult, TrialsResult
from mtlexport.train.weighting import LOSS_WEIGHTINGS, FixedWeighting, LossWeighting, UncertaintyWeighting

__all__ = [
    "LOSS_WEIGHTINGS",
    "Checkpoint",
    "EvalResult",
    "FixedWeighting",
    "InspectReport",
    "LossWeighting",
    "LossWeightingConfig",
    "OptimizerConfig",
    "ScheduleConfig",
    "TrainConfig",
    "TrainResult",
    "TrainSettings",
    "TrialsResult",
    "UncertaintyWeighting",
    "apply_overrides",
    "evaluate",
    "evaluate_checkpoint",
    "inspect_checkpoint",
    "load_checkpoint",
    "resolve_config",
    "save_checkpoint",
    "train",
    "train_trials",
]
