"""The packed model file: a BBCU network with its binary weights stored as sign bits.

A ``.bbcu`` file is a safetensors container. Its metadata says what the network is (architecture,
scale, k, sign and bit conventions) and lists the network as a flat ``graph`` of operations run top to
bottom; its tensors hold, per operation, the sign bits of every binary convolution (uint64 words, one
bit per weight, 64 input channels per word) beside the few per-channel floats a binary unit needs and
the full-precision convolutions unchanged. The file is self-describing: the runtime needs no PyTorch
model class to run it, and ``load_packed`` refuses anything it could not run (docs/engine.md is the
specification).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import save
from torch import nn

import bbcu
from bbcu.archs.srresnet import SubPixelUpsample
from bbcu.binary.units import BBCUV4, BBCUUpsample
from bbcu.binary.weights import channel_mean_abs
from bbcu.core.atomic import atomic_write_bytes
from bbcu.core.errors import UserError
from bbcu.engine.kernels import channel_words
from bbcu.formats.container import check_format, read_container

FORMAT_NAME = "bbcu-packed"
FORMAT_VERSION = "1"
SUPPORTED_ARCHITECTURES = ("bbcu-l", "bbcu-m", "dncnn-bbcu", "dncnn3-bbcu")
SIGN_CONVENTION = "bit 1 = +1 = (value >= 0); sign(0) = +1"
BIT_ORDER = (
    "channel c of a pixel or tap -> word c // 64, bit c % 64 (least significant first); padding bits 0"
)
WORD_BITS = 64

# Every operation kind, with the attributes it must carry and their JSON types. Convolutions are all
# 3x3, stride 1, zero padding 1 (the only kind these networks use).
OP_ATTRIBUTES: dict[str, dict[str, type]] = {
    "input_scale": {},  # x <- k * x, and x is kept as the network's skip input
    "conv": {"name": str, "in_channels": int, "out_channels": int, "bias": bool},
    "leaky_relu": {"slope": float},
    "relu": {},
    "pixel_shuffle": {"scale": int},
    "bbcu_unit": {"name": str, "channels": int, "bias": bool},
    "bbcu_upsample": {"name": str, "channels": int, "scale": int, "bias": bool},
    "add_bilinear_skip": {"scale": int},  # x <- x + bilinear_up(skip), align_corners=False
    "subtract_from_skip": {},  # x <- skip - x (noise-residual learning)
    "output_scale": {},  # x <- x / k
}
BINARY_OPS = ("bbcu_unit", "bbcu_upsample")
RPRELU_PARAMETERS = ("gamma", "beta", "zeta")

TensorSpec = tuple[np.dtype, tuple[int, ...]]


@dataclass(frozen=True)
class PackedNetwork:
    """A validated packed file, ready for the runtime.

    Attributes:
        architecture: Registry name the network was exported from, e.g. ``"bbcu-m"``.
        model_kwargs: Keyword arguments it was built with (informative; the graph is what runs).
        scale: Upscaling factor (1 for denoising and JPEG).
        k: Residual-alignment factor: the input is multiplied by k and the output divided by it.
        in_channels: Image channels the network reads.
        out_channels: Image channels it writes.
        graph: Operations in execution order (dicts with ``"op"`` and that kind's attributes).
        tensors: Every stored array by name (``"<op name>.<field>"``).
    """

    architecture: str
    model_kwargs: dict[str, Any]
    scale: int
    k: float
    in_channels: int
    out_channels: int
    graph: list[dict[str, Any]]
    tensors: dict[str, np.ndarray]


def pack_signs(values: np.ndarray) -> np.ndarray:
    """Pack the signs of ``values`` along the last axis into uint64 words (see ``BIT_ORDER``).

    This is the format's own definition of the bit layout, kept independent of the compiled kernels so a
    file does not depend on how a kernel chooses to pack internally.
    """
    channels = values.shape[-1]
    padded = np.zeros((*values.shape[:-1], channel_words(channels) * WORD_BITS), dtype=bool)
    padded[..., :channels] = values >= 0
    return np.packbits(padded, axis=-1, bitorder="little").view("<u8").astype(np.uint64)


def unpack_signs(words: np.ndarray, channels: int) -> np.ndarray:
    """Inverse of ``pack_signs``: float32 +-1 values of the first ``channels`` bits of each word row."""
    return np.where(unpack_bits(words)[..., :channels] == 1, np.float32(1.0), np.float32(-1.0))


def unpack_bits(words: np.ndarray) -> np.ndarray:
    """The bits of uint64 words along the last axis, 64 per word, least significant first (uint8 0/1)."""
    return np.unpackbits(words.astype("<u8").view(np.uint8), axis=-1, bitorder="little")


def op_output_channels(op: dict[str, Any], channels: int) -> int:
    """Channels after ``op`` given ``channels`` before it (pixel shuffle divides, convolutions map)."""
    kind = op["op"]
    if kind == "conv":
        return op["out_channels"]
    if kind == "pixel_shuffle":
        return channels // op["scale"] ** 2
    return channels


def op_tensor_specs(op: dict[str, Any]) -> dict[str, TensorSpec]:
    """The tensors one operation owns: name -> (dtype, shape)."""
    kind, f32 = op["op"], np.dtype(np.float32)
    if kind == "conv":
        cin, cout, name = op["in_channels"], op["out_channels"], op["name"]
        specs = {f"{name}.weight": (f32, (cout, cin, 3, 3))}
        if op["bias"]:
            specs[f"{name}.bias"] = (f32, (cout,))
        return specs
    if kind not in BINARY_OPS:
        return {}
    cin, name = op["channels"], op["name"]
    cout = cin * op["scale"] ** 2 if kind == "bbcu_upsample" else cin
    per_output = ("alpha", *RPRELU_PARAMETERS) + (("bias",) if op["bias"] else ())
    specs = {
        f"{name}.shift": (f32, (cin,)),
        f"{name}.weight_bits": (np.dtype(np.uint64), (cout, 3, 3, channel_words(cin))),
    }
    specs.update({f"{name}.{field}": (f32, (cout,)) for field in per_output})
    return specs


# --------------------------------------------------------------------------------------------- export


def export_model(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` (a supported binary network) as a packed file, atomically.

    Args:
        model: A network built by ``bbcu.create_model`` (it carries ``model_name``/``model_kwargs``).
        path: Destination ``.bbcu`` file; it appears complete or not at all.

    Returns:
        The written path.

    Raises:
        UserError: If the architecture is not one the packed runtime can run, or the folder is missing.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise UserError(f"output folder {path.parent} does not exist")
    architecture = getattr(model, "model_name", None)
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise UserError(
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
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "bbcu_version": bbcu.__version__,
        "architecture": architecture,
        "model_kwargs": json.dumps(getattr(model, "model_kwargs", {}), sort_keys=True),
        "scale": str(int(model.scale)),
        "k": repr(float(model.k)),
        "in_channels": str(in_channels),
        "out_channels": str(graph_out_channels(builder.graph, in_channels)),
        "sign_convention": SIGN_CONVENTION,
        "bit_order": BIT_ORDER,
        "graph": json.dumps(builder.graph),
    }
    atomic_write_bytes(path, save(builder.tensors, metadata=metadata))
    return path


def graph_out_channels(graph: list[dict[str, Any]], in_channels: int) -> int:
    """Channels leaving the last operation of ``graph``."""
    channels = in_channels
    for op in graph:
        channels = op_output_channels(op, channels)
    return channels


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
        self.graph.append({"op": "leaky_relu", "slope": 0.1})
        for prefix in ("body", "upsampler"):
            for index, layer in enumerate(getattr(model, prefix)):
                self.add_layer(layer, f"{prefix}.{index}")
        self.add_layer(model.conv_hr, "conv_hr")
        self.graph.append({"op": "leaky_relu", "slope": 0.1})
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

    def add_layer(self, layer: nn.Module, name: str) -> None:
        """One module of the network, dispatched on its type."""
        if isinstance(layer, nn.ReLU):
            self.graph.append({"op": "relu"})
        elif isinstance(layer, SubPixelUpsample):
            self.add_conv(layer.conv, f"{name}.conv")
            self.graph.append({"op": "pixel_shuffle", "scale": layer.shuffle.upscale_factor})
            self.graph.append({"op": "leaky_relu", "slope": 0.1})
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
            raise UserError(
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
            raise UserError(f"cannot export {name}: only 3x3 convs with alpha*sign(W) weights pack")
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


# --------------------------------------------------------------------------------------------- loading


def load_packed(path: str | os.PathLike[str]) -> PackedNetwork:
    """Read and fully validate a packed file.

    Raises:
        UserError: One line naming the first problem found: not a file, not safetensors, not a packed
            model, unsupported version or architecture, a malformed graph, a missing, extra or
            ill-shaped tensor, or sign-bit words whose padding bits are set.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such packed model file")
    metadata, tensors = read_container(path)
    network = _parse_metadata(path, metadata, tensors)
    _check_tensors(path, network)
    return network


def _parse_metadata(path: Path, metadata: dict[str, str], tensors: dict[str, np.ndarray]) -> PackedNetwork:
    check_format(path, metadata, name=FORMAT_NAME, version=FORMAT_VERSION, what="packed bbcu model")
    architecture = metadata.get("architecture")
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise UserError(
            f"{path}: architecture {architecture!r} is not supported; supported: "
            f"{', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    for key, expected in (("sign_convention", SIGN_CONVENTION), ("bit_order", BIT_ORDER)):
        if metadata.get(key) != expected:
            raise UserError(f"{path}: unknown {key} {metadata.get(key)!r}")
    try:
        model_kwargs = json.loads(metadata["model_kwargs"])
        graph = json.loads(metadata["graph"])
        scale, in_channels = int(metadata["scale"]), int(metadata["in_channels"])
        out_channels, k = int(metadata["out_channels"]), float(metadata["k"])
    except (KeyError, ValueError, TypeError) as err:
        raise UserError(f"{path}: malformed metadata ({type(err).__name__}: {err})") from None
    if not isinstance(model_kwargs, dict) or not isinstance(graph, list) or not np.isfinite(k) or k == 0:
        raise UserError(f"{path}: malformed metadata (model_kwargs, graph or k)")
    network = PackedNetwork(architecture, model_kwargs, scale, k, in_channels, out_channels, graph, tensors)
    _check_graph(path, network)
    return network


def _check_graph(path: Path, network: PackedNetwork) -> None:
    """Every op is known and well formed, and channel counts chain from input to output."""
    channels = network.in_channels
    for index, op in enumerate(network.graph):
        where = f"{path}: graph op {index}"
        if not isinstance(op, dict) or op.get("op") not in OP_ATTRIBUTES:
            raise UserError(f"{where}: unknown operation {op.get('op') if isinstance(op, dict) else op!r}")
        expected = OP_ATTRIBUTES[op["op"]]
        if set(op) != {"op", *expected}:
            raise UserError(f"{where} ({op['op']}): attributes {sorted(op)} != {sorted({'op', *expected})}")
        for key, kind in expected.items():
            value = op[key]
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind) or (kind is int and (isinstance(value, bool) or value < 1)):
                raise UserError(
                    f"{where} ({op['op']}): attribute {key}={op[key]!r} is not a valid {kind.__name__}"
                )
        consumed = op.get("in_channels", op.get("channels", channels))
        if consumed != channels or (op["op"] == "pixel_shuffle" and channels % op["scale"] ** 2):
            raise UserError(f"{where} ({op['op']}): expects {consumed} channels but receives {channels}")
        channels = op_output_channels(op, channels)
    if channels != network.out_channels:
        raise UserError(f"{path}: graph produces {channels} channels, metadata says {network.out_channels}")


def _check_tensors(path: Path, network: PackedNetwork) -> None:
    """The stored tensors are exactly those the graph needs, with the right dtypes, shapes and bits."""
    specs: dict[str, TensorSpec] = {}
    for op in network.graph:
        specs.update(op_tensor_specs(op))
    missing = sorted(set(specs) - set(network.tensors))
    extra = sorted(set(network.tensors) - set(specs))
    if missing or extra:
        raise UserError(f"{path}: missing tensors {_few(missing)}, unexpected tensors {_few(extra)}")
    for name, (dtype, shape) in specs.items():
        array = network.tensors[name]
        if array.dtype != dtype or array.shape != shape:
            raise UserError(
                f"{path}: tensor {name} is {array.dtype}{list(array.shape)}, expected {dtype}{list(shape)}"
            )
    for op in (op for op in network.graph if op["op"] in BINARY_OPS):
        if _padding_bits_set(network.tensors[f"{op['name']}.weight_bits"], op["channels"]):
            raise UserError(f"{path}: tensor {op['name']}.weight_bits has bits set beyond its channel count")


def _padding_bits_set(words: np.ndarray, channels: int) -> bool:
    """Whether any bit beyond the first ``channels`` of each word row is 1 (they must stay 0)."""
    return bool(
        np.unpackbits(words.astype("<u8").view(np.uint8), axis=-1, bitorder="little")[..., channels:].any()
    )


def _few(names: list[str], limit: int = 3) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
