"""The packed model file (``.bbcu``): its specification, and a reader that refuses anything malformed.

A ``.bbcu`` file is a safetensors container. Its metadata (the header) says what the network is
(architecture, scale, k, sign and bit conventions) and lists the network as a flat ``graph`` of
operations run top to bottom; its tensors hold, per operation, the sign bits of every binary
convolution (uint64 words, one bit per weight, 64 input channels per word) beside the few per-channel
floats a binary unit needs and the full-precision convolutions unchanged (docs/engine.md is the
specification in prose).

This module needs only numpy, safetensors and ``bbcu.core``/``bbcu.formats.container``: no PyTorch
and no compiled kernels, so tools other than the engine (a C runtime, a converter, a file inspector)
can read, validate and write the format with it. Turning a PyTorch network into a packed file is
``bbcu.engine.export``; running one is ``bbcu.engine.runtime``.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save

from bbcu.core.errors import InvalidFileError
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
SKIP_OPS = ("add_bilinear_skip", "subtract_from_skip")
RPRELU_PARAMETERS = ("gamma", "beta", "zeta")

TensorSpec = tuple[np.dtype, tuple[int, ...]]


@dataclass(frozen=True)
class PackedNetwork:
    """A packed file's content: validated when read by ``load_packed``, written by ``encode``.

    Attributes:
        architecture: Registry name the network was exported from, e.g. ``"bbcu-m"``.
        model_kwargs: Keyword arguments it was built with (informative; the graph is what runs).
        scale: Upscaling factor (1 for denoising and JPEG).
        k: Residual-alignment factor: the input is multiplied by k and the output divided by it.
        in_channels: Image channels the network reads.
        out_channels: Image channels it writes.
        graph: Operations in execution order (dicts with ``"op"`` and that kind's attributes).
        tensors: Every stored array by name (``"<op name>.<field>"``).
        bbcu_version: Version of bbcu that wrote the file (informative).
    """

    architecture: str
    model_kwargs: dict[str, Any]
    scale: int
    k: float
    in_channels: int
    out_channels: int
    graph: list[dict[str, Any]]
    tensors: dict[str, np.ndarray]
    bbcu_version: str


# --------------------------------------------------------------------------------------------- bits


def channel_words(channels: int) -> int:
    """Number of uint64 words that hold the signs of ``channels`` channels (``ceil(channels / 64)``)."""
    return -(-channels // WORD_BITS)


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


# --------------------------------------------------------------------------------------------- graph


def op_output_channels(op: dict[str, Any], channels: int) -> int:
    """Channels after ``op`` given ``channels`` before it (pixel shuffle divides, convolutions map)."""
    kind = op["op"]
    if kind == "conv":
        return op["out_channels"]
    if kind == "pixel_shuffle":
        return channels // op["scale"] ** 2
    return channels


def op_upscaling(op: dict[str, Any]) -> int:
    """How many times larger each side of the features is after ``op`` than before it."""
    return op["scale"] if op["op"] in ("pixel_shuffle", "bbcu_upsample") else 1


def graph_out_channels(graph: list[dict[str, Any]], in_channels: int) -> int:
    """Channels leaving the last operation of ``graph``."""
    channels = in_channels
    for op in graph:
        channels = op_output_channels(op, channels)
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


# --------------------------------------------------------------------------------------------- writing


def encode(network: PackedNetwork) -> bytes:
    """The bytes of the ``.bbcu`` file holding ``network``: its header as metadata, its tensors."""
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "bbcu_version": network.bbcu_version,
        "architecture": network.architecture,
        "model_kwargs": json.dumps(network.model_kwargs, sort_keys=True),
        "scale": str(network.scale),
        "k": repr(float(network.k)),
        "in_channels": str(network.in_channels),
        "out_channels": str(network.out_channels),
        "sign_convention": SIGN_CONVENTION,
        "bit_order": BIT_ORDER,
        "graph": json.dumps(network.graph),
    }
    return save(network.tensors, metadata=metadata)


# --------------------------------------------------------------------------------------------- reading


def load_packed(path: str | os.PathLike[str]) -> PackedNetwork:
    """Read and fully validate a packed file: whatever it returns, the runtime can run.

    Raises:
        InvalidFileError: One line naming the first problem found: not a file, not safetensors, not a
            packed model, unsupported version or architecture, a malformed graph, a header that
            contradicts its graph, a missing, extra or ill-shaped tensor, or sign-bit words whose
            padding bits are set.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidFileError(f"{path}: no such packed model file")
    metadata, tensors = read_container(path)
    network = _parse_header(path, metadata, tensors)
    _check_graph(path, network)
    _check_tensors(path, network)
    return network


def _parse_header(path: Path, metadata: dict[str, str], tensors: dict[str, np.ndarray]) -> PackedNetwork:
    check_format(path, metadata, name=FORMAT_NAME, version=FORMAT_VERSION, what="packed bbcu model")
    architecture = metadata.get("architecture")
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise InvalidFileError(
            f"{path}: architecture {architecture!r} is not supported; supported: "
            f"{', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    for key, expected in (("sign_convention", SIGN_CONVENTION), ("bit_order", BIT_ORDER)):
        if metadata.get(key) != expected:
            raise InvalidFileError(f"{path}: unknown {key} {metadata.get(key)!r}")
    try:
        network = PackedNetwork(
            architecture=architecture,
            model_kwargs=json.loads(metadata["model_kwargs"]),
            scale=int(metadata["scale"]),
            k=float(metadata["k"]),
            in_channels=int(metadata["in_channels"]),
            out_channels=int(metadata["out_channels"]),
            graph=json.loads(metadata["graph"]),
            tensors=tensors,
            bbcu_version=metadata["bbcu_version"],
        )
    except (KeyError, ValueError, TypeError, RecursionError) as err:  # RecursionError: JSON nested too deep
        raise InvalidFileError(f"{path}: malformed metadata ({type(err).__name__}: {err})") from err
    if not isinstance(network.model_kwargs, dict) or not isinstance(network.graph, list):
        raise InvalidFileError(f"{path}: malformed metadata (model_kwargs or graph)")
    if min(network.scale, network.in_channels, network.out_channels) < 1:
        raise InvalidFileError(f"{path}: malformed metadata (scale and channel counts must be positive)")
    if not math.isfinite(network.k) or network.k == 0:
        raise InvalidFileError(f"{path}: malformed metadata (k={network.k!r})")
    _check_model_kwargs(path, network)
    return network


def _check_model_kwargs(path: Path, network: PackedNetwork) -> None:
    """The informative ``model_kwargs`` may not contradict the header's scale and k."""
    for key in ("scale", "k"):
        if key in network.model_kwargs and network.model_kwargs[key] != getattr(network, key):
            raise InvalidFileError(
                f"{path}: model_kwargs {key}={network.model_kwargs[key]!r} contradicts the header's "
                f"{key}={getattr(network, key)!r}"
            )


def _check_graph(path: Path, network: PackedNetwork) -> None:
    """Every op is known and well formed, and the graph agrees with the header: channels chain from
    ``in_channels`` to ``out_channels``, the upsampling multiplies up to ``scale``, the skip is used at
    its own size and width, k is applied once on the way in and once on the way out, names are unique."""
    channels, upscaled = network.in_channels, 1
    for index, op in enumerate(network.graph):
        where = f"{path}: graph op {index}"
        _check_op(where, op)
        consumed = op.get("in_channels", op.get("channels", channels))
        if consumed != channels or (op["op"] == "pixel_shuffle" and channels % op["scale"] ** 2):
            raise InvalidFileError(
                f"{where} ({op['op']}): expects {consumed} channels but receives {channels}"
            )
        if op["op"] in SKIP_OPS:
            _check_skip_use(where, op, channels, upscaled, network.in_channels)
        channels, upscaled = op_output_channels(op, channels), upscaled * op_upscaling(op)
    if channels != network.out_channels:
        raise InvalidFileError(
            f"{path}: graph produces {channels} channels, metadata says {network.out_channels}"
        )
    if upscaled != network.scale:
        raise InvalidFileError(f"{path}: graph upscales by {upscaled}, metadata scale says {network.scale}")
    _check_k_ops(path, [op["op"] for op in network.graph])
    _check_names(path, network.graph)


def _check_op(where: str, op: object) -> None:
    """A known operation kind with exactly its attributes, each of its JSON type (ints positive)."""
    if not isinstance(op, dict) or op.get("op") not in OP_ATTRIBUTES:
        raise InvalidFileError(f"{where}: unknown operation {op.get('op') if isinstance(op, dict) else op!r}")
    expected = OP_ATTRIBUTES[op["op"]]
    if set(op) != {"op", *expected}:
        raise InvalidFileError(
            f"{where} ({op['op']}): attributes {sorted(op)} != {sorted({'op', *expected})}"
        )
    for key, kind in expected.items():
        value = op[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and (isinstance(value, bool) or value < 1)):
            raise InvalidFileError(
                f"{where} ({op['op']}): attribute {key}={op[key]!r} is not a valid {kind.__name__}"
            )


def _check_skip_use(where: str, op: dict[str, Any], channels: int, upscaled: int, in_channels: int) -> None:
    """The skip (the k-scaled input) meets features of its own channel count and, once resized, size."""
    resized = op.get("scale", 1)
    if channels != in_channels or resized != upscaled:
        raise InvalidFileError(
            f"{where} ({op['op']}): combines the {in_channels}-channel input resized x{resized} with "
            f"{channels}-channel features upscaled x{upscaled}"
        )


def _check_k_ops(path: Path, kinds: list[str]) -> None:
    """k scales the input first and the output last, once each, as the header's k promises."""
    if kinds[:1] != ["input_scale"] or kinds.count("input_scale") != 1:
        raise InvalidFileError(f"{path}: graph must begin with its only input_scale")
    if kinds[-1:] != ["output_scale"] or kinds.count("output_scale") != 1:
        raise InvalidFileError(f"{path}: graph must end with its only output_scale")


def _check_names(path: Path, graph: list[dict[str, Any]]) -> None:
    """Each named op owns its tensors alone: two ops of one name would share them."""
    counts = Counter(op["name"] for op in graph if "name" in op)
    repeated = sorted(name for name, count in counts.items() if count > 1)
    if repeated:
        raise InvalidFileError(f"{path}: graph op names repeated: {_few(repeated)}")


def _check_tensors(path: Path, network: PackedNetwork) -> None:
    """The stored tensors are exactly those the graph needs, with the right dtypes, shapes and bits."""
    specs: dict[str, TensorSpec] = {}
    for op in network.graph:
        specs.update(op_tensor_specs(op))
    missing = sorted(set(specs) - set(network.tensors))
    extra = sorted(set(network.tensors) - set(specs))
    if missing or extra:
        raise InvalidFileError(f"{path}: missing tensors {_few(missing)}, unexpected tensors {_few(extra)}")
    for name, (dtype, shape) in specs.items():
        array = network.tensors[name]
        if array.dtype != dtype or array.shape != shape:
            raise InvalidFileError(
                f"{path}: tensor {name} is {array.dtype}{list(array.shape)}, expected {dtype}{list(shape)}"
            )
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise InvalidFileError(f"{path}: tensor {name} holds NaN or infinite values")
    for op in (op for op in network.graph if op["op"] in BINARY_OPS):
        if unpack_bits(network.tensors[f"{op['name']}.weight_bits"])[..., op["channels"] :].any():
            raise InvalidFileError(
                f"{path}: tensor {op['name']}.weight_bits has bits set beyond its channel count"
            )


def _few(names: list[str], limit: int = 3) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
