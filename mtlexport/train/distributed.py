"""Process-group setup so the loop runs unchanged under ``torchrun`` (DDP).

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without them this is a single
process (world size 1) and nothing is initialised. Only rank 0 writes files and reports;
validation runs on rank 0 over the whole split and the decision to stop is broadcast.

What keeps the ranks identical: DDP averages the model's gradients inside ``backward``, so the
optimizer (and its proximal step) sees the same gradients everywhere; the loss-weighting
parameters live outside the DDP module and are averaged by ``average_gradients``; the sparsity
controller reads only weights and the step count. ``check_replicas`` proves it once per epoch
with an all-gathered checksum of every tensor. ``SyncBatchNorm2d`` / ``SyncBatchNorm1d`` are
batch statistics over all ranks on any device (torch's own ``SyncBatchNorm`` is used on CUDA;
it refuses CPU tensors); they keep the state-dict keys of plain BatchNorm, so checkpoints load
into the plain model.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, DistributedSampler

from mtlexport.errors import ConfigError, MtlexportError


class DistributedError(MtlexportError):
    """The processes of a distributed run disagree, or one of them failed."""


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


def wrap_model(ctx: DistContext, model: nn.Module, device: torch.device, *, sync_bn: bool = False) -> nn.Module:
    """``DistributedDataParallel`` around ``model`` when distributed, else ``model`` itself.

    With ``sync_bn`` the BatchNorm layers of ``model`` are first replaced (in place, keeping
    their parameter and buffer tensors, so optimizers and group structures stay valid) by
    layers that normalise with the statistics of the global batch.
    """
    if not ctx.enabled:
        return model
    if sync_bn:
        convert_sync_batchnorm(model, device)
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


def all_reduce_mean(ctx: DistContext, tensor: Tensor) -> Tensor:
    """The mean of ``tensor`` over the ranks (``tensor`` itself for one process)."""
    if not ctx.enabled:
        return tensor
    out = tensor.detach().clone()
    torch.distributed.all_reduce(out)
    return out / ctx.world_size


def all_reduce_sum(ctx: DistContext, tensor: Tensor) -> Tensor:
    """The sum of ``tensor`` over the ranks (``tensor`` itself for one process)."""
    if not ctx.enabled:
        return tensor
    out = tensor.detach().clone()
    torch.distributed.all_reduce(out)
    return out


def average_gradients(ctx: DistContext, params: Iterable[Tensor]) -> None:
    """Average the gradients of ``params`` over the ranks, as DDP does for the model's (for
    parameters outside the DDP module, e.g. learned loss weights). One all-reduce."""
    params = [p for p in params if p.requires_grad]
    if not ctx.enabled or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= ctx.world_size
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def broadcast_buffers(ctx: DistContext, module: nn.Module) -> None:
    """Rank 0's buffers (e.g. BatchNorm running statistics) on every rank, as DDP broadcasts
    them before each forward."""
    if not ctx.enabled:
        return
    for buf in module.buffers():
        torch.distributed.broadcast(buf, src=0)


_INT_OF_SIZE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def fingerprint(tensor: Tensor) -> Tensor:
    """Two int64 sums of the bit patterns of ``tensor`` (plain and position-weighted): equal
    for bit-identical tensors, different after almost any change, one pass over the data."""
    t = tensor.detach().contiguous().reshape(-1)
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    if t.is_complex():
        t = torch.view_as_real(t).reshape(-1)
    bits = t.view(_INT_OF_SIZE[t.element_size()]).to(torch.int64)
    weights = torch.arange(bits.numel(), device=bits.device, dtype=torch.int64) % 65521 + 1
    return torch.stack([bits.sum(), (bits * weights).sum()])


def check_replicas(ctx: DistContext, modules: Mapping[str, nn.Module], *, when: str) -> None:
    """Raise a DistributedError on every rank when any parameter or buffer of ``modules``
    differs between ranks, naming the first diverging tensor (one all-gather of checksums)."""
    if not ctx.enabled:
        return
    names, prints = [], []
    for prefix, module in modules.items():
        for name, t in module.state_dict(keep_vars=True).items():
            names.append(f"{prefix}.{name}" if prefix else name)
            prints.append(fingerprint(t))
    if not prints:
        return
    local = torch.stack(prints)
    gathered = [torch.empty_like(local) for _ in range(ctx.world_size)]
    torch.distributed.all_gather(gathered, local)
    for rank, other in enumerate(gathered[1:], start=1):
        differ = (other != gathered[0]).any(dim=1)
        if bool(differ.any()):
            first = names[int(torch.nonzero(differ)[0])]
            raise DistributedError(
                f"the ranks diverged {when}: {first} on rank {rank} differs from rank 0 ({int(differ.sum())} of "
                f"{len(names)} tensors differ); every rank must run the same code, config and data")


# ----------------------------------------------------------------------------- synchronised BatchNorm
class _AllReduceSum(torch.autograd.Function):
    """Sum over the ranks; the gradient of every rank's input is the sum of all ranks' gradients
    of the output (each rank's loss depends on every rank's input through it)."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> Tensor:  # noqa: ARG004
        out = tensor.clone()
        torch.distributed.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # noqa: ARG004
        out = grad.contiguous().clone()
        torch.distributed.all_reduce(out)
        return out


