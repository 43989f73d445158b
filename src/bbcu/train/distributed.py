"""DDP plumbing: the same ``bbcu train`` command runs single-process or under ``torchrun --nproc_per_node N``.

torchrun sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; when they are present the process group is opened
(gloo on CPU, nccl on CUDA), each process trains on its slice of every global batch and gradients are
averaged by ``DistributedDataParallel``. Rank 0 alone validates, logs and writes checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from bbcu.core.errors import InvalidArgumentError


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the job.

    Attributes:
        rank: Global index of this process (0 when not distributed).
        world_size: Number of processes (1 when not distributed).
        device: The torch device this process computes on.
    """

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Whether this process validates, logs and checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Whether a process group is open."""
        return self.world_size > 1


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``auto`` (cuda when available) as a device.

    Raises:
        InvalidArgumentError: ``cuda`` on a machine without a CUDA device.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InvalidArgumentError("runtime.device is cuda but no CUDA device is available; use --device cpu")
    return torch.device(name)


def init_distributed(device_name: str) -> DistContext:
    """Open the process group when launched by torchrun, and pick this process's device."""
    device = resolve_device(device_name)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistContext(0, 1, device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), device)


def close_distributed(context: DistContext) -> None:
    """Leave the process group (a no-op for single-process runs)."""
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(context: DistContext) -> None:
    """Wait for every rank, e.g. while rank 0 validates or writes a checkpoint."""
    if context.enabled:
        dist.barrier()


def mean_over_ranks(value: torch.Tensor, context: DistContext) -> torch.Tensor:
    """Average a scalar tensor over ranks (a NaN anywhere makes the result NaN everywhere)."""
    if not context.enabled:
        return value
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / context.world_size


def gather_objects(obj: Any, context: DistContext) -> list[Any]:
    """Every rank's ``obj`` in rank order (``[obj]`` when not distributed)."""
    if not context.enabled:
        return [obj]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, obj)
    return gathered
