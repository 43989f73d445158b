"""Running a packed network: binary units on the XNOR-popcount kernels, everything else on PyTorch.

Features flow between operations as one float32 ``(H, W, C)`` array, channels last, which is both what
the kernels take and the memory layout of a PyTorch ``channels_last`` tensor, so handing a feature map
to oneDNN and back costs no copy. A binary unit's kernel call fuses its whole float epilogue (alpha,
bias, RPReLU, residual add) and, when the next operation is also binary, packs the signs of its output
plus the next unit's shift in the same pass: a chain of units never re-reads its features to binarize
them.

BBCU-U's sub-pixel upsampler runs as one such fused call with the pixel shuffle in its epilogue (see
``_BinaryUpsample``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bbcu.engine import kernels
from bbcu.engine.export import export_model
from bbcu.formats.packed import BINARY_OPS, RPRELU_PARAMETERS, PackedNetwork, load_packed


@dataclass
class _Flow:
    """What one image carries between operations.

    Attributes:
        x: Current features, float32 ``(H, W, C)``, C-contiguous.
        skip: The k-scaled network input (for the global skip / noise subtraction).
        packed: Signs of ``x + shift`` of the operation about to run, when the previous binary unit's
            epilogue already produced them; None otherwise.
    """

    x: np.ndarray
    skip: np.ndarray
    packed: np.ndarray | None = None

    def update(self, x: np.ndarray, packed: np.ndarray | None = None) -> None:
        """Replace the features; signs packed for another shift never survive an update."""
        self.x, self.packed = x, packed

    def writable_x(self) -> np.ndarray:
        """The features, safe to overwrite in place: copied first while they are still the skip."""
        if self.x is self.skip:
            self.x = self.x.copy()
        self.packed = None
        return self.x


def as_nchw(x: np.ndarray) -> torch.Tensor:
    """A ``(1, C, H, W)`` channels_last tensor view of an ``(H, W, C)`` array (no copy)."""
    return torch.from_numpy(x).permute(2, 0, 1).unsqueeze(0)


def as_hwc(t: torch.Tensor) -> np.ndarray:
    """The ``(H, W, C)`` C-contiguous array of a ``(1, C, H, W)`` tensor (no copy if channels_last)."""
    return t.contiguous(memory_format=torch.channels_last)[0].permute(1, 2, 0).numpy()


class _InputScale:
    def __init__(self, k: float) -> None:
        self.k = k

    def __call__(self, flow: _Flow) -> None:
        flow.update(flow.x * np.float32(self.k))
        flow.skip = flow.x


class _OutputScale(_InputScale):
    def __call__(self, flow: _Flow) -> None:
        flow.update(flow.x / np.float32(self.k))


class _Conv:
    """A full-precision 3x3 convolution through PyTorch/oneDNN, weights kept channels_last."""

    path = "oneDNN fp32 conv (PyTorch)"

    def __init__(self, name: str, weight: np.ndarray, bias: np.ndarray | None) -> None:
        self.name = name
        self.weight = torch.from_numpy(weight).contiguous(memory_format=torch.channels_last)
        self.bias = None if bias is None else torch.from_numpy(bias)

    def __call__(self, flow: _Flow) -> None:
        flow.update(as_hwc(F.conv2d(as_nchw(flow.x), self.weight, self.bias, padding=1)))


class _LeakyReLU:
    def __init__(self, slope: float) -> None:
        self.slope = slope

    def __call__(self, flow: _Flow) -> None:
        F.leaky_relu_(torch.from_numpy(flow.writable_x()), self.slope)


class _ReLU:
    def __call__(self, flow: _Flow) -> None:
        torch.from_numpy(flow.writable_x()).relu_()


def pixel_shuffle(y: np.ndarray, scale: int) -> np.ndarray:
    """PyTorch's PixelShuffle on ``(H, W, s^2*C)`` features: channel ``c*s^2 + i*s + j`` moves to
    sub-pixel (i, j) of an ``(sH, sW, C)`` grid."""
    height, width, channels = y.shape
    c = channels // (scale * scale)
    t = torch.from_numpy(y).view(height, width, c, scale, scale).permute(0, 3, 1, 4, 2)
    return t.contiguous().view(height * scale, width * scale, c).numpy()


class _PixelShuffle:
    def __init__(self, scale: int) -> None:
        self.scale = scale

    def __call__(self, flow: _Flow) -> None:
        flow.update(pixel_shuffle(flow.x, self.scale))


class _AddBilinearSkip:
    def __init__(self, scale: int) -> None:
        self.scale = scale

    def __call__(self, flow: _Flow) -> None:
        up = F.interpolate(as_nchw(flow.skip), scale_factor=self.scale, mode="bilinear", align_corners=False)
        as_nchw(flow.writable_x()).add_(up)


class _SubtractFromSkip:
    def __call__(self, flow: _Flow) -> None:
        flow.update(flow.skip - flow.x)


class _BinaryUnit:
    """A BBCU V4 unit: ``x + RPReLU(alpha * popcount_conv(sign(x + shift)) + bias)`` in one kernel call.

    Args:
        tensors: The network's tensors.
        op: This unit's graph entry.
        next_shift: Shift of the following binary operation when it reads this unit's output directly;
            the kernel then also returns that operation's packed input.
        channel_order: Output channel permutation to apply to the stored per-output tensors, if any.
    """

    def __init__(
        self,
        tensors: dict[str, np.ndarray],
        op: dict[str, Any],
        next_shift: np.ndarray | None,
        channel_order: np.ndarray | None = None,
    ) -> None:
        def per_output(field: str) -> np.ndarray:
            value = tensors[f"{op['name']}.{field}"]
            return value if channel_order is None else np.ascontiguousarray(value[channel_order])

        self.channels = op["channels"]
        self.shift = tensors[f"{op['name']}.shift"]
        self.name = op["name"]
        self.bits = per_output("weight_bits")
        self.epilogue: dict[str, Any] = {
            "scale": per_output("alpha"),
            "bias": per_output("bias") if op["bias"] else None,
            "rprelu": tuple(per_output(p) for p in RPRELU_PARAMETERS),
            "next_shift": next_shift,
        }

    @property
    def path(self) -> str:
        """What computes this unit's conv."""
        return f"{kernels.get_isa()} popcount"

    def packed_input(self, flow: _Flow) -> np.ndarray:
        """Signs of ``x + shift``: from the previous epilogue when it made them, else packed now."""
        return flow.packed if flow.packed is not None else kernels.pack_activations(flow.x, self.shift)

    def __call__(self, flow: _Flow) -> None:
        packed = self.packed_input(flow)
        x = flow.writable_x()  # the unit's output replaces its input in place
        y, packed = kernels.binary_conv3x3(
            packed, self.bits, self.channels, residual=x, out=x, **self.epilogue
        )
        flow.update(y, packed)


