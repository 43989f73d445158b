"""Denoising and JPEG-deblocking networks: DnCNN (KAIR) and its binarized versions.

Every network here learns the noise (residual learning) and applies residual alignment ``k``::

    x = k * noisy
    return (x - model(x)) / k

``model`` is one flat ``nn.Sequential`` laid out like KAIR's, so checkpoint keys line up index by index:

- :class:`DnCNN` (``depth`` = 20): ``model.0`` conv in -> C, ``model.1`` ReLU, then conv/ReLU pairs
  ``model.2, 4, ..., 36``, ``model.38`` conv C -> in. No BatchNorm (the BBCU paper's references).
- :class:`BinaryDnCNN`: ``model.0`` conv in -> C, ``model.1`` ReLU, ``model.2 .. model.19`` the 18
  binary units, ``model.20`` conv C -> in. Unit keys map as in :mod:`bbcu.binary.units`
  (``model.{i}.move0.bias`` -> ``model.{i}.shift.bias``, ``binary_conv`` -> ``conv``,
  ``relu.pr_bias0.bias`` / ``relu.pr_prelu.weight`` / ``relu.pr_bias1.bias`` -> ``act.gamma`` /
  ``act.beta`` / ``act.zeta``).

Colour denoising uses 3 channels and no bias anywhere; DnCNN-3 (grey JPEG) uses 1 channel and a bias
on every convolution, binary ones included.

Initialisation. Binary networks keep PyTorch's default init, as the official code ran: its options name
``init_type: orthogonal`` (gain 0.2), but its ``define_G`` has the ``init_weights`` call commented out.
The full-precision DnCNN uses He (Kaiming-normal, fan-in, ReLU gain) init, as the DnCNN paper does:
without BatchNorm, PyTorch's default init shrinks the signal variance about 6x per conv+ReLU, so a
20-layer plain stack would start with a vanished output and vanished gradients. The binary networks do
not suffer from this, their units being identity-residual.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bbcu.archs.registry import register_model
from bbcu.binary.units import UNITS
from bbcu.core.errors import InvalidArgumentError


class NoiseResidualNet(nn.Module):
    """The shared frame: ``model`` predicts the (k-scaled) noise, which is subtracted from the input.

    Attributes:
        scale: Always 1 (output size = input size).
        in_channels: Image channels.
        k: Residual-alignment factor.
    """

    scale = 1

    def __init__(self, in_channels: int, model: nn.Sequential, k: float) -> None:
        super().__init__()
        self.in_channels, self.k = in_channels, float(k)
        self.model = model

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        """Map a 0..1 degraded image ``(N, C, H, W)`` to its 0..1-scale restoration (not clamped)."""
        x = noisy * self.k
        return (x - self.model(x)) / self.k


def _conv(in_channels: int, out_channels: int, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)


class DnCNN(NoiseResidualNet):
    """Full-precision DnCNN (Zhang et al., 2017) without BatchNorm: ``depth`` convs, ReLU between them."""

    def __init__(
        self, in_channels: int = 3, channels: int = 64, depth: int = 20, bias: bool = False, k: float = 1.0
    ) -> None:
        layers: list[nn.Module] = [_conv(in_channels, channels, bias), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [_conv(channels, channels, bias), nn.ReLU()]
        layers.append(_conv(channels, in_channels, bias))
        super().__init__(in_channels, nn.Sequential(*layers), k)
        for conv in (m for m in self.model if isinstance(m, nn.Conv2d)):
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)


class BinaryDnCNN(NoiseResidualNet):
    """DnCNN with its ``depth - 2`` inner convs replaced by binary units (BBCU: V4 units, k = 130).

    Args:
        in_channels: 3 for colour denoising, 1 for grey JPEG deblocking.
        unit: A key of :data:`bbcu.binary.units.UNITS`.
        channels: Feature width.
        bias: Bias on every convolution, binary ones included (DnCNN-3) or none.
        k: Residual-alignment factor.
        depth: Total convolutions including head and tail.
    """

    def __init__(
        self,
        in_channels: int = 3,
        unit: str = "v4",
        channels: int = 64,
        bias: bool = False,
        k: float = 130.0,
        depth: int = 20,
    ) -> None:
        if unit not in UNITS:
            raise InvalidArgumentError(f"unknown binary unit {unit!r}; choose from {', '.join(UNITS)}")
        units = [UNITS[unit](channels, bias=bias) for _ in range(depth - 2)]
        layers = [_conv(in_channels, channels, bias), nn.ReLU(), *units, _conv(channels, in_channels, bias)]
        super().__init__(in_channels, nn.Sequential(*layers), k)


# task -> (name prefix, image channels, bias everywhere)
TASKS: dict[str, tuple[str, int, bool]] = {"denoise": ("dncnn", 3, False), "jpeg": ("dncnn3", 1, True)}
# name suffix -> (unit, default k); k = 1 for the baselines, whose papers had no residual alignment
BINARY_VARIANTS: dict[str, tuple[str, float]] = {
    "bbcu": ("v4", 130.0),
    "bnn": ("bnn", 1.0),
    "bireal": ("bireal", 1.0),
    "irnet": ("irnet", 1.0),
    "btm": ("btm", 1.0),
    "reactnet": ("reactnet", 1.0),
}


def _check_scale(scale: int) -> None:
    if scale != 1:
        raise InvalidArgumentError(
            f"denoising and JPEG networks keep the image size (scale 1), got scale {scale}"
        )


def _register_dncnn(name: str, task: str, in_channels: int, bias: bool, channels: int) -> None:
    def factory(scale: int = 1, **overrides: Any) -> DnCNN:
        _check_scale(scale)
        return DnCNN(**{"in_channels": in_channels, "channels": channels, "bias": bias, **overrides})

    factory.__name__ = name.replace("-", "_")
    factory.__doc__ = f"Full-precision DnCNN, {in_channels} channel(s), {channels} features."
    register_model(name, task=task, binary=False)(factory)


def _register_binary_dncnn(name: str, task: str, in_channels: int, bias: bool, unit: str, k: float) -> None:
    def factory(scale: int = 1, **overrides: Any) -> BinaryDnCNN:
        _check_scale(scale)
        return BinaryDnCNN(**{"in_channels": in_channels, "unit": unit, "bias": bias, "k": k, **overrides})

    factory.__name__ = name.replace("-", "_")
    factory.__doc__ = f"BinaryDnCNN with {unit!r} units, {in_channels} channel(s), k={k:g} by default."
    register_model(name, task=task, binary=True)(factory)


for _task, (_prefix, _in_channels, _bias) in TASKS.items():
    _register_dncnn(_prefix, _task, _in_channels, _bias, channels=64)
    _register_dncnn(f"{_prefix}-lite", _task, _in_channels, _bias, channels=12)
    for _suffix, (_unit, _k) in BINARY_VARIANTS.items():
        _register_binary_dncnn(f"{_prefix}-{_suffix}", _task, _in_channels, _bias, _unit, _k)