class _GlobalBatchStats:
    """Mixin for ``nn.BatchNorm*d``: in training under a process group of several ranks, normalise
    with the mean and variance of the global batch (Chan et al.'s parallel variance over the
    ranks' counts, means and centred sums of squares, gathered by one autograd-aware all-reduce).
    Otherwise, and in eval mode, exactly the parent BatchNorm."""

    def forward(self, x: Tensor) -> Tensor:
        bn: nn.modules.batchnorm._BatchNorm = self  # type: ignore[assignment]
        syncing = (bn.training and torch.distributed.is_available() and torch.distributed.is_initialized()
                   and torch.distributed.get_world_size() > 1)
        if not syncing:
            return super().forward(x)  # type: ignore[misc]
        world, rank = torch.distributed.get_world_size(), torch.distributed.get_rank()
        channels = x.shape[1]
        dims = [0, *range(2, x.dim())]
        xf = x.float()
        count = torch.full((1,), float(xf.numel() // channels), device=x.device)
        mean = xf.mean(dims)
        shape = [1, channels] + [1] * (x.dim() - 2)
        m2 = (xf - mean.reshape(shape)).square().sum(dims)
        mine = torch.cat([count, mean, m2])
        slots = [mine if r == rank else torch.zeros_like(mine) for r in range(world)]
        stats = _AllReduceSum.apply(torch.stack(slots))  # [world, 1 + 2C]: every rank's row
        counts, means, m2s = stats[:, :1], stats[:, 1:1 + channels], stats[:, 1 + channels:]
        n = counts.sum()
        g_mean = (counts * means).sum(0) / n
        g_m2 = (m2s + counts * (means - g_mean).square()).sum(0)
        var = g_m2 / n
        if bn.track_running_stats and bn.running_mean is not None and bn.running_var is not None:
            with torch.no_grad():
                bn.num_batches_tracked.add_(1)  # type: ignore[union-attr]
                factor = (1.0 / float(bn.num_batches_tracked) if bn.momentum is None  # type: ignore[arg-type]
                          else bn.momentum)
                unbiased = g_m2 / (n - 1).clamp_min(1)
                bn.running_mean.mul_(1 - factor).add_(factor * g_mean.to(bn.running_mean.dtype))
                bn.running_var.mul_(1 - factor).add_(factor * unbiased.to(bn.running_var.dtype))
        y = (xf - g_mean.reshape(shape)) * torch.rsqrt(var + bn.eps).reshape(shape)
        if bn.affine:
            y = y * bn.weight.reshape(shape) + bn.bias.reshape(shape)
        return y.to(x.dtype)


class SyncBatchNorm1d(_GlobalBatchStats, nn.BatchNorm1d):
    """``BatchNorm1d`` over the global batch in distributed training (same state-dict keys)."""


class SyncBatchNorm2d(_GlobalBatchStats, nn.BatchNorm2d):
    """``BatchNorm2d`` over the global batch in distributed training (same state-dict keys)."""


_SYNC_OF = {nn.BatchNorm1d: SyncBatchNorm1d, nn.BatchNorm2d: SyncBatchNorm2d}


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm1d/2d child of ``module`` in place by its synchronised form (torch's
    ``SyncBatchNorm`` on CUDA, ``SyncBatchNorm1d/2d`` elsewhere), reusing its parameter and
    buffer tensors; returns ``module``."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        cls = _SYNC_OF.get(type(child))
        if cls is None:
            convert_sync_batchnorm(child, device)
            continue
        new = cls(child.num_features, eps=child.eps, momentum=child.momentum, affine=child.affine,
                  track_running_stats=child.track_running_stats)
        for key in ("weight", "bias"):
            setattr(new, key, getattr(child, key))
        for key in ("running_mean", "running_var", "num_batches_tracked"):
            setattr(new, key, getattr(child, key))
        new.train(child.training)
        setattr(module, name, new)
    return module

