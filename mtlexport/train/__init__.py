"""Training: config, the multi-task loop, loss weighting, checkpoints and distributed setup."""
