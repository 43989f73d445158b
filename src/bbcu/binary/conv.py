"""The binary convolution: the one module that the cost counter and the packing engine treat as 1-bit."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bbcu.binary.sign import ede_schedule
from bbcu.binary.weights import binarize_weight_libra, binarize_weight_scaled, binarize_weight_sign

WEIGHT_BINARIZERS = ("sign", "scaled", "libra")


class BinaryConv2d(nn.Conv2d):
    """A ``nn.Conv2d`` whose weights are binarized in every forward pass.

    The caller binarizes the INPUT (to +-1) before calling it: the activation binarizer differs between
    methods (shift + ApproxSign, STE, EDE, ...) while the conv itself does not. Only the weights are
    binarized here, by ``weight_binarizer``:

    - ``"sign"``: ``sign(W)`` (BNN);
    - ``"scaled"``: ``mean|W[o]| * sign(W)`` (BBCU, Bi-Real, ReActNet, BTM);
    - ``"libra"``: IR-Net's balanced, standardised sign with a power-of-two scale and EDE gradient.

    Padding is ordinary zero padding of the +-1 input, so a tap that falls outside the image adds 0
    rather than +1 or -1. This is what the trained networks saw, and the packed XNOR-popcount engine
    reproduces it by counting only the valid taps at borders (``valid_taps*C - 2*popcount(xor)``).

    The parameter names (``weight``, optional ``bias``) and PyTorch's default initialisation are those of
    ``nn.Conv2d``, so official checkpoints load unchanged. Everything counting binary operations or
    packing binary weights recognises a binary conv by ``isinstance(m, BinaryConv2d)``.

    Attributes:
        weight_binarizer: One of :data:`WEIGHT_BINARIZERS`.
        ede_t: EDE sharpness, used only by ``"libra"``; set by ``set_training_progress``.
        ede_k: EDE gain, used only by ``"libra"``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        bias: bool = False,
        weight_binarizer: str = "scaled",
    ) -> None:
        if weight_binarizer not in WEIGHT_BINARIZERS:
            raise ValueError(f"weight_binarizer must be one of {WEIGHT_BINARIZERS}, got {weight_binarizer!r}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)
        self.weight_binarizer = weight_binarizer
        self.ede_t, self.ede_k = ede_schedule(0.0)

    def binarized_weight(self) -> torch.Tensor:
        """The weight the convolution actually uses (differentiable w.r.t. ``weight``)."""
        if self.weight_binarizer == "sign":
            return binarize_weight_sign(self.weight)
        if self.weight_binarizer == "libra":
            return binarize_weight_libra(self.weight, self.ede_t, self.ede_k)
        return binarize_weight_scaled(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve an already-binarized (+-1) input with the binarized weights."""
        return F.conv2d(x, self.binarized_weight(), self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, weight_binarizer={self.weight_binarizer!r}"
