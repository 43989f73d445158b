"""The order of training samples: a pure function of (seed, epoch, step), so a resumed run sees exactly
the batches the uninterrupted one would, and DDP ranks split each global batch without overlap.

Each epoch is one permutation of the dataset drawn from its own generator seeded by (seed, epoch). Step
``s`` of an epoch takes the global batch ``perm[s*B*W : (s+1)*B*W]`` (B per process, W processes) and
rank ``r`` keeps the slice ``[r*B, (r+1)*B)`` of it. A single process with batch ``B*W`` therefore sees
the same global batches in the same order as W processes with batch B, which is what makes a DDP step
equal to one big-batch step. The incomplete tail of an epoch is dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from bbcu.core.errors import InvalidArgumentError

_EPOCH_STRIDE = 1_000_003  # a prime: (seed, epoch) pairs map to distinct generator seeds


@dataclass(frozen=True)
class BatchOrder:
    """Batches of dataset indices for one process.

    Attributes:
        num_items: Dataset length.
        batch_size: Samples per step on this process.
        seed: Run seed.
        rank: This process's index among ``world_size``.
        world_size: Number of processes sharing each global batch.
    """

    num_items: int
    batch_size: int
    seed: int
    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if self.steps_per_epoch == 0:
            raise InvalidArgumentError(
                f"the training set has {self.num_items} samples but one step needs "
                f"{self.batch_size * self.world_size}; add images or lower train.batch_size"
            )

    @property
    def steps_per_epoch(self) -> int:
        """Complete global batches per pass over the data."""
        return self.num_items // (self.batch_size * self.world_size)

    def position(self, iteration: int) -> tuple[int, int]:
        """(epoch, step within the epoch) of the next batch after ``iteration`` completed steps."""
        return divmod(iteration, self.steps_per_epoch)

    def epoch_batches(self, epoch: int, start_step: int = 0) -> Iterator[list[int]]:
        """This rank's batches of ``epoch``, starting at ``start_step`` (resume mid-epoch)."""
        generator = torch.Generator().manual_seed(self.seed * _EPOCH_STRIDE + epoch)
        permutation = torch.randperm(self.num_items, generator=generator).tolist()
        global_batch = self.batch_size * self.world_size
        for step in range(start_step, self.steps_per_epoch):
            start = step * global_batch + self.rank * self.batch_size
            yield permutation[start : start + self.batch_size]
