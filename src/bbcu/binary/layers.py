"""The small learnable full-precision layers that surround a binary convolution."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LearnableBias(nn.Module):
    """A per-channel additive shift (ReActNet's "move"; BBCU's activation threshold).

    Placed before ``sign`` it learns where each channel splits into +1 and -1, which a fixed threshold
    at 0 cannot. Parameter ``bias`` has shape ``(1, C, 1, 1)`` and starts at 0 (official ``move0.bias``).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class RPReLU(nn.Module):
    """ReActNet's RPReLU: ``y = PReLU_beta(x + gamma) + zeta`` with per-channel gamma, beta, zeta.

    Shifting before and after the PReLU lets each channel move its kink and its output level, which
    reshapes the distribution that the next binarizer sees. Shapes follow the official checkpoint keys
    so conversion is a plain copy: ``gamma`` and ``zeta`` are ``(1, C, 1, 1)`` (``pr_bias0.bias``,
    ``pr_bias1.bias``), ``beta`` is ``(C,)`` (``pr_prelu.weight``). Init: gamma = zeta = 0, beta = 0.25.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.full((channels,), 0.25))
        self.zeta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.prelu(x + self.gamma, self.beta) + self.zeta
