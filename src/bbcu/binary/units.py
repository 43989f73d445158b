"""Binary units: one 3x3 binary convolution each, with the glue that makes it trainable.

Every unit maps ``(N, C, H, W) -> (N, C, H, W)`` (except the upsampler, head and tail, which change
shape) and is built as ``Unit(channels, bias=False)``. The BBCU units follow the paper's ablation
ladder V1 -> V4; the baseline units re-create the binarization methods of the published tables.

Attribute names are kept uniform so one table maps them to the official checkpoint keys:

===============  ======================================
this package     official BBCU (``BinaryConv2d`` unit)
===============  ======================================
``shift.bias``   ``move0.bias``
``conv.weight``  ``binary_conv.weight``
``conv.bias``    ``binary_conv.bias`` (DnCNN-3 only)
``act.gamma``    ``relu.pr_bias0.bias``
``act.beta``     ``relu.pr_prelu.weight``
``act.zeta``     ``relu.pr_bias1.bias``
===============  ======================================

A unit's official and local keys share the prefix of its position, e.g. ``<prefix>.move0.bias`` ->
``<prefix>.shift.bias``; the networks' modules tabulate the prefixes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bbcu.binary.conv import BinaryConv2d
from bbcu.binary.layers import LearnableBias, RPReLU
from bbcu.binary.sign import ede_schedule, sign_approx, sign_ede, sign_ste


class _ShiftSignConv(nn.Module):
    """The parts every BBCU unit shares: a learnable shift, sign, a binary 3x3 conv, and an RPReLU.

    The units differ only in where the RPReLU and the skip go, so each subclass writes its own
    ``forward`` around :meth:`binary_conv`; the shared attribute names keep the checkpoint keys uniform.
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool) -> None:
        super().__init__()
        self.shift = LearnableBias(in_channels)
        self.conv = BinaryConv2d(in_channels, out_channels, 3, bias=bias)
        self.act = RPReLU(out_channels)

    def binary_conv(self, x: torch.Tensor) -> torch.Tensor:
        """``binconv(sign(x + shift))`` with the ApproxSign gradient, before any activation."""
        return self.conv(sign_approx(self.shift(x)))


class BBCUV1(_ShiftSignConv):
    """BBCU ladder step 1 (Xia et al., 2023): ``RPReLU(BN(binconv(sign(x + shift))) + x)``.

    The ReActNet-style block the paper starts from: BatchNorm after the binary conv, the activation
    after the residual addition (so the residual stream is clipped by RPReLU's negative slope).
    """

    def __init__(self, channels: int, bias: bool = False) -> None:
        super().__init__(channels, channels, bias)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.binary_conv(x)) + x)


class ReActNetUnit(BBCUV1):
    """ReActNet's binary block (Liu et al., 2020): RSign (learnable threshold), scaled binary conv, BN,
    identity shortcut, RPReLU.

    This is exactly the block the BBCU paper calls V1; it keeps its own name so the baseline networks
    read like the published tables.
    """


class BBCUV2(_ShiftSignConv):
    """BBCU ladder step 2: V1 without BatchNorm, ``RPReLU(binconv(sign(x + shift)) + x)``.

    The paper finds BN harmful for restoration: it erases the absolute intensity the residual path
    carries; the binary conv's per-channel ``alpha`` alone sets the branch's scale.
    """

    def __init__(self, channels: int, bias: bool = False) -> None:
        super().__init__(channels, channels, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.binary_conv(x) + x)


class BBCUV3(BBCUV2):
    """BBCU ladder step 3: the V2 unit plus residual alignment (RA).

    RA is not part of the unit: the NETWORK multiplies its 0..1 input by ``k`` (130 for 64 channels) and
    divides its output by ``k``, so the full-precision residual has a magnitude comparable to the binary
    branch's ``alpha``-scaled output. The unit itself is V2's.
    """


class BBCUV4(_ShiftSignConv):
    """The final BBCU unit: ``x + RPReLU(binconv(sign(x + shift)))``.

    Moving RPReLU inside the branch keeps the residual stream purely full precision, so negative
    values survive from unit to unit; this is BBCU's main structural change over V3.
    """

    def __init__(self, channels: int, bias: bool = False) -> None:
        super().__init__(channels, channels, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.act(self.binary_conv(x))


class BNNUnit(nn.Module):
    """BNN (Hubara et al., 2016): ``BN(binconv_sign(sign(x)))`` with the clipped STE, no weight scale.

    BNN's networks have no shortcut, and neither does this unit. BNN's ``hardtanh`` activation is
    subsumed: the next unit's clipped STE already has its gradient, and ``sign(hardtanh(x)) = sign(x)``.
    """

    def __init__(self, channels: int, bias: bool = False) -> None:
        super().__init__()
        self.conv = BinaryConv2d(channels, channels, 3, bias=bias, weight_binarizer="sign")
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(sign_ste(x)))


class BiRealUnit(nn.Module):
    """Bi-Real Net (Liu et al., 2018): ``BN(binconv(sign(x))) + x`` with the ApproxSign gradient.

    Its contribution is the identity shortcut around EVERY binary conv, which keeps the real-valued
    activations flowing; weights are ``mean|W| * sign(W)`` (magnitude-aware).
    """

    def __init__(self, channels: int, bias: bool = False) -> None:
        super().__init__()
        self.conv = BinaryConv2d(channels, channels, 3, bias=bias)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(sign_approx(x))) + x


