"""Process-group setup so the loop runs unchanged under ``torchrun`` (DDP).

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without them this is a single
process (world size 1) and nothing is initialised. Only rank 0 writes files and reports;
validation runs on rank 0 over the whole split and the decision to stop is broadcast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

from mtlexport.errors import ConfigError


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on the one process that writes files and prints progress."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1


def detect() -> DistContext:
    """Read ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (set by torchrun); defaults to one process."""
    try:
        rank = int(os.environ.get("RANK", "0"))
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be integers when set") from None
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"inconsistent distributed settings: RANK={rank}, WORLD_SIZE={world}")
    return DistContext(rank, world, local)


def setup(ctx: DistContext, device: torch.device) -> None:
    """Initialise the default process group when ``ctx`` spans several processes."""
    if not ctx.enabled or torch.distributed.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(ctx.local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    torch.distributed.init_process_group(backend=backend, rank=ctx.rank, world_size=ctx.world_size)


def teardown(ctx: DistContext) -> None:
    """Destroy the process group that ``setup`` created."""
    if ctx.enabled and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def device_for(ctx: DistContext, requested: str) -> torch.device:
    """The device this rank trains on (``auto`` picks CUDA when available)."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        if not torch.cuda.is_available():
            from mtlexport.errors import BackendUnavailableError

            raise BackendUnavailableError("train.device is cuda but no CUDA device is usable here; use cpu or auto")
        return torch.device("cuda", ctx.local_rank if ctx.enabled else torch.cuda.current_device())
    return torch.device("cpu")


def sampler(ctx: DistContext, dataset: Dataset, *, shuffle: bool, seed: int, drop_last: bool) -> DistributedSampler:
    """This rank's shard of ``dataset``; reshuffled per epoch from ``seed + epoch`` (``set_epoch``)."""
    return DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=shuffle,
                              seed=seed, drop_last=drop_last)


def wrap_model(ctx: DistContext, model: nn.Module, device: torch.device) -> nn.Module:
    """``DistributedDataParallel`` around ``model`` when distributed, else ``model`` itself."""
    if not ctx.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def broadcast_flag(ctx: DistContext, flag: bool, device: torch.device) -> bool:
    """Rank 0's ``flag`` on every rank (e.g. the early-stopping decision)."""
    if not ctx.enabled:
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    torch.distributed.broadcast(t, src=0)
    return bool(t.item())


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (no-op for one process)."""
    if ctx.enabled:
        torch.distributed.barrier()
