"""ESRGAN's generator, RRDBNet (Wang et al., ECCV 2018 workshops): the full-precision reference restorer
people run beside binary networks, in BasicSR's module layout so its checkpoints load by name.

::

    x = pixel_unshuffle(lr, 4 / scale)        # x1 and x2 only: 48 / 12 input channels, run at 1/4 or 1/2
    f = conv_first(x)
    f = f + conv_body(body(f))                # body: RRDB blocks
    f = LReLU(conv_up1(nearest_x2(f)))
    f = LReLU(conv_up2(nearest_x2(f)))        # always x4 from the trunk: x1 and x2 come from the unshuffle
    y = conv_last(LReLU(conv_hr(f)))          # no global skip, no residual alignment

An RRDB is three residual dense blocks (conv1..conv5, each conv seeing the block input and every earlier
output, ``growth`` channels out except conv5, LeakyReLU 0.2 after conv1..conv4), each returning
``0.2 * conv5 + input``; the RRDB returns ``0.2 * (its three blocks) + input``. The official x4 network
(64 channels, 23 blocks, growth 32) has 16,697,987 parameters; the 6-block anime variant 4,467,779.

Two registry names build the same network, because the name decides which published numbers apply:
``rrdbnet`` for PSNR-oriented weights (RRDB_PSNR_x4, printed beside ``bbcu eval``), ``esrgan`` for the
GAN-trained ones (RRDB_ESRGAN_x4, Real-ESRGAN), which have no PSNR target. Checkpoint layouts and their
conversion are in :mod:`bbcu.formats.esrgan`; the facts the code relies on are in docs/references.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bbcu.archs.registry import register_model
from bbcu.archs.srresnet import init_kaiming_scaled
from bbcu.core.errors import InvalidArgumentError

RRDB_SCALES = (1, 2, 4)
"""Factors RRDBNet is built for: x4 natively, x2 and x1 through the pixel-unshuffled input."""
RRDB_MODELS = {
    "rrdbnet": "RRDBNet for PSNR-oriented weights (RRDB_PSNR); its published scores apply.",
    "esrgan": "RRDBNet for GAN-trained weights (ESRGAN, Real-ESRGAN); perceptual, no PSNR target.",
}
"""Registry names of the RRDBNet family (one network; the name says which weights, see above)."""
LEAKY_SLOPE = 0.2
"""ESRGAN's LeakyReLU slope (MSRResNet's is 0.1)."""
RESIDUAL_SCALE = 0.2
"""Weight of each dense block's and each RRDB's residual branch."""
DENSE_CONVS = 5


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs, each fed the block input concatenated with every earlier conv's output."""

    def __init__(self, channels: int, growth: int) -> None:
        super().__init__()
        for index in range(1, DENSE_CONVS + 1):
            out_channels = channels if index == DENSE_CONVS else growth
            conv = nn.Conv2d(channels + (index - 1) * growth, out_channels, 3, padding=1)
            self.add_module(f"conv{index}", conv)
        if not self.conv1.weight.is_meta:  # a shape-only skeleton needs no init (meta's normal_ is slow)
            init_kaiming_scaled([self])  # BasicSR initialises the dense blocks at 0.1x Kaiming

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for index in range(1, DENSE_CONVS):
            conv = getattr(self, f"conv{index}")
            features.append(F.leaky_relu(conv(torch.cat(features, 1)), LEAKY_SLOPE))
        return self.conv5(torch.cat(features, 1)) * RESIDUAL_SCALE + x


class RRDB(nn.Module):
    """Residual in residual dense block: three dense blocks inside one more scaled residual."""

    def __init__(self, channels: int, growth: int) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(channels, growth)
        self.rdb2 = ResidualDenseBlock(channels, growth)
        self.rdb3 = ResidualDenseBlock(channels, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * RESIDUAL_SCALE + x


class RRDBNet(nn.Module):
    """ESRGAN's generator (layout above).

    Attributes:
        scale: Upscaling factor (1, 2 or 4).
        in_channels: Image channels (3).
        k: Always 1: RRDBNet has no residual alignment (kept for the common network interface).
    """

    def __init__(
        self, scale: int = 4, channels: int = 64, blocks: int = 23, growth: int = 32, in_channels: int = 3
    ) -> None:
        super().__init__()
        if scale not in RRDB_SCALES:
            raise InvalidArgumentError(f"RRDBNet is built for scales {RRDB_SCALES}, not {scale}")
        if min(channels, blocks, growth, in_channels) < 1:
            raise InvalidArgumentError("RRDBNet needs positive channels, blocks, growth and in_channels")
        self.scale, self.in_channels, self.k = scale, in_channels, 1.0
        self.unshuffle = 4 // scale
        self.conv_first = nn.Conv2d(in_channels * self.unshuffle**2, channels, 3, padding=1)
        self.body = nn.Sequential(*(RRDB(channels, growth) for _ in range(blocks)))
        self.conv_body = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_up1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_up2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_hr = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_last = nn.Conv2d(channels, in_channels, 3, padding=1)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """Map a 0..1 image ``(N, C, H, W)`` to its 0..1-scale ``(N, C, sH, sW)`` estimate (not clamped).

        For x1 and x2 a size that the unshuffle cannot divide is padded by reflection (as Real-ESRGAN
        does) and the padding cropped off the output, so any size works; divisible sizes are untouched.
        """
        height, width = lr.shape[-2:]
        x = lr
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(_pad_to_multiple(lr, self.unshuffle), self.unshuffle)
        f = self.conv_first(x)
        f = f + self.conv_body(self.body(f))
        f = F.leaky_relu(self.conv_up1(F.interpolate(f, scale_factor=2, mode="nearest")), LEAKY_SLOPE)
        f = F.leaky_relu(self.conv_up2(F.interpolate(f, scale_factor=2, mode="nearest")), LEAKY_SLOPE)
        y = self.conv_last(F.leaky_relu(self.conv_hr(f), LEAKY_SLOPE))
        return y[..., : height * self.scale, : width * self.scale]


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad bottom and right up to multiples of ``multiple``: by reflection, or by repetition for an
    image too small to reflect."""
    bottom, right = (-size % multiple for size in x.shape[-2:])
    if not bottom and not right:
        return x
    mode = "reflect" if min(x.shape[-2:]) > multiple else "replicate"
    return F.pad(x, (0, right, 0, bottom), mode=mode)


def _register(name: str, summary: str) -> None:
    def factory(scale: int = 4, **overrides: int) -> RRDBNet:
        return RRDBNet(scale, **overrides)

    factory.__name__, factory.__doc__ = name, summary
    register_model(name, task="sr", binary=False, scales=RRDB_SCALES)(factory)


for _name, _summary in RRDB_MODELS.items():
    _register(_name, _summary)
