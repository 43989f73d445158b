"""Cost of a network in the paper's units: OPs and Params for one LQ image (docs/protocols.md, "Cost").

The published tables count convolutions only. A full-precision convolution costs its multiply-accumulates
(MACs) and its weights plus bias; a binary convolution costs MACs / 64 (one 64-bit XNOR-popcount word does
64 of them) and weights / 32 (a float is 32 bits). Per-channel floats - activation shifts, RPReLU, BatchNorm,
and the bias of a binary convolution, which all fold into the binary convolution's float epilogue - are not
counted; with them the published Params columns are not reproduced (the JPEG networks, whose binary convs
carry a bias, would come out at 23 K instead of the published 22 K).

Shapes come from one forward pass with ``meta`` stand-ins for the input and the parameters: every output
size is exact (strides, pixel shuffles and upsamplers included) while no arithmetic is done, so SRResNet
x4 at 320x180 takes a fraction of a second instead of 146 G multiply-accumulates.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn

from bbcu.binary.conv import BinaryConv2d

DEFAULT_INPUT_SIZE = (320, 180)
BINARY_MACS_PER_OP = 64
BINARY_WEIGHTS_PER_PARAM = 32


@dataclass(frozen=True)
class LayerCost:
    """One call of one convolution.

    Attributes:
        name: Qualified module name, e.g. ``"body.3.conv"``.
        kind: ``"binary"`` for a ``BinaryConv2d``, ``"fp"`` for every other ``nn.Conv2d``.
        in_channels: Input channels of the convolution.
        out_channels: Output channels of the convolution.
        out_hw: Output height and width.
        macs: Multiply-accumulates of this call, not yet divided by 64 for binary layers.
        params: Counted parameters, not yet divided by 32 for binary layers (0 on a repeated call of a
            module, so that shared weights are counted once).
    """

    name: str
    kind: str
    in_channels: int
    out_channels: int
    out_hw: tuple[int, int]
    macs: int
    params: int


@dataclass(frozen=True)
class CostReport:
    """The cost of one forward pass, layer by layer and in total.

    Attributes:
        input_size: LQ input width and height the cost was measured for.
        layers: Every convolution call in execution order.
    """

    input_size: tuple[int, int]
    layers: tuple[LayerCost, ...]

    def _total(self, field: str, kind: str) -> int:
        return sum(getattr(layer, field) for layer in self.layers if layer.kind == kind)

    @property
    def fp_macs(self) -> int:
        """Multiply-accumulates of the full-precision convolutions."""
        return self._total("macs", "fp")

    @property
    def binary_macs(self) -> int:
        """Multiply-accumulates of the binary convolutions (before the division by 64)."""
        return self._total("macs", "binary")

    @property
    def fp_params(self) -> int:
        """Weights and biases of the full-precision convolutions."""
        return self._total("params", "fp")

    @property
    def binary_params(self) -> int:
        """Weights of the binary convolutions (before the division by 32)."""
        return self._total("params", "binary")

    @property
    def ops_g(self) -> float:
        """OPs in units of 1e9, the paper's "OPs (G)" column."""
        return (self.fp_macs + self.binary_macs / BINARY_MACS_PER_OP) / 1e9

    @property
    def params_k(self) -> float:
        """Params in units of 1e3, the paper's "Params (K)" column."""
        return (self.fp_params + self.binary_params / BINARY_WEIGHTS_PER_PARAM) / 1e3

    @property
    def binary_ops_share(self) -> float:
        """Fraction of the OPs spent in binary convolutions (0 for a model without convolutions)."""
        total = self.ops_g * 1e9
        return self.binary_macs / BINARY_MACS_PER_OP / total if total else 0.0


def conv_kind(conv: nn.Conv2d) -> str:
    """``"binary"`` for a binarized convolution, ``"fp"`` for a full-precision one."""
    return "binary" if isinstance(conv, BinaryConv2d) else "fp"


def conv_params(conv: nn.Conv2d) -> int:
    """Counted parameters of ``conv``: a binary conv's bias is a per-channel float, so it is left out."""
    bias = conv.bias.numel() if conv.bias is not None and conv_kind(conv) == "fp" else 0
    return conv.weight.numel() + bias


def conv_macs(conv: nn.Conv2d, out_hw: tuple[int, int]) -> int:
    """Multiply-accumulates of one call: every output value sums (in_ch / groups) * kh * kw products."""
    kh, kw = conv.kernel_size
    return out_hw[0] * out_hw[1] * conv.out_channels * (conv.in_channels // conv.groups) * kh * kw


def count_cost(model: nn.Module, input_size: tuple[int, int] = DEFAULT_INPUT_SIZE) -> CostReport:
    """Measure what one forward pass of ``model`` on a ``W x H`` LQ image costs.

    The forward pass runs with ``meta`` stand-ins for the parameters and the input, so nothing is computed
    and the model's own tensors are neither copied nor changed.

    Args:
        model: A network with an ``in_channels`` attribute (every registered model has one).
        input_size: LQ image width and height; the published tables use 320x180.

    Returns:
        The per-layer and total cost.
    """
    width, height = input_size
    if not any(isinstance(module, nn.Conv2d) for module in model.modules()):
        return CostReport((width, height), ())  # bicubic: nothing to count, and NumPy cannot run on meta
    layers: list[LayerCost] = []
    seen: set[nn.Module] = set()

    def record(name: str, conv: nn.Conv2d, output: torch.Tensor) -> None:
        out_hw = (int(output.shape[-2]), int(output.shape[-1]))
        params = 0 if conv in seen else conv_params(conv)
        seen.add(conv)
        macs = conv_macs(conv, out_hw)
        layers.append(
            LayerCost(name, conv_kind(conv), conv.in_channels, conv.out_channels, out_hw, macs, params)
        )

    handles = [
        module.register_forward_hook(lambda conv, _inputs, output, name=name: record(name, conv, output))
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d)
    ]
    # Parameters and buffers are swapped for meta stand-ins for this one call only.
    meta_tensors = {
        name: torch.empty_like(tensor, device="meta")
        for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers())
    }
    try:
        with torch.no_grad():
            image = torch.empty(1, model.in_channels, height, width, device="meta")
            torch.func.functional_call(model, meta_tensors, (image,))
    finally:
        for handle in handles:
            handle.remove()
    return CostReport((width, height), tuple(layers))
