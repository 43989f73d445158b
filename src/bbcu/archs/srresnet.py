"""Super-resolution networks: BasicSR's MSRResNet and its binarized versions (BBCU-L, BBCU-M, baselines).

One frame serves them all (``x`` is the low-resolution input in 0..1, ``k`` the residual-alignment factor)::

    x = k * lr
    f = LReLU(conv_first(x))          # full precision, 3 -> C
    f = body(f)                       # MSRResNet: 16 residual blocks; binary: 32 units, no block/long skip
    f = upsampler(f)                  # x2 / x3: one stage; x4: two x2 stages
    f = LReLU(conv_hr(f))
    y = conv_last(f) + bilinear_up(x) # full precision, C -> 3, global skip
    return y / k

BBCU-L keeps the upsampler (conv C -> s^2 C, PixelShuffle, LReLU) and ``conv_hr`` full precision;
BBCU-M makes both binary (BBCU-U stages and a V4 unit). Binary networks take ``k = 130`` (64 channels)
when their unit is meant to be used with residual alignment (V3, V4) and ``k = 1`` otherwise: the
baselines' papers did not use RA, and the ladder only introduces it at V3.

Official checkpoint keys (BasicSR ``params``) -> this module; ``j`` = body unit 0..31, ``i`` = upsampling
stage 1..2, and ``<unit key>`` is any leaf of the unit table in :mod:`bbcu.binary.units` (``move0.bias``
-> ``shift.bias``, ``binary_conv.weight`` -> ``conv.weight``, ``relu.pr_*`` -> ``act.gamma/beta/zeta``):

=============================================  ======================================
official                                       here
=============================================  ======================================
``conv_first.*``                               ``conv_first.*``
``body.{j//2}.body.{j%2}.<unit key>``          ``body.{j}.<unit key>``
``upconv{i}.weight``, ``.bias`` (BBCU-L)       ``upsampler.{i-1}.conv.weight``, ``.bias``
``upconv{i}.<unit key>`` (BBCU-M)              ``upsampler.{i-1}.<unit key>``
``conv_hr.weight``, ``.bias`` (BBCU-L)         ``conv_hr.weight``, ``.bias``
``conv_hr.<unit key>`` (BBCU-M)                ``conv_hr.<unit key>``
``conv_last.*``                                ``conv_last.*``
=============================================  ======================================

BasicSR's own MSRResNet maps the same way, its ``body.{b}.conv1/conv2.*`` keeping their names.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bbcu.archs.registry import register_model
from bbcu.binary.units import BBCUV4, UNITS, BBCUUpsample
from bbcu.core.constants import LEAKY_RELU_SLOPE, SR_SCALES
from bbcu.core.errors import InvalidArgumentError

UPSAMPLERS = ("fp", "binary")


def upsample_stages(scale: int) -> list[int]:
    """Sub-pixel stages for ``scale``: x2 and x3 in one step, x4 as two x2 steps (as in BasicSR)."""
    if scale not in SR_SCALES:
        raise InvalidArgumentError(f"scale must be one of {SR_SCALES}, got {scale}")
    return [2, 2] if scale == 4 else [scale]


def init_kaiming_scaled(modules: Iterable[nn.Module], factor: float = 0.1) -> None:
    """BasicSR's ``default_init_weights``: Kaiming-normal weights times ``factor``, zero biases.

    The small initial weights make every layer start close to the identity path of the global
    skip, which stabilises the early training of deep residual SR networks.
    """
    for module in modules:
        for conv in (m for m in module.modules() if isinstance(m, nn.Conv2d)):
            nn.init.kaiming_normal_(conv.weight)
            conv.weight.data.mul_(factor)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)


class ResidualBlock(nn.Module):
    """MSRResNet's block without BatchNorm: ``x + conv2(ReLU(conv1(x)))``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class SubPixelUpsample(nn.Module):
    """A full-precision upsampling stage: ``LReLU(PixelShuffle(conv_{C -> s^2 C}(x)))``."""

    def __init__(self, channels: int, scale: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.shuffle(self.conv(x)), LEAKY_RELU_SLOPE)


