r"""Multi-process data-parallel training on top of ``torch.distributed``.

A script launched with ``torchrun`` (``python -m torch.distributed.run``) gets the environment
variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_distributed` reads them, starts the process group (``nccl`` for CUDA, ``gloo`` on
the CPU) and returns a :class:`DistributedContext`. Without them it returns a single-process
context whose collectives are no-ops, so the same training code runs everywhere.

Each process works on its own shard of the shared, seeded permutation of the training set
(:func:`shard_indices`, the layout of :class:`torch.utils.data.DistributedSampler`; shards are
disjoint up to the few wrap-around samples that even out their lengths). Gradients are
averaged by :class:`~torch.nn.parallel.DistributedDataParallel`, so every rank holds identical
parameters after every step; only rank 0 writes files.

References:
    Behrmann (thesis), *Invertibility and Domain Knowledge*, section 4.3.2 (i-ResNet
    classifiers run on four GPUs, the scale this module is for); Li et al. (2020), *PyTorch
    Distributed: Experiences on Accelerating Data Parallel Training*, VLDB, section 3 (DDP's
    gradient all-reduce).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from preimage.errors import ConfigError

__all__ = [
    "DistributedContext",
    "cleanup",
    "init_distributed",
    "is_main_process",
    "shard_indices",
]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a (possibly single-process) data-parallel run.

    Attributes:
        rank: global index of this process, ``0`` is the main process.
        world_size: number of processes.
        local_rank: index of this process on its machine (selects its GPU).
        device: the device this process computes on.
        backend: ``"gloo"``, ``"nccl"``, ... or ``None`` when running alone.

    Example:
        >>> ctx = DistributedContext(rank=0, world_size=1, local_rank=0,
        ...                          device=torch.device("cpu"), backend=None)
        >>> ctx.is_distributed, ctx.is_main_process()
        (False, True)
        >>> ctx.shard(torch.arange(5)).tolist()
        [0, 1, 2, 3, 4]
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None

    @property
    def is_distributed(self) -> bool:
        """Whether more than one process takes part."""
        return self.world_size > 1

    def is_main_process(self) -> bool:
        """Whether this is rank 0, the only process that writes files and draws progress."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait until every process reaches this point (no-op when running alone)."""
        if not self.is_distributed:
            return
        if self.backend == "nccl":
            dist.barrier(device_ids=[self.device.index or 0])
        else:
            dist.barrier()

    def all_reduce_sum(self, tensor: Tensor) -> Tensor:
        """Sum ``tensor`` over all processes; returns a new tensor, the input is untouched.

        The result lives on ``tensor``'s device; NCCL only reduces CUDA tensors, so others
        make a round trip through :attr:`device`.
        """
        out = tensor.detach().clone()
        if not self.is_distributed:
            return out
        if self.backend == "nccl" and out.device != self.device:
            moved = out.to(self.device)
            dist.all_reduce(moved, op=dist.ReduceOp.SUM)
            return moved.to(tensor.device)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Copy rank 0's buffers of ``module`` (e.g. BatchNorm running statistics) to all ranks.

        DDP broadcasts buffers at the start of each forward pass, so after the last training
        step every rank holds statistics of its own last batch; this makes them agree again.
        """
        if not self.is_distributed:
            return
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)

    def shard(self, indices: Tensor) -> Tensor:
        """This process's share of ``indices``; see :func:`shard_indices`."""
        return shard_indices(indices, self.rank, self.world_size)

    def wrap_model(self, module: nn.Module, *, find_unused_parameters: bool = False) -> nn.Module:
        """Wrap ``module`` in DDP so that backward passes average gradients over processes.

        Only calls *through* the returned wrapper synchronise gradients; methods reached on the
        inner module (``wrapper.module.logits``) do not. Put the whole computation whose
        gradients are needed into the wrapped module's ``forward``. Returns ``module`` itself
        when running alone.

        Args:
            module: module whose parameters already live on :attr:`device`.
            find_unused_parameters: let DDP tolerate parameters without gradient (slower).
        """
        if not self.is_distributed:
            return module
        device_ids = [self.device.index or 0] if self.device.type == "cuda" else None
        return DistributedDataParallel(
            module, device_ids=device_ids, find_unused_parameters=find_unused_parameters
        )


