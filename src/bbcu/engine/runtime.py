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

import contextlib
import copy
import functools
import itertools
import os
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bbcu.core.errors import InvalidArgumentError
from bbcu.engine import kernels, onednn
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
    """``x / k``, in place: a fresh array for BBCU-M x4's 11 MB output paid its page faults on every
    call (benchmarks/kernels_session8.md)."""

    def __call__(self, flow: _Flow) -> None:
        x = flow.writable_x()
        np.divide(x, np.float32(self.k), out=x)


TORCH_THREADS_MIN_WORK = 5e7
"""Multiply-adds (or elements) below which a PyTorch operation of the runtime runs on one thread.
PyTorch's OpenMP workers keep spinning for about 10 ms after a parallel call: on a small input that is
the rest of the run, with a core of two taken from the kernels' threads (BBCU-M x4 at 64x64 took 1.6x
longer on two threads than on one, benchmarks/engine.md, session 6)."""


@contextlib.contextmanager
def _torch_threads_for(work: float) -> Iterator[None]:
    """PyTorch on one thread inside the block when ``work`` is under ``TORCH_THREADS_MIN_WORK``."""
    threads = torch.get_num_threads()
    if work >= TORCH_THREADS_MIN_WORK or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def subpixel_order(channels: int, scale: int) -> np.ndarray:
    """The output channels of a conv feeding a PixelShuffle(scale) in sub-pixel order: PyTorch's channel
    ``c * s^2 + r`` moves to ``r * C + c``, so that sub-pixel ``r`` is the contiguous block
    ``[r*C, (r+1)*C)``."""
    return np.arange(channels * scale**2).reshape(channels, scale**2).T.ravel()