class IRNetUnit(nn.Module):
    """IR-Net (Qin et al., 2020) in the Bi-Real block: ``BN(binconv_libra(sign(x))) + x``.

    Weights use Libra-PB (balanced, standardised, power-of-two scale); activations and weights both
    use the EDE gradient, whose ``(ede_t, ede_k)`` :func:`set_training_progress` updates every step.
    """

    def __init__(self, channels: int, bias: bool = False) -> None:
        super().__init__()
        self.conv = BinaryConv2d(channels, channels, 3, bias=bias, weight_binarizer="libra")
        self.bn = nn.BatchNorm2d(channels)
        self.ede_t, self.ede_k = ede_schedule(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(sign_ede(x, self.ede_t, self.ede_k))) + x


def standardize_channels(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Zero mean, unit std per sample and channel over the spatial dimensions (no learned affine)."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = x.std(dim=(2, 3), keepdim=True, unbiased=False)
    return (x - mean) / (std + eps)


class BTMUnit(nn.Module):
    """BTM (Jiang et al., 2021): ``x + PReLU(binconv(sign(standardize(x))))``, no BatchNorm.

    BTM replaces BN by normalising the binarizer's INPUT (here per sample and channel over H, W), which
    centres the sign threshold on each feature map and keeps it inside the ApproxSign window, and by a
    PReLU in the branch and Xavier-initialised weights; the residual stays full precision.
    """

    def __init__(self, channels: int, bias: bool = False) -> None:
        super().__init__()
        self.conv = BinaryConv2d(channels, channels, 3, bias=bias)
        self.act = nn.PReLU(channels)
        nn.init.xavier_uniform_(self.conv.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.act(self.conv(sign_approx(standardize_channels(x))))


class BBCUUpsample(_ShiftSignConv):
    """BBCU-U: a binary sub-pixel upsampler by ``scale`` (2 or 3) with a nearest-neighbour skip.

    ``PixelShuffle(RPReLU(binconv_{C -> s^2 C}(sign(x + shift)))) + nearest_up(x)``: the skip carries the
    full-precision features to the larger grid so the binary branch only adds detail. A x4 network
    chains two x2 units.
    """

    def __init__(self, channels: int, scale: int, bias: bool = False) -> None:
        super().__init__(channels, channels * scale * scale, bias)
        self.scale = scale
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.shuffle(self.act(self.binary_conv(x)))
        return branch + F.interpolate(x, scale_factor=self.scale, mode="nearest")


def repeat_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Tile ``x``'s channels to ``channels``: each repeated ``channels // C`` times, then the first
    ``channels % C`` once more (the official head's 3 -> 64 skip: 21 copies of each, then R)."""
    in_channels = x.shape[1]
    tiled = x.repeat_interleave(channels // in_channels, dim=1)
    return torch.cat([tiled, x[:, : channels % in_channels]], dim=1)


class BBCUHead(_ShiftSignConv):
    """BBCU-H: a binary first layer ``in_channels -> channels`` whose skip repeats the input channels.

    ``RPReLU(binconv(sign(x + shift))) + repeat_channels(x)``. The published networks keep the head full
    precision (a 3-channel input has too little to binarize); the unit is here for experiments.
    """

    def __init__(self, in_channels: int, channels: int, bias: bool = False) -> None:
        super().__init__(in_channels, channels, bias)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.binary_conv(x)) + repeat_channels(x, self.channels)


class BBCUTail(_ShiftSignConv):
    """BBCU-T: a binary last layer ``channels -> out_channels`` whose skip is the upsampled input image.

    ``forward(features, image)`` returns ``RPReLU(binconv(sign(features + shift))) + bilinear_up(image)``,
    where ``features`` are on the output grid and ``image`` is the network input, ``scale`` times
    smaller (1 for denoising). Unused by the published networks, which keep the tail full precision.
    """

    def __init__(self, channels: int, out_channels: int, scale: int, bias: bool = False) -> None:
        super().__init__(channels, out_channels, bias)
        self.scale = scale

    def forward(self, features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        skip = image
        if self.scale != 1:
            skip = F.interpolate(image, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return self.act(self.binary_conv(features)) + skip


UNITS: dict[str, type[nn.Module]] = {
    "v1": BBCUV1,
    "v2": BBCUV2,
    "v3": BBCUV3,
    "v4": BBCUV4,
    "bnn": BNNUnit,
    "bireal": BiRealUnit,
    "irnet": IRNetUnit,
    "btm": BTMUnit,
    "reactnet": ReActNetUnit,
}


def set_training_progress(model: nn.Module, progress: float) -> None:
    """Move every IR-Net EDE estimator in ``model`` to the schedule point ``progress`` (0..1).

    The trainer calls this every step; models without IR-Net parts are left untouched.
    """
    t, k = ede_schedule(progress)
    for module in model.modules():
        if isinstance(module, (IRNetUnit, BinaryConv2d)):
            module.ede_t, module.ede_k = t, k