def init_distributed(device: torch.device | str) -> DistributedContext:
    """Detect a ``torchrun`` launch and join (or start) its process group.

    With ``WORLD_SIZE`` unset or ``1`` and no process group initialised, a single-process
    context is returned and nothing global changes. An already initialised process group is
    reused. Otherwise the group is started from the environment (``init_method="env://"``); on
    CUDA the device becomes ``cuda:LOCAL_RANK`` (overriding any index in ``device``) and is made
    the current CUDA device, as NCCL requires.

    Args:
        device: the device requested for training.

    Returns:
        The context; call :func:`cleanup` when the script is done with the group.

    Raises:
        ConfigError: malformed or incomplete torchrun environment, or a device type that has no
            distributed backend here (MPS).

    Example:
        >>> init_distributed("cpu").world_size  # launched without torchrun
        1
    """
    device = torch.device(device)
    if dist.is_available() and dist.is_initialized():
        world = dist.get_world_size()
        rank = dist.get_rank()
        local = _env_int("LOCAL_RANK", rank)
        device = _local_device(device, local)
        return DistributedContext(rank, world, local, device, str(dist.get_backend()))
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return DistributedContext(0, 1, 0, device, None)
    rank = _env_int("RANK", -1)
    local = _env_int("LOCAL_RANK", 0)
    if not 0 <= rank < world:
        raise ConfigError(f"RANK must be in [0, {world}) under torchrun, got {rank}")
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
    if missing:
        raise ConfigError(f"distributed run without {' and '.join(missing)}; launch with torchrun")
    if not dist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed support")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"distributed training supports cpu and cuda devices, not {device.type}")
    backend = "nccl" if device.type == "cuda" else "gloo"
    device = _local_device(device, local)
    dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world)
    return DistributedContext(rank, world, local, device, backend)


def is_main_process() -> bool:
    """Whether this process is rank 0 (also before the process group exists, via ``RANK``).

    Example:
        >>> is_main_process()
        True
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return _env_int("RANK", 0) == 0


def cleanup() -> None:
    """Destroy the default process group, if one exists."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard_indices(indices: Tensor, rank: int, world_size: int) -> Tensor:
    r"""The ``rank``-th of ``world_size`` interleaved, equally long shards of ``indices``.

    ``indices`` is first extended by wrapping around to a multiple of ``world_size`` (length
    :math:`\lceil n / w \rceil w`), then rank :math:`r` takes entries :math:`r, r + w, \dots`,
    exactly as :class:`torch.utils.data.DistributedSampler` with ``drop_last=False``. Equal
    lengths keep every process at the same number of steps, which DDP needs; the price is that
    up to :math:`w - 1` samples appear twice per epoch.

    Args:
        indices: 1-D tensor, e.g. a permutation of the dataset.
        rank: index of the shard, in ``[0, world_size)``.
        world_size: number of shards.

    Raises:
        ConfigError: ``rank`` or ``world_size`` out of range, or ``indices`` empty or not 1-D.

    Example:
        >>> shard_indices(torch.arange(5), rank=1, world_size=2).tolist()
        [1, 3, 0]
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"invalid shard {rank} of {world_size}")
    if indices.dim() != 1 or indices.numel() == 0:
        raise ConfigError(
            f"shard_indices expects a non-empty 1-D tensor, got {tuple(indices.shape)}"
        )
    n = indices.numel()
    total = math.ceil(n / world_size) * world_size
    if total > n:
        indices = indices.repeat(math.ceil(total / n))[:total]
    return indices[rank:total:world_size]


def _local_device(device: torch.device, local_rank: int) -> torch.device:
    if device.type != "cuda":
        return device
    device = torch.device("cuda", local_rank)
    torch.cuda.set_device(device)
    return device


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be an integer, got {raw!r}") from None