class _BinaryUpsample:
    """BBCU-U: ``PixelShuffle(RPReLU(alpha * popcount_conv(sign(x + shift)))) + nearest_up(x)``.

    One fused kernel call C -> s^2 C with the shuffle in its epilogue: the output channels are
    reordered at load so that sub-pixel ``r`` reads the contiguous block ``[r*C, (r+1)*C)`` (PyTorch's
    channels ``c*s^2 + r``), the input is the residual of every sub-pixel (that is the
    nearest-neighbour skip), and the next unit's signs are packed at full resolution in the same pass.
    """

    def __init__(
        self, tensors: dict[str, np.ndarray], op: dict[str, Any], next_shift: np.ndarray | None
    ) -> None:
        self.scale, self.name = op["scale"], op["name"]
        subpixels, channels = self.scale**2, op["channels"]
        by_subpixel = np.arange(channels * subpixels).reshape(channels, subpixels).T.ravel()
        repeated_shift = None if next_shift is None else np.tile(next_shift, subpixels)
        self.unit = _BinaryUnit(tensors, op, repeated_shift, by_subpixel)

    @property
    def path(self) -> str:
        """What computes this unit's conv."""
        return self.unit.path

    def __call__(self, flow: _Flow) -> None:
        unit = self.unit
        y, packed = kernels.binary_conv3x3(
            unit.packed_input(flow),
            unit.bits,
            unit.channels,
            residual=flow.x,
            shuffle=self.scale,
            **unit.epilogue,
        )
        flow.update(y, packed)


Step = Callable[[_Flow], None]


