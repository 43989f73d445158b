"""From a PyTorch network to a packed ``.bbcu`` file: the torch side of the format.

``bbcu.formats.packed`` defines the file and reads it without PyTorch; this module walks a trained
network (``bbcu.create_model``'s BBCU-L, BBCU-M, binary DnCNN or DnCNN-3), turns every module into
graph operations and arrays, and writes them through the format's ``encode``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import bbcu
from bbcu.archs.srresnet import SubPixelUpsample
from bbcu.binary.units import BBCUV4, BBCUUpsample
from bbcu.binary.weights import channel_mean_abs
from bbcu.core.atomic import atomic_write_bytes
from bbcu.core.constants import LEAKY_RELU_SLOPE
from bbcu.core.errors import InvalidArgumentError
from bbcu.formats.packed import (
    SUPPORTED_ARCHITECTURES,
    PackedNetwork,
    encode,
    graph_out_channels,
    pack_signs,
)


def export_model(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` (a supported binary network) as a packed file, atomically.

    Args:
        model: A network built by ``bbcu.create_model`` (it carries ``model_name``/``model_kwargs``).
        path: Destination ``.bbcu`` file; it appears complete or not at all.

    Returns:
        The written path.

    Raises:
        InvalidArgumentError: If the architecture, or one of its layers, is not one the packed runtime
            can run (the message names the supported architectures or the layer).
        OutputError: If the file cannot be written (missing folder, no permission, disk full).
    """
    atomic_write_bytes(path, encode(pack_network(model)))
    return Path(path)


def pack_network(model: nn.Module) -> PackedNetwork:
    """The packed form of ``model``, in memory (what ``export_model`` writes).

    Raises:
        InvalidArgumentError: As ``export_model``.
    """
    architecture = getattr(model, "model_name", None)
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise InvalidArgumentError(
            f"cannot export {architecture or type(model).__name__!r}: the packed format supports "
            f"{', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    builder = _GraphBuilder()
    with torch.no_grad():
        if architecture.startswith("dncnn"):
            builder.add_dncnn(model)
        else:
            builder.add_sr(model)
    in_channels = int(model.in_channels)
    return PackedNetwork(
        architecture=architecture,
        model_kwargs=getattr(model, "model_kwargs", {}),
        scale=int(model.scale),
        k=float(model.k),
        in_channels=in_channels,
        out_channels=graph_out_channels(builder.graph, in_channels),
        graph=builder.graph,
        tensors=builder.tensors,
        bbcu_version=bbcu.__version__,
    )


def float_array(tensor: torch.Tensor) -> np.ndarray:
    """A tensor as a contiguous float32 numpy array (safetensors stores C order)."""
    return np.ascontiguousarray(tensor.detach().to(torch.float32).cpu().numpy())


class _GraphBuilder:
    """Walks a PyTorch network top to bottom, appending graph operations and their tensors."""

    def __init__(self) -> None:
        self.graph: list[dict[str, Any]] = []
        self.tensors: dict[str, np.ndarray] = {}

    def add_sr(self, model: nn.Module) -> None:
        """``SRResNetFrame`` with V4 units: BBCU-L (fp upsampler, fp conv_hr) or BBCU-M (binary ones)."""
        self.graph.append({"op": "input_scale"})
        self.add_layer(model.conv_first, "conv_first")
        self.add_leaky_relu()
        for prefix in ("body", "upsampler"):
            for index, layer in enumerate(getattr(model, prefix)):
                self.add_layer(layer, f"{prefix}.{index}")
        self.add_layer(model.conv_hr, "conv_hr")
        self.add_leaky_relu()
        self.add_layer(model.conv_last, "conv_last")
        self.graph.append({"op": "add_bilinear_skip", "scale": int(model.scale)})
        self.graph.append({"op": "output_scale"})

    def add_dncnn(self, model: nn.Module) -> None:
        """``NoiseResidualNet`` with V4 units: ``(k*x - layers(k*x)) / k``."""
        self.graph.append({"op": "input_scale"})
        for index, layer in enumerate(model.model):
            self.add_layer(layer, f"model.{index}")
        self.graph.append({"op": "subtract_from_skip"})
        self.graph.append({"op": "output_scale"})

    def add_leaky_relu(self) -> None:
        """The LeakyReLU the SR frame puts after its full-precision convs."""
        self.graph.append({"op": "leaky_relu", "slope": LEAKY_RELU_SLOPE})

    def add_layer(self, layer: nn.Module, name: str) -> None:
        """One module of the network, dispatched on its type."""
        if isinstance(layer, nn.ReLU):
            self.graph.append({"op": "relu"})
        elif isinstance(layer, SubPixelUpsample):
            self.add_conv(layer.conv, f"{name}.conv")
            self.graph.append({"op": "pixel_shuffle", "scale": layer.shuffle.upscale_factor})
            self.add_leaky_relu()
        elif isinstance(layer, (BBCUV4, BBCUUpsample)):
            self.add_unit(layer, name)
        else:
            self.add_conv(layer, name)

    def add_conv(self, conv: nn.Module, name: str) -> None:
        """A full-precision 3x3 convolution, weights stored as they are."""
        if (
            type(conv) is not nn.Conv2d  # a BinaryConv2d of another unit kind lands here too
            or conv.kernel_size != (3, 3)
            or conv.stride != (1, 1)
            or conv.padding != (1, 1)
            or conv.dilation != (1, 1)
            or conv.groups != 1
        ):
            raise InvalidArgumentError(
                f"cannot export {name} ({type(conv).__name__}): only BBCU V4 / upsampler units and "
                "plain 3x3 stride-1 full-precision convs pack"
            )
        has_bias = conv.bias is not None
        self.graph.append(
            {
                "op": "conv",
                "name": name,
                "in_channels": conv.in_channels,
                "out_channels": conv.out_channels,
                "bias": has_bias,
            }
        )
        self.tensors[f"{name}.weight"] = float_array(conv.weight)
        if has_bias:
            self.tensors[f"{name}.bias"] = float_array(conv.bias)

    def add_unit(self, unit: nn.Module, name: str) -> None:
        """A BBCU V4 unit or BBCU-U upsampler: sign bits, alpha, shift and RPReLU per channel."""
        conv = unit.conv
        if conv.weight_binarizer != "scaled" or conv.kernel_size != (3, 3):
            raise InvalidArgumentError(
                f"cannot export {name}: only 3x3 convs with alpha*sign(W) weights pack"
            )
        has_bias = conv.bias is not None
        op: dict[str, Any] = {"op": "bbcu_unit", "name": name, "channels": conv.in_channels, "bias": has_bias}
        if isinstance(unit, BBCUUpsample):
            op = {**op, "op": "bbcu_upsample", "scale": int(unit.scale)}
        self.graph.append(op)
        weight = conv.weight.detach().to(torch.float32)
        fields = {
            "shift": unit.shift.bias,
            "alpha": channel_mean_abs(weight),
            "gamma": unit.act.gamma,
            "beta": unit.act.beta,
            "zeta": unit.act.zeta,
        }
        if has_bias:
            fields["bias"] = conv.bias
        self.tensors.update(
            {f"{name}.{field}": float_array(value).reshape(-1) for field, value in fields.items()}
        )
        self.tensors[f"{name}.weight_bits"] = pack_signs(float_array(weight.permute(0, 2, 3, 1)))
