"""The packed 1-bit engine's compiled kernels: sign packing and the fused XNOR-popcount 3x3 conv.

Layout (docs/method.md; the ``.bbcu`` file's own, so ``channel_words`` is the format's, re-exported):
channels last, signs packed 64 channels per ``uint64`` word, bit 1 = +1, where a value ``v`` with shift
``s`` packs as ``v + s >= 0`` (so ``sign(0) = +1``, as in the simulated network). Bits past the real
channel count are 0 in activations and weights alike, so they never count. A 3x3 binary conv over ``C``
channels is then, per output ``(h, w, o)``::

    dot = sum over in-image taps (C - 2 * popcount(x_word ^ w_word)) = valid_taps * C - 2 * popcount

Taps outside the image contribute 0, exactly like the zero-padded +-1 input of the simulated conv.

The arithmetic lives in ``bbcu.engine._bitops`` (C, built by ``setup.py``), with a portable path and
AVX2 / AVX-512 (VPOPCNTDQ) paths picked at run time; every path returns identical numbers. Calls release
the GIL and split output rows over ``get_num_threads()`` threads. Bad arrays raise ``ValueError``.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from bbcu.engine import _bitops
from bbcu.formats.packed import channel_words

__all__ = [
    "Ceilings",
    "add_bilinear",
    "available_isas",
    "binary_conv3x3",
    "binary_conv3x3_raw",
    "channel_words",
    "float_conv3x3",
    "float_conv_weight",
    "get_isa",
    "get_num_threads",
    "isa_label",
    "measure_ceilings",
    "pack_activations",
    "pack_weights",
    "set_isa",
    "set_num_threads",
    "simd_isas",
    "using_isa",
]

RPReLU = tuple[np.ndarray, np.ndarray, np.ndarray]


def pack_activations(x: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Packs the signs of ``x + shift`` (the learnable activation shift of the binarizer).

    Args:
        x: float32 ``(H, W, C)``, C-contiguous.
        shift: float32 ``(C,)``.

    Returns:
        uint64 ``(H, W, channel_words(C))``.
    """
    return _bitops.pack_activations(x, shift)


def pack_weights(w: np.ndarray) -> np.ndarray:
    """Packs the signs of a 3x3 conv weight (bit 1 = ``w >= 0``); the per-channel scale stays outside.

    Args:
        w: float32 ``(O, C, 3, 3)`` (PyTorch's layout), C-contiguous.

    Returns:
        uint64 ``(O, 3, 3, channel_words(C))``.
    """
    return _bitops.pack_weights(w)


def binary_conv3x3_raw(xp: np.ndarray, wp: np.ndarray, channels: int) -> np.ndarray:
    """The exact integer dot products of the +-1 conv, without epilogue (what tests compare).

    Args:
        xp: uint64 ``(H, W, Cw)`` from ``pack_activations``.
        wp: uint64 ``(O, 3, 3, Cw)`` from ``pack_weights``.
        channels: the real input channel count ``C`` (``Cw == channel_words(C)``).

    Returns:
        int32 ``(H, W, O)``.
    """
    return _bitops.binary_conv3x3_raw(xp, wp, channels)