class SRResNetFrame(nn.Module):
    """The shared MSRResNet frame; subclasses choose the body, the upsampler and ``conv_hr``.

    Attributes:
        scale: Upscaling factor.
        in_channels: Image channels (3).
        k: Residual-alignment factor: the input is multiplied by it and the output divided by it.
    """

    def __init__(
        self,
        scale: int,
        channels: int,
        body: nn.Module,
        upsampler: nn.Module,
        conv_hr: nn.Module,
        k: float,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.scale, self.in_channels, self.k = scale, in_channels, float(k)
        self.conv_first = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.body = body
        self.upsampler = upsampler
        self.conv_hr = conv_hr
        self.conv_last = nn.Conv2d(channels, in_channels, 3, padding=1)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """Map a 0..1 image ``(N, C, H, W)`` to its 0..1-scale ``(N, C, sH, sW)`` estimate (not clamped)."""
        x = lr * self.k
        f = F.leaky_relu(self.conv_first(x), LEAKY_RELU_SLOPE)
        f = self.upsampler(self.body(f))
        f = F.leaky_relu(self.conv_hr(f), LEAKY_RELU_SLOPE)
        base = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return (self.conv_last(f) + base) / self.k


class MSRResNet(SRResNetFrame):
    """BasicSR's modified SRResNet (no BatchNorm): the full-precision reference, and its "-Lite" at 12 ch."""

    def __init__(
        self, scale: int, channels: int = 64, blocks: int = 16, k: float = 1.0, in_channels: int = 3
    ) -> None:
        upsampler = nn.Sequential(*(SubPixelUpsample(channels, s) for s in upsample_stages(scale)))
        body = nn.Sequential(*(ResidualBlock(channels) for _ in range(blocks)))
        conv_hr = nn.Conv2d(channels, channels, 3, padding=1)
        super().__init__(scale, channels, body, upsampler, conv_hr, k, in_channels)
        init_kaiming_scaled(self.children())


class BinarySRResNet(SRResNetFrame):
    """MSRResNet with a binary body: each block becomes two binary units, without block or long skip.

    Args:
        scale: 2, 3 or 4.
        unit: A key of :data:`bbcu.binary.units.UNITS` used for the 32 body units.
        upsampler: ``"fp"`` (BBCU-L: full-precision upsampler and ``conv_hr``) or ``"binary"``
            (BBCU-M: BBCU-U stages and a V4 unit as ``conv_hr``).
        channels: Feature width.
        num_units: Binary units in the body.
        k: Residual-alignment factor (130 is the published value at 64 channels).
        bias: Whether the binary convolutions carry a bias.
        in_channels: Image channels.
    """

    def __init__(
        self,
        scale: int,
        unit: str = "v4",
        upsampler: str = "fp",
        channels: int = 64,
        num_units: int = 32,
        k: float = 130.0,
        bias: bool = False,
        in_channels: int = 3,
    ) -> None:
        if unit not in UNITS:
            raise InvalidArgumentError(f"unknown binary unit {unit!r}; choose from {', '.join(UNITS)}")
        if upsampler not in UPSAMPLERS:
            raise InvalidArgumentError(f"upsampler must be one of {UPSAMPLERS}, got {upsampler!r}")
        stages = upsample_stages(scale)
        body = nn.Sequential(*(UNITS[unit](channels, bias=bias) for _ in range(num_units)))
        if upsampler == "binary":
            up = nn.Sequential(*(BBCUUpsample(channels, s, bias=bias) for s in stages))
            conv_hr: nn.Module = BBCUV4(channels, bias=bias)
        else:
            up = nn.Sequential(*(SubPixelUpsample(channels, s) for s in stages))
            conv_hr = nn.Conv2d(channels, channels, 3, padding=1)
        super().__init__(scale, channels, body, up, conv_hr, k, in_channels)
        # Body units keep PyTorch's default init (official code); the x0.1 init also reaches the
        # binary weights of BBCU-M's upsampler and conv_hr, where it sets alpha's starting value.
        init_kaiming_scaled([self.conv_first, self.upsampler, self.conv_hr, self.conv_last])


@register_model("srresnet", task="sr", binary=False)
def srresnet(scale: int = 4, **overrides: Any) -> MSRResNet:
    """MSRResNet, 64 channels, 16 blocks (the published full-precision reference)."""
    return MSRResNet(scale, **overrides)


@register_model("srresnet-lite", task="sr", binary=False)
def srresnet_lite(scale: int = 4, **overrides: Any) -> MSRResNet:
    """MSRResNet at 12 channels, a full-precision net of about BBCU-M's size."""
    return MSRResNet(scale, **{"channels": 12, **overrides})


# name -> (body unit, upsampler, default k)
BINARY_SR_MODELS: dict[str, tuple[str, str, float]] = {
    "bbcu-l": ("v4", "fp", 130.0),
    "bbcu-m": ("v4", "binary", 130.0),
    "bbcu-v1": ("v1", "fp", 1.0),
    "bbcu-v2": ("v2", "fp", 1.0),
    "bbcu-v3": ("v3", "fp", 130.0),
    "bbcu-v4": ("v4", "fp", 130.0),
    "bnn": ("bnn", "fp", 1.0),
    "bireal": ("bireal", "fp", 1.0),
    "irnet": ("irnet", "fp", 1.0),
    "btm": ("btm", "fp", 1.0),
    "reactnet": ("reactnet", "fp", 1.0),
}


def _register_binary_sr(name: str, unit: str, upsampler: str, k: float) -> None:
    def factory(scale: int = 4, **overrides: Any) -> BinarySRResNet:
        return BinarySRResNet(scale, **{"unit": unit, "upsampler": upsampler, "k": k, **overrides})

    factory.__name__ = name.replace("-", "_")
    factory.__doc__ = f"BinarySRResNet with {unit!r} units, {upsampler} upsampler, k={k:g} by default."
    register_model(name, task="sr", binary=True)(factory)


for _name, (_unit, _upsampler, _k) in BINARY_SR_MODELS.items():
    _register_binary_sr(_name, _unit, _upsampler, _k)
