"""BBCU-RRDB: ESRGAN's residual-in-residual dense blocks with every dense conv binarized the BBCU way,
inside BBCU-L's full-precision frame (head, sub-pixel upsampler, ``conv_hr``, tail, ``k``-scaled input and
bilinear global skip: :class:`bbcu.archs.srresnet.SRResNetFrame`)::

    x = k * lr
    f = LReLU(conv_first(x))                       # full precision
    f = body(f)                                    # binary RRDBs; no conv_body, no long skip (BBCU-L)
    y = (conv_last(LReLU(conv_hr(upsampler(f)))) + bilinear_up(x)) / k

Each dense conv is a BBCU V4 unit, ``residual + RPReLU(binconv(sign(input + shift)))``: the binary conv only
ever adds a correction to a full-precision path, and the RPReLU inside the branch replaces RRDBNet's
LeakyReLU. V4's identity residual needs as many channels in as out, and dense convs change them
(``C + i * G -> G`` for conv1..conv4, ``C + 4G -> C`` for conv5), so the residual is chosen per conv:

- conv5 (``C + 4G -> C``): the block input, which is the first ``C`` channels of conv5's input. This is
  exactly RRDBNet's own dense-block residual, so the unit's skip and the block's skip are one and the same.
- conv1..conv4 (``-> G``): the **fold average** of the input, the mean of its ``G``-channel slices
  (:func:`fold_channels`). Every input channel reaches the output with weight ``G / C_in``: the first or
  last ``G`` channels alone would drop most of the block input at conv1 (and at conv2..4 let the growth
  features forget it), a learned 1x1 conv would be a full-precision cost in every unit, and a fixed
  repeat cannot reduce. The fold is free (additions only, counted like the other per-channel floats:
  not at all) and keeps the full-precision magnitudes that sign throws away, which is the point of
  BBCU's residual.

RRDBNet's 0.2 residual scaling of the dense blocks and of the RRDB is kept. The network is registered as
``bbcu-rrdb`` (x2, x3, x4) with one RRDB (three dense blocks, 15 binary convs) of 64 channels and growth 32:
two RRDBs would cost 79.43 G OPs at x4, above BBCU-L's 79.19 G, and one costs 78.78 G (docs/zoo.md).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bbcu.archs.registry import register_model
from bbcu.archs.rrdbnet import DENSE_CONVS, RESIDUAL_SCALE
from bbcu.archs.srresnet import SRResNetFrame, SubPixelUpsample, init_kaiming_scaled, upsample_stages
from bbcu.binary.conv import BinaryConv2d
from bbcu.binary.layers import LearnableBias, RPReLU
from bbcu.binary.sign import sign_approx
from bbcu.core.errors import InvalidArgumentError


def fold_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """``(N, m*channels, H, W) -> (N, channels, H, W)``: the mean of the m consecutive channel slices."""
    n, in_channels, height, width = x.shape
    return x.view(n, in_channels // channels, channels, height, width).mean(dim=1)


class BinaryDenseConv(nn.Module):
    """One binarized dense conv: ``residual(x) + RPReLU(binconv(sign(x + shift)))``, ``in -> out`` channels.

    The residual is the fold average of ``x`` (``out`` divides ``in``), or its first ``out`` channels
    when ``first_channels`` is set (conv5, whose first channels are the dense block's input).
    """

    def __init__(self, in_channels: int, out_channels: int, first_channels: bool = False) -> None:
        super().__init__()
        self.out_channels, self.first_channels = out_channels, first_channels
        self.shift = LearnableBias(in_channels)
        self.conv = BinaryConv2d(in_channels, out_channels, 3)
        self.act = RPReLU(out_channels)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The binary part alone (RRDBNet scales conv5's, so the dense block asks for it separately)."""
        return self.act(self.conv(sign_approx(self.shift(x))))

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """The full-precision path around the binary conv (see the module docstring for the choice)."""
        if self.first_channels:
            return x[:, : self.out_channels]
        return fold_channels(x, self.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.branch(x)


class BinaryResidualDenseBlock(nn.Module):
    """RRDBNet's dense block with binary convs: conv1..4 grow the features, conv5 returns
    ``x + 0.2 * branch5``."""

    def __init__(self, channels: int, growth: int) -> None:
        super().__init__()
        for index in range(1, DENSE_CONVS):
            self.add_module(f"conv{index}", BinaryDenseConv(channels + (index - 1) * growth, growth))
        self.conv5 = BinaryDenseConv(channels + (DENSE_CONVS - 1) * growth, channels, first_channels=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for index in range(1, DENSE_CONVS):
            features.append(getattr(self, f"conv{index}")(torch.cat(features, 1)))
        return x + RESIDUAL_SCALE * self.conv5.branch(torch.cat(features, 1))


class BinaryRRDB(nn.Module):
    """Three binary dense blocks inside RRDBNet's scaled residual."""

    def __init__(self, channels: int, growth: int) -> None:
        super().__init__()
        self.rdb1 = BinaryResidualDenseBlock(channels, growth)
        self.rdb2 = BinaryResidualDenseBlock(channels, growth)
        self.rdb3 = BinaryResidualDenseBlock(channels, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * RESIDUAL_SCALE + x


class BBCURRDB(SRResNetFrame):
    """Binary RRDBs in BBCU-L's frame (module docstring).

    Args:
        scale: 2, 3 or 4.
        channels: Feature width.
        blocks: RRDBs in the body.
        growth: Channels each of conv1..conv4 adds; must divide ``channels`` (the fold residual).
        k: Residual-alignment factor (BBCU-L's 130).
        in_channels: Image channels.
    """

    def __init__(
        self,
        scale: int,
        channels: int = 64,
        blocks: int = 1,
        growth: int = 32,
        k: float = 130.0,
        in_channels: int = 3,
    ) -> None:
        if min(channels, blocks, growth) < 1 or channels % growth:
            raise InvalidArgumentError(
                f"bbcu-rrdb needs positive sizes and growth dividing channels, got {channels=}, {growth=}"
            )
        body = nn.Sequential(*(BinaryRRDB(channels, growth) for _ in range(blocks)))
        upsampler = nn.Sequential(*(SubPixelUpsample(channels, s) for s in upsample_stages(scale)))
        conv_hr = nn.Conv2d(channels, channels, 3, padding=1)
        super().__init__(scale, channels, body, upsampler, conv_hr, k, in_channels)
        # As BBCU-L: BasicSR's 0.1x Kaiming for the float layers, PyTorch's default for the binary units.
        init_kaiming_scaled([self.conv_first, self.upsampler, self.conv_hr, self.conv_last])


@register_model("bbcu-rrdb", task="sr", binary=True)
def bbcu_rrdb(scale: int = 4, **overrides: Any) -> BBCURRDB:
    """One binary RRDB (64 ch, growth 32, 15 binary dense convs) in BBCU-L's frame, k=130."""
    return BBCURRDB(scale, **overrides)