def _make_step(op: dict[str, Any], network: PackedNetwork, next_shift: np.ndarray | None) -> Step:
    """The callable running one graph operation."""
    kind, tensors = op["op"], network.tensors
    if kind == "conv":
        return _Conv(op["name"], tensors[f"{op['name']}.weight"], tensors.get(f"{op['name']}.bias"))
    if kind == "bbcu_unit":
        return _BinaryUnit(tensors, op, next_shift)
    if kind == "bbcu_upsample":
        return _BinaryUpsample(tensors, op, next_shift)
    simple: dict[str, Callable[[], Step]] = {
        "input_scale": lambda: _InputScale(network.k),
        "output_scale": lambda: _OutputScale(network.k),
        "leaky_relu": lambda: _LeakyReLU(op["slope"]),
        "relu": _ReLU,
        "pixel_shuffle": lambda: _PixelShuffle(op["scale"]),
        "add_bilinear_skip": lambda: _AddBilinearSkip(op["scale"]),
        "subtract_from_skip": _SubtractFromSkip,
    }
    return simple[kind]()


def compile_steps(network: PackedNetwork) -> list[Step]:
    """One step per graph operation; each binary unit learns whether it feeds the next one directly."""
    steps = []
    for op, following in zip(network.graph, [*network.graph[1:], None], strict=True):
        feeds_binary = following is not None and following["op"] in BINARY_OPS
        next_shift = network.tensors[f"{following['name']}.shift"] if feeds_binary else None
        steps.append(_make_step(op, network, next_shift))
    return steps


class PackedModel(nn.Module):
    """A packed network behaving like the PyTorch model it was exported from (in eval mode).

    It is an ``nn.Module`` without parameters so code written for models (``restore_array``,
    ``bbcu eval``) takes it as is; ``.eval()`` and ``.to("cpu")`` are harmless no-ops.

    Attributes:
        architecture: Registry name of the exported network.
        model_name: Same as ``architecture`` (the attribute models built by name carry).
        model_kwargs: Keyword arguments the network was built with.
        scale: Upscaling factor (1 for denoising and JPEG).
        k: Residual-alignment factor.
        in_channels: Image channels read.
        out_channels: Image channels written.
    """

    def __init__(self, network: PackedNetwork) -> None:
        super().__init__()
        self.architecture = self.model_name = network.architecture
        self.model_kwargs = network.model_kwargs
        self.scale, self.k = network.scale, network.k
        self.in_channels, self.out_channels = network.in_channels, network.out_channels
        self.steps = compile_steps(network)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Restore a batch ``(N, C, H, W)`` of [0, 1] images, one image at a time (the kernels take one).

        Returns:
            ``(N, out_channels, s*H, s*W)`` float32 on the [0, 1] scale, channels_last, on the CPU.
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected a (N, {self.in_channels}, H, W) tensor, got {tuple(x.shape)}")
        with torch.no_grad():
            images = x.detach().to("cpu", torch.float32)
            outputs = [self.run_image(as_hwc(images[n : n + 1])) for n in range(images.shape[0])]
        batch = outputs[0][None] if len(outputs) == 1 else np.stack(outputs)
        return torch.from_numpy(batch).permute(0, 3, 1, 2)

    def layer_paths(self) -> list[tuple[str, str]]:
        """``(layer name, what computes it)`` for every convolution, in graph order: which kernel path
        (``avx512 popcount``, ...) or library runs it on this machine."""
        return [(step.name, step.path) for step in self.steps if hasattr(step, "path")]

    def run_image(self, image: np.ndarray) -> np.ndarray:
        """Restore one ``(H, W, C)`` float32 image (left unchanged) into ``(sH, sW, out_channels)``."""
        flow = _Flow(x=image, skip=image)
        for step in self.steps:
            step(flow)
        return flow.x


def load(path: str | os.PathLike[str]) -> PackedModel:
    """Load and validate a ``.bbcu`` file into a runnable ``PackedModel``.

    Raises:
        InvalidFileError: If the file is missing or is not a valid packed model (``bbcu.formats.packed``).
    """
    return PackedModel(load_packed(path))


def pack_model(model: nn.Module) -> PackedModel:
    """The packed twin of a PyTorch model, made through a real ``.bbcu`` file (so it runs exactly what a
    user's exported file would).

    Raises:
        InvalidArgumentError: If the architecture, or one of its layers, cannot be packed.
    """
    with tempfile.TemporaryDirectory() as folder:
        return load(export_model(model, Path(folder) / "model.bbcu"))


def set_num_threads(threads: int) -> None:
    """Use ``threads`` cores in both halves of the runtime: PyTorch's layers and the binary kernels."""
    torch.set_num_threads(threads)
    kernels.set_num_threads(threads)
