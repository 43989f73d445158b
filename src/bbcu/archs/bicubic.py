"""Bicubic upscaling as a model, so the non-learned baseline goes through the same evaluation path.

The input is rounded to uint8 first and upscaled with the MATLAB-exact ``imresize`` (rounding after each
pass), which is how the bicubic baseline is produced from the official uint8 LR files.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bbcu.archs.registry import register_model
from bbcu.imaging.imresize import imresize
from bbcu.imaging.pixels import to_float, to_uint8


class Bicubic(nn.Module):
    """MATLAB bicubic upscaling of a batch of [0, 1] images; no parameters, no gradient."""

    def __init__(self, scale: int = 4) -> None:
        super().__init__()
        self.scale = scale
        self.in_channels = 3
        self.k = 1.0

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upscale ``(N, C, H, W)`` in [0, 1] to ``(N, C, H * scale, W * scale)`` in [0, 1]."""
        images = to_uint8(x.detach().to("cpu", torch.float32).numpy().transpose(0, 2, 3, 1))
        upscaled = np.stack([imresize(image, self.scale) for image in images])
        return torch.from_numpy(to_float(upscaled).transpose(0, 3, 1, 2).copy()).to(x.device, x.dtype)


@register_model("bicubic", task="sr", binary=False)
def bicubic(scale: int = 4) -> Bicubic:
    """The bicubic baseline row of the SR tables (under this project's protocol, see docs/protocols.md)."""
    return Bicubic(scale=scale)