def binary_conv3x3(
    xp: np.ndarray,
    wp: np.ndarray,
    channels: int,
    *,
    scale: np.ndarray,
    bias: np.ndarray | None = None,
    rprelu: RPReLU | None = None,
    residual: np.ndarray | None = None,
    next_shift: np.ndarray | None = None,
    out: np.ndarray | None = None,
    shuffle: int = 1,
    leaky: float | None = None,
    rows: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Binary 3x3 conv with its float epilogue fused, so the float glue never takes a separate pass.

    Per output: ``y = scale[o] * dot + bias[o]``; with ``rprelu = (gamma, beta, zeta)``:
    ``t = y + gamma; y = (t if t >= 0 else beta * t) + zeta``; with ``residual``: ``y += residual``.
    That is a BBCU V4 unit ``x + RPReLU(alpha * binconv(sign(x + shift)))`` with ``residual=x``, or a
    DnCNN-3 binary conv with ``bias``. Float operations run in this order with no FMA contraction.

    Args:
        xp: uint64 ``(H, W, Cw)`` packed input.
        wp: uint64 ``(O, 3, 3, Cw)`` packed weights.
        channels: real input channel count ``C``.
        scale: float32 ``(O,)``, the per-output-channel weight scale ``alpha``.
        bias: float32 ``(O,)`` or None.
        rprelu: ``(gamma, beta, zeta)``, each float32 ``(O,)``, or None.
        residual: float32 ``(H, W, O)`` or None.
        next_shift: float32 ``(O,)`` of the next binary layer, or None. When given, the signs of
            ``y + next_shift`` are packed too, so the next layer needs no packing pass.
        out: float32 ``(H, W, O)`` to write ``y`` into, or None for a new array. It may be the
            ``residual`` array itself (the unit's input updated in place), but no other array that
            overlaps it.
        shuffle: PyTorch's ``PixelShuffle(s)`` fused into the epilogue, so an upsampler never writes
            its low-resolution output: output channel ``r * n + c`` (``n = O / s^2``) becomes channel
            ``c`` of pixel ``(s*h + r // s, s*w + r % s)``. ``y`` and ``next_bits`` are then
            ``(sH, sW, n)`` and ``(sH, sW, channel_words(n))``, ``residual`` is ``(H, W, n)`` and is
            added to every sub-pixel (a nearest-neighbour skip), and ``out`` may not overlap it.
            Per-channel parameters, ``next_shift`` included, stay ``(O,)``.
        leaky: The slope of a LeakyReLU applied last (``y = y if y > 0 else leaky * y``, after the
            residual, before the next signs are packed), as a network applies it to a unit's output;
            None for none.
        rows: ``(begin, end)``: compute only output rows ``begin .. end - 1`` (rows of ``xp``; ``s``
            times as many under ``shuffle``), reading the rows of ``xp`` around them as their real
            neighbours rather than as padding: how a band of a larger image is computed without
            recomputing its edges. The other rows of ``y`` and ``next_bits`` are left as they were in
            ``out``, zeros in a new array. None: every row.

    Returns:
        ``(y, next_bits)``: y float32 ``(H, W, O)``; next_bits uint64 ``(H, W, channel_words(O))`` or
        None without ``next_shift`` (shapes as under ``shuffle`` when it is above 1).
    """
    gamma, beta, zeta = rprelu if rprelu is not None else (None, None, None)
    return _bitops.binary_conv3x3(
        xp, wp, channels, scale, bias, gamma, beta, zeta, residual, next_shift, out, shuffle, leaky, rows
    )


def float_conv_weight(w: np.ndarray) -> np.ndarray:
    """A PyTorch conv weight ``(O, C, 3, 3)`` in the layout ``float_conv3x3`` reads: ``(O, 9, C)``,
    float32, C-contiguous (done once, at load)."""
    out_channels, channels = w.shape[:2]
    return np.ascontiguousarray(w.reshape(out_channels, channels, 9).transpose(0, 2, 1), np.float32)


def float_conv3x3(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, rows: tuple[int, int] | None = None
) -> np.ndarray:
    """Full-precision 3x3 conv with zero padding, for convs with few output channels (a network's
    last conv), which oneDNN runs far below the FMA peak.

    Each output is one dot product over taps and input channels, vectorised over the channels in a
    fixed order (conv_float.c), so every ISA path gives the same float32 result bit for bit. It agrees
    with PyTorch's conv to float rounding, not bit for bit (the order of the sums differs).

    Args:
        x: float32 ``(H, W, C)``, C-contiguous.
        weight: float32 ``(O, 9, C)`` from ``float_conv_weight``.
        bias: float32 ``(O,)`` or None.
        rows: ``(begin, end)``: only output rows ``begin .. end - 1``, the rows of ``x`` around them
            read as real neighbours (as in ``binary_conv3x3``); the other rows are zeros. None: all.

    Returns:
        float32 ``(H, W, O)``.
    """
    return _bitops.float_conv3x3(x, weight, bias, rows)


def add_bilinear(skip: np.ndarray, scale: int, x: np.ndarray) -> None:
    """``x += bilinear_up(skip, scale)`` in place, as ``F.interpolate(mode="bilinear",
    align_corners=False, scale_factor=scale)`` computes it, in one threaded pass (the SR networks'
    global skip; PyTorch would write the upsampled image and add it in a second, strided pass).

    Args:
        skip: float32 ``(H, W, C)``, C-contiguous.
        scale: Integer upscaling factor.
        x: float32 ``(scale*H, scale*W, C)``, C-contiguous, writeable, not overlapping ``skip``.
    """
    _bitops.add_bilinear(skip, scale, x)


@cache
def build_id() -> str:
    """A digest of the compiled kernels: a speed measured against one build (the engine's cached
    per-layer path choices) is not reused by another."""
    return hashlib.sha256(Path(_bitops.__file__).read_bytes()).hexdigest()[:12]


def available_isas() -> list[str]:
    """Instruction-set paths this CPU can run, slowest first (``"portable"`` is always there)."""
    return _bitops.available_isas()


def simd_isas() -> list[str]:
    """``available_isas`` but the portable reference: the paths there are to measure."""
    return [isa for isa in available_isas() if isa != "portable"]


def set_isa(name: str) -> None:
    """Forces a path: ``"portable"``, ``"avx2"``, ``"avx512"``, ``"neon"`` or ``"auto"`` (the fastest
    available).

    Raises:
        ValueError: unknown name.
        RuntimeError: the CPU lacks the instructions of that path.
    """
    _bitops.set_isa(name)


def get_isa() -> str:
    """The path in use (the fastest available one unless ``set_isa`` chose another)."""
    return _bitops.get_isa()


def isa_label(isa: str | None = None) -> str:
    """How path ``isa`` (default: the one in use) computes a binary conv, for people: ``avx512
    popcount``, ``amx int8 tiles``."""
    isa = isa or get_isa()
    return "amx int8 tiles" if isa == "amx" else f"{isa} popcount"


@contextlib.contextmanager
def using_isa(isa: str) -> Iterator[None]:
    """Runs the block on kernel path ``isa`` (``set_isa``), then returns to the path in use before."""
    previous = get_isa()
    set_isa(isa)
    try:
        yield
    finally:
        set_isa(previous)


def set_num_threads(n: int) -> None:
    """Threads per call (default: the online CPUs); output rows are split between them."""
    _bitops.set_num_threads(n)


def get_num_threads() -> int:
    """Threads per call."""
    return _bitops.get_num_threads()


@dataclass(frozen=True)
class Ceilings:
    """What this CPU can do at most, per second, with the instructions of the kernel path in use.

    Measured by loops that run the conv's own inner-loop instructions (XOR, popcount, accumulate) and
    fp32 FMAs on L1-resident data, on ``threads`` threads at once: a kernel's MACs per second divided by
    ``binary_macs_per_s`` is its efficiency, and ``per_mac_gain`` is the most a binary MAC can gain
    over a float one here (docs/engine_kernels.md).

    Attributes:
        isa: The kernel path measured (``get_isa()``).
        threads: Threads that ran the loops together.
        binary_macs_per_s: Binary multiply-accumulates per second, all threads.
        fp32_macs_per_s: fp32 multiply-adds per second at the ISA's widest FMA, all threads.
    """

    isa: str
    threads: int
    binary_macs_per_s: float
    fp32_macs_per_s: float

    @property
    def per_mac_gain(self) -> float:
        """How many binary MACs this CPU does in the time of one fp32 MAC."""
        return self.binary_macs_per_s / self.fp32_macs_per_s


def _peak_rate(kind: str, threads: int, seconds: float) -> float:
    """MACs/s of one ceiling loop: rounds sized from a short trial to last about ``seconds``, best of 3
    (a peak is what is measured: interruptions only ever lower it)."""
    trial = 1024
    start = time.perf_counter()
    _bitops.ceiling_rate(kind, trial, 1)
    rounds = max(trial, int(trial * seconds / (time.perf_counter() - start)))
    return max(_bitops.ceiling_rate(kind, rounds, threads) for _ in range(3))


def measure_ceilings(threads: int | None = None, seconds: float = 0.03) -> Ceilings:
    """Measures the binary and fp32 ceilings of the kernel path in use (about ``6 * seconds`` of wall time).

    Args:
        threads: Threads to run the loops on at once; default ``get_num_threads()``.
        seconds: Length of each timed run.
    """
    threads = threads or get_num_threads()
    return Ceilings(
        isa=get_isa(),
        threads=threads,
        binary_macs_per_s=_peak_rate("binary", threads, seconds),
        fp32_macs_per_s=_peak_rate("fma", threads, seconds),
    )