class _Conv:
    """A full-precision 3x3 convolution through PyTorch/oneDNN, weights kept channels_last."""

    path = "oneDNN fp32 conv (PyTorch)"

    def __init__(self, name: str, weight: np.ndarray, bias: np.ndarray | None) -> None:
        self.name = name
        self.weight = torch.from_numpy(weight).contiguous(memory_format=torch.channels_last)
        self.bias = None if bias is None else torch.from_numpy(bias)

    def __call__(self, flow: _Flow) -> None:
        height, width, _ = flow.x.shape
        with _torch_threads_for(height * width * self.weight[0].numel() * len(self.weight)):
            flow.update(as_hwc(F.conv2d(as_nchw(flow.x), self.weight, self.bias, padding=1)))

    def grouped_by_subpixel(self, scale: int) -> _Conv:
        """This conv with its outputs in sub-pixel order (``subpixel_order``), the same values laid out
        so that the shuffle after it moves whole pixels (``_PixelShuffle(grouped=True)``)."""
        order = subpixel_order(len(self.weight) // scale**2, scale)
        grouped = copy.copy(self)
        grouped.weight = self.weight[order].contiguous(memory_format=torch.channels_last)
        grouped.bias = None if self.bias is None else self.bias[order].contiguous()
        return grouped


class _FewOutputsConv:
    """A network's last conv (many channels in, a few out) on the engine's own float kernel, which
    oneDNN runs far below the FMA peak (``kernels.float_conv3x3``)."""

    MAX_OUTPUTS = 4  # what the kernel keeps in registers; a last conv makes 1 or 3 channels

    def __init__(self, name: str, weight: np.ndarray, bias: np.ndarray | None) -> None:
        self.name = name
        self.weight = kernels.float_conv_weight(weight)
        self.bias = bias

    @property
    def path(self) -> str:
        """What computes this conv."""
        return f"{kernels.get_isa()} fp32 conv (bbcu)"

    def __call__(self, flow: _Flow) -> None:
        flow.update(kernels.float_conv3x3(flow.x, self.weight, self.bias))


def _float_conv(name: str, weight: np.ndarray, bias: np.ndarray | None) -> _Conv | _FewOutputsConv:
    """The faster of the two float convs for this weight's shape."""
    out_channels, channels = weight.shape[:2]
    if out_channels <= _FewOutputsConv.MAX_OUTPUTS and channels % 16 == 0:
        return _FewOutputsConv(name, weight, bias)
    return _Conv(name, weight, bias)


class _LeakyReLU:
    def __init__(self, slope: float) -> None:
        self.slope = slope

    def __call__(self, flow: _Flow) -> None:
        x = flow.writable_x()
        with _torch_threads_for(x.size):
            F.leaky_relu_(torch.from_numpy(x), self.slope)


class _ReLU:
    def __call__(self, flow: _Flow) -> None:
        x = flow.writable_x()
        with _torch_threads_for(x.size):
            torch.from_numpy(x).relu_()


class _PixelShuffle:
    """PyTorch's PixelShuffle on ``(H, W, s^2*C)`` features: channel ``c*s^2 + i*s + j`` moves to
    sub-pixel (i, j) of an ``(sH, sW, C)`` grid; or, ``grouped``, channels ``(i*s + j)*C ..`` (the
    output of a ``_Conv.grouped_by_subpixel``) move there as one block, into a kept buffer. Moving
    single floats into fresh arrays took BBCU-L x4's two shuffles 154 ms at 320x180 on two Zen 3 cores,
    whole pixels 41 ms (``benchmarks/network_steps.py --model bbcu-l``); the network 0.894x of its time
    (``benchmarks/runtime_ab.py f9a1a02 --model bbcu-l``; x2 0.905x, x3 0.869x), outputs equal."""

    def __init__(self, scale: int, grouped: bool = False) -> None:
        self.scale, self.grouped = scale, grouped

    def __call__(self, flow: _Flow) -> None:
        height, width, channels = flow.x.shape
        s, c = self.scale, channels // (self.scale * self.scale)
        y = torch.from_numpy(flow.x)
        source = (
            y.view(height, width, s, s, c).permute(0, 2, 1, 3, 4)
            if self.grouped
            else (y.view(height, width, c, s, s).permute(0, 3, 1, 4, 2))
        )
        out = reused_buffer(self, (s * height, s * width, c))
        with _torch_threads_for(flow.x.size):
            torch.from_numpy(out).view(height, s, width, s, c).copy_(source)
        flow.update(out)


class _AddBilinearSkip:
    def __init__(self, scale: int) -> None:
        self.scale = scale

    def __call__(self, flow: _Flow) -> None:
        kernels.add_bilinear(flow.skip, self.scale, flow.writable_x())


class _SubtractFromSkip:
    def __call__(self, flow: _Flow) -> None:
        flow.update(flow.skip - flow.x)


CHOICE_SIZE = (96, 160)
"""Input size (H, W) at which ``paths="auto"`` times the two binary conv paths: large enough for the
threads to matter, small enough to cost well under a second per network."""


class _BinaryUnit:
    """A BBCU V4 unit: ``x + RPReLU(alpha * binconv(sign(x + shift)) + bias)``.

    The conv runs as one fused popcount kernel call, or (``use("onednn")``) as an exact int8 conv
    through oneDNN with the epilogue on PyTorch (``bbcu.engine.onednn``); ``use("auto")`` times both
    at the first call and keeps the faster. Both give the same output.

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
        self.mode = "popcount"  # or "onednn", or "auto" until the first call has chosen
        self.choices: onednn.PathChoices | None = None
        self.int8: onednn.Int8Conv | None = None

    def use(self, paths: str, choices: onednn.PathChoices) -> None:
        """Run on ``paths`` (one of ``onednn.PATHS``); a forced oneDNN path prepares its weights now."""
        self.mode, self.choices = paths, choices
        if paths == "onednn":
            self.prepared_int8()

    def prepared_int8(self) -> onednn.Int8Conv:
        """The weights prepared for oneDNN, made once (at load, or when ``auto`` first needs them)."""
        if self.int8 is None:
            self.int8 = onednn.Int8Conv(self.bits, self.channels)
        return self.int8

    @property
    def path(self) -> str:
        """What computes this unit's conv."""
        popcount = kernels.isa_label()
        if self.mode == "auto":
            return f"auto ({popcount} or {onednn.path_label()}, chosen at the first call)"
        return onednn.path_label() if self.mode == "onednn" else popcount

    def packed_input(self, flow: _Flow) -> np.ndarray:
        """Signs of ``x + shift``: from the previous epilogue when it made them, else packed now."""
        return flow.packed if flow.packed is not None else kernels.pack_activations(flow.x, self.shift)

    def __call__(self, flow: _Flow) -> None:
        if self.mode == "auto":
            self.mode = self.fastest_path(flow)
        (self.run_onednn if self.mode == "onednn" else self.run_popcount)(flow)

    def run_popcount(self, flow: _Flow) -> None:
        """One fused kernel call; it also packs the next binary unit's signs when there is one."""
        packed = self.packed_input(flow)
        x = flow.writable_x()  # the unit's output replaces its input in place
        y, packed = kernels.binary_conv3x3(
            packed, self.bits, self.channels, residual=x, out=x, **self.epilogue
        )
        flow.update(y, packed)

    def run_onednn(self, flow: _Flow) -> None:
        """The int8 conv, then the epilogue added into the input in place; the next unit gets float
        features only (it packs its own signs)."""
        dots = self.prepared_int8().dots(onednn.sign_bytes(self.packed_input(flow), self.channels))
        x = flow.writable_x()
        epilogue = self.epilogue
        onednn.add_epilogue(
            dots, x, scale=epilogue["scale"], bias=epilogue["bias"], rprelu=epilogue["rprelu"]
        )
        flow.update(x)

    def fastest_path(self, flow: _Flow) -> str:
        """The faster path for this layer on this machine: remembered, or timed once on random
        features of a fixed size (``CHOICE_SIZE``), so that a choice holds for every input and every
        tile and is measured once per machine, layer shape and thread count, not once per image."""
        assert self.choices is not None, "use() sets the choices before an auto unit runs"
        height, width = CHOICE_SIZE
        layer = (
            f"{self.channels}->{self.bits.shape[0]} 3x3 at {height}x{width}, "
            f"threads {kernels.get_num_threads()}/{torch.get_num_threads()}"
        )
        shape = (height, width, self.channels)

        @functools.cache
        def features() -> np.ndarray:  # made only if the choice is not remembered, then reused
            return np.random.default_rng(0).standard_normal(shape, np.float32)

        runs = {
            name: lambda run=run: run(_Flow(features().copy(), flow.skip))
            for name, run in (("popcount", self.run_popcount), ("onednn", self.run_onednn))
        }
        return self.choices.choose(layer, runs)


class _BinaryUpsample:
    """BBCU-U: ``PixelShuffle(RPReLU(alpha * popcount_conv(sign(x + shift)))) + nearest_up(x)``.

    One fused kernel call C -> s^2 C with the shuffle in its epilogue: the output channels are
    reordered at load (``subpixel_order``) so that each sub-pixel reads a contiguous block, the input
    is the residual of every sub-pixel (that is the nearest-neighbour skip), and the next unit's signs
    are packed at full resolution in the same pass.
    """

    def __init__(
        self, tensors: dict[str, np.ndarray], op: dict[str, Any], next_shift: np.ndarray | None
    ) -> None:
        self.scale, self.name = op["scale"], op["name"]
        repeated_shift = None if next_shift is None else np.tile(next_shift, self.scale**2)
        self.unit = _BinaryUnit(tensors, op, repeated_shift, subpixel_order(op["channels"], self.scale))

    @property
    def path(self) -> str:
        """What computes this unit's conv."""
        return self.unit.path

    def __call__(self, flow: _Flow) -> None:
        unit, (height, width, channels) = self.unit, flow.x.shape
        y, packed = kernels.binary_conv3x3(
            unit.packed_input(flow),
            unit.bits,
            unit.channels,
            residual=flow.x,
            out=reused_buffer(self, (self.scale * height, self.scale * width, channels)),
            shuffle=self.scale,
            **unit.epilogue,
        )
        flow.update(y, packed)


Step = Callable[[_Flow], None]


def _make_step(op: dict[str, Any], network: PackedNetwork, next_shift: np.ndarray | None) -> Step:
    """The callable running one graph operation."""
    kind, tensors = op["op"], network.tensors
    if kind == "conv":
        return _float_conv(op["name"], tensors[f"{op['name']}.weight"], tensors.get(f"{op['name']}.bias"))
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


def cache_line_aligned(shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialised float32 array whose data starts on a 64-byte boundary.

    NumPy's large arrays start 16 bytes past one, so every 64-byte vector load of them spans two cache
    lines; the few-output float conv runs about 15 % faster on aligned input
    (benchmarks/float_conv.md, ``--align-input``).
    """
    count = int(np.prod(shape))
    buffer = np.empty(count + 16, np.float32)
    start = (-buffer.ctypes.data % 64) // 4
    return buffer[start : start + count].reshape(shape)


_THREAD_BUFFERS = threading.local()


def reused_buffer(owner: object, shape: tuple[int, ...]) -> np.ndarray:
    """``owner``'s output buffer of ``shape`` on this thread, kept from one call to the next.

    A fresh feature map costs its page faults and the kernel zeroing its pages on every call: BBCU-M
    x4's first upsampler writes 59 MB at 320x180 and took 21.2-21.5 ms with a fresh output against
    14.8-14.9 ms with a kept one on one thread (benchmarks/fresh_output_cost.py, output in
    benchmarks/kernels_session7.md). One buffer per step and thread,
    so a model still runs from several threads at once; it goes with its step (weak keys) and is
    replaced when the shape changes. ``PackedModel.run_image`` copies a result that lies in one.
    """
    buffers = getattr(_THREAD_BUFFERS, "by_owner", None)
    if buffers is None:
        buffers = _THREAD_BUFFERS.by_owner = weakref.WeakKeyDictionary()
    array = buffers.get(owner)
    if array is None or array.shape != shape:
        array = buffers[owner] = cache_line_aligned(shape)
    return array


def in_reused_buffer(x: np.ndarray) -> bool:
    """Whether ``x`` lies in one of this thread's ``reused_buffer`` arrays (the next call overwrites it)."""
    buffers = getattr(_THREAD_BUFFERS, "by_owner", {})
    return any(np.may_share_memory(x, array) for array in buffers.values())


@dataclass
class _RowWindow:
    """The rows of a high-resolution feature map a banded tail holds, as one contiguous window.

    Rows ``[base, made)`` of the image sit in buffer rows ``[0, made - base)``: the upsampler's output
    (``features``, with its next-layer signs in ``bits``) from ``done`` on, the unit's output before
    ``done``, since the unit updates its features in place. Each band appends the rows it makes and
    keeps the few the next band reads again, so no row is computed twice.
    """

    features: np.ndarray
    bits: np.ndarray
    base: int = 0
    made: int = 0
    done: int = 0

    def rows(self, array: np.ndarray, first: int, last: int) -> np.ndarray:
        """Image rows ``[first, last)`` of ``features`` or ``bits``."""
        return array[first - self.base : last - self.base]

    def forget_before(self, row: int) -> None:
        """Moves rows ``[row, made)`` to the buffers' start, so the next band's rows fit after them."""
        kept = slice(row - self.base, self.made - self.base)
        for array in (self.features, self.bits):
            np.copyto(array[: kept.stop - kept.start], array[kept])
        self.base = row


class _BandedTail:
    """A network's high-resolution tail -- binary upsampler -> binary unit -> LeakyReLU -> last conv
    (BBCU-M's last ``upsampler``, ``conv_hr`` and ``conv_last``) -- run band of rows by band of rows.

    Run one after the other, these steps write and read the whole high-resolution feature map (236 MB
    at 1280x720) several times, and at that size they wait on memory, not on the kernels: two threads
    are barely faster than one. Band by band, each band of features is made, used and overwritten in
    cache, and only the network's 3-channel output reaches memory. Each conv computes only the rows
    the next one reads (``rows=``), with the rows around them as real neighbours, so the result is the
    same bit for bit as the whole-image run; the rows a band shares with the next stay in a
    ``_RowWindow`` rather than being computed again.
    """

    BAND_ROWS = 32  # high-resolution rows kept per band: about 13 MB of 64-channel band at 1280 wide

    def __init__(
        self, upsample: _BinaryUpsample, unit: _BinaryUnit, slope: float, conv: _FewOutputsConv
    ) -> None:
        self.upsample, self.unit, self.slope, self.conv = upsample, unit, slope, conv
        self.scale = upsample.scale

    def layers(self) -> list[tuple[str, str]]:
        """The convolutions inside, with what computes them."""
        return [
            (step.name, f"{step.path}, banded") for step in self.whole_image_steps() if hasattr(step, "path")
        ]

    def whole_image_steps(self) -> list[Step]:
        """The steps this one stands for, to run one after the other on the whole image instead."""
        return [self.upsample, self.unit, _LeakyReLU(self.slope), self.conv]

    def __call__(self, flow: _Flow) -> None:
        s, x = self.scale, flow.x
        packed = self.upsample.unit.packed_input(flow)
        height, width = s * x.shape[0], s * x.shape[1]
        out = np.empty((height, width, self.conv.weight.shape[0]), np.float32)
        window = self.window(height, width)
        for top in range(0, height, self.BAND_ROWS):
            bottom = min(height, top + self.BAND_ROWS)
            y_first, y_last = max(0, top - 1), min(height, bottom + 1)  # unit outputs the last conv reads
            # Kept: those the unit already made, the signs above its next row, the upsampler's row above.
            window.forget_before(max(0, min(y_first, window.made - s)))
            self.make_rows(window, x, packed, min(height, y_last + 1))
            self.run_unit(window, y_last)
            band = kernels.float_conv3x3(
                window.rows(window.features, y_first, y_last),
                self.conv.weight,
                self.conv.bias,
                rows=(top - y_first, bottom - y_first),
            )
            out[top:bottom] = band[top - y_first : bottom - y_first]
        flow.update(out)

    def window(self, height: int, width: int) -> _RowWindow:
        """An empty window for this image, room for a band, the rows kept from the band before and the
        upsampler's rounding to whole input rows; its features in this step's buffer from one call to
        the next (a fresh 13 MB would cost its page faults every time)."""
        rows = min(height, self.BAND_ROWS + 4 * self.scale + 2)
        features = reused_buffer(self, (rows, width, self.unit.channels))
        return _RowWindow(
            features, np.empty((rows, width, kernels.channel_words(self.unit.channels)), np.uint64)
        )

    def make_rows(self, window: _RowWindow, x: np.ndarray, packed: np.ndarray, last: int) -> None:
        """Appends the unit's input rows up to ``last``, made by the upsampler from the low-resolution
        rows they come from (their neighbours read, not recomputed)."""
        first = window.made
        if first >= last:
            return
        s, unit = self.scale, self.upsample.unit
        low_first, low_last = first // s, -(-last // s)  # the input rows these rows come from
        read_first, read_last = max(0, low_first - 1), min(x.shape[0], low_last + 1)  # and their neighbours
        _, bits = kernels.binary_conv3x3(
            packed[read_first:read_last],
            unit.bits,
            unit.channels,
            residual=x[read_first:read_last],
            out=window.rows(window.features, s * read_first, s * read_last),
            shuffle=s,
            rows=(low_first - read_first, low_last - read_first),
            **unit.epilogue,
        )
        np.copyto(
            window.rows(window.bits, s * low_first, s * low_last),
            bits[s * (low_first - read_first) : s * (low_last - read_first)],
        )
        window.made = s * low_last

    def run_unit(self, window: _RowWindow, last: int) -> None:
        """Runs the unit (its LeakyReLU fused) on rows ``[done, last)``, in place, reading the signs of
        the rows around them."""
        first = window.done
        if first >= last:
            return
        read_first, read_last = max(0, first - 1), min(window.made, last + 1)
        features = window.rows(window.features, read_first, read_last)
        kernels.binary_conv3x3(
            window.rows(window.bits, read_first, read_last),
            self.unit.bits,
            self.unit.channels,
            residual=features,
            out=features,
            leaky=self.slope,
            rows=(first - read_first, last - read_first),
            **self.unit.epilogue,
        )
        window.done = last


def _band_tails(steps: list[Step]) -> list[Step]:
    """``steps`` with every binary upsampler -> binary unit -> LeakyReLU -> few-output conv run as one
    ``_BandedTail``."""
    fused: list[Step] = []
    for step in steps:
        if isinstance(step, _FewOutputsConv) and [type(s) for s in fused[-3:]] == [
            _BinaryUpsample,
            _BinaryUnit,
            _LeakyReLU,
        ]:
            upsample, unit, leaky = fused[-3:]
            del fused[-3:]
            step = _BandedTail(upsample, unit, leaky.slope, step)
        fused.append(step)
    return fused


def _group_shuffles(steps: list[Step]) -> list[Step]:
    """``steps`` with every full-precision conv that feeds a pixel shuffle computing its outputs in
    sub-pixel order, and the shuffle moving whole pixels."""
    grouped = list(steps)
    for i, (conv, shuffle) in enumerate(itertools.pairwise(steps)):
        if isinstance(conv, _Conv) and isinstance(shuffle, _PixelShuffle):
            grouped[i] = conv.grouped_by_subpixel(shuffle.scale)
            grouped[i + 1] = _PixelShuffle(shuffle.scale, grouped=True)
    return grouped


def compile_steps(network: PackedNetwork) -> list[Step]:
    """One step per graph operation (each binary unit learns whether it feeds the next one directly),
    pixel shuffles moving whole pixels, high-resolution tails fused into banded steps."""
    steps = []
    for op, following in zip(network.graph, [*network.graph[1:], None], strict=True):
        feeds_binary = following is not None and following["op"] in BINARY_OPS
        next_shift = network.tensors[f"{following['name']}.shift"] if feeds_binary else None
        steps.append(_make_step(op, network, next_shift))
    return _band_tails(_group_shuffles(steps))


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

    Args:
        network: The validated packed file.
        paths: How the BBCU V4 units' convs run (``onednn.PATHS``): ``"popcount"`` kernels,
            ``"onednn"`` int8, or ``"auto"``: per layer, the faster of the two on this machine, timed
            at the first call's input size and thread count (or read from the per-machine cache,
            ``onednn.default_cache_file()``). Every choice gives the same output.

    Raises:
        InvalidArgumentError: For an unknown ``paths``.
    """

    def __init__(self, network: PackedNetwork, paths: str = "auto") -> None:
        super().__init__()
        if paths not in onednn.PATHS:
            raise InvalidArgumentError(
                f"unknown engine paths {paths!r}; choose one of {', '.join(onednn.PATHS)}"
            )
        self.architecture = self.model_name = network.architecture
        self.model_kwargs = network.model_kwargs
        self.scale, self.k = network.scale, network.k
        self.in_channels, self.out_channels = network.in_channels, network.out_channels
        self.steps = compile_steps(network)
        if not onednn.available():
            if paths == "onednn":
                raise InvalidArgumentError("this PyTorch build lacks oneDNN's int8 conv: use paths popcount")
            paths = "popcount"
        choices = onednn.PathChoices()
        for step in self.steps:
            if isinstance(step, _BinaryUnit):
                step.use(paths, choices)

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
        layers = []
        for step in self.steps:
            if isinstance(step, _BandedTail):
                layers += step.layers()
            elif hasattr(step, "path"):
                layers.append((step.name, step.path))
        return layers

    def run_image(self, image: np.ndarray) -> np.ndarray:
        """Restore one ``(H, W, C)`` float32 image (left unchanged) into ``(sH, sW, out_channels)``."""
        flow = _Flow(x=image, skip=image)
        for step in self.steps:
            step(flow)
        return flow.x.copy() if in_reused_buffer(flow.x) else flow.x


def load(path: str | os.PathLike[str], paths: str = "auto") -> PackedModel:
    """Load and validate a ``.bbcu`` file into a runnable ``PackedModel`` (``paths``: see there).

    Raises:
        InvalidFileError: If the file is missing or is not a valid packed model (``bbcu.formats.packed``).
    """
    return PackedModel(load_packed(path), paths)


def pack_model(model: nn.Module, paths: str = "auto") -> PackedModel:
    """The packed twin of a PyTorch model, made through a real ``.bbcu`` file (so it runs exactly what a
    user's exported file would); ``paths``: see ``PackedModel``.

    Raises:
        InvalidArgumentError: If the architecture, or one of its layers, cannot be packed.
    """
    with tempfile.TemporaryDirectory() as folder:
        return load(export_model(model, Path(folder) / "model.bbcu"), paths)


def set_num_threads(threads: int) -> None:
    """Use ``threads`` cores in both halves of the runtime: PyTorch's layers and the binary kernels."""
    torch.set_num_threads(threads)
    kernels.set_num_threads(threads)
