"""Exponential moving average of the weights, the model validated and shipped when ``train.ema_decay`` is set.

Parameters follow ``ema = decay * ema + (1 - decay) * weights`` after every optimizer step; buffers
(BatchNorm statistics of the V1 unit and baselines) are copied, since averaging running statistics of
different weights would describe neither.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightEMA:
    """A frozen copy of a model whose weights trail the trained ones.

    Args:
        model: The trained model (unwrapped: not DDP, not compiled).
        decay: Weight kept from the previous average at each update, e.g. 0.999.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the current weights of ``model`` into the average."""
        for average, current in zip(self.model.parameters(), model.parameters(), strict=True):
            average.lerp_(current.detach(), 1.0 - self.decay)
        for average, current in zip(self.model.buffers(), model.buffers(), strict=True):
            average.copy_(current)
