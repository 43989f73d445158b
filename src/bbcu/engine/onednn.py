"""Binary convolutions as exact int8 convolutions through oneDNN, and the per-layer choice of path.

A +-1 conv is an int8 conv whose values happen to be +-1, so CPUs with an int8 matrix unit (AVX-512
VNNI / AVX-VNNI ``vpdpbusd``, AMX-INT8 tiles) may run it faster than the XNOR-popcount kernels. oneDNN
(inside PyTorch: ``torch.ops.onednn.qconv_prepack`` / ``qconv2d_pointwise``) computes it exactly:

- weights: int8 +-1 (bit 1 of the ``.bbcu`` file -> +1), per-channel scale 1, prepared once at load;
- activations: uint8 ``{0, 2}`` with zero point 1 and scale 1, i.e. the real values -1 and +1; oneDNN
  pads with the zero point, so a tap outside the image is the real value 0, as in the popcount kernels;
- output: float32 ``acc * 1 * 1``, the int32 dot product itself, exact while ``|dot| <= 9C < 2**24``.
  (Without VNNI oneDNN falls back to ``vpmaddubsw``, whose int16 pair sums saturate only above 32767;
  ours are at most 4.)

The signs are packed by the kernels' own ``pack_activations`` (or taken from the previous popcount
unit's fused packing) and expanded to bytes, so both paths binarize with one rule, ``x + shift >= 0``.
The float epilogue then runs on PyTorch in the kernels' order, each step rounded separately as the C
epilogue is (no FMA): ``y = scale*dot (+ bias)``, ``t = y + gamma``, ``y = (t if t >= 0 else beta*t) +
zeta``, ``y + residual``. The result equals the popcount path's bit for bit, except that the sign of an
exact zero may differ (PyTorch's PReLU takes ``beta*t`` at ``t = +-0``, the kernel ``t``), which only
shows when ``zeta`` and the residual are zeros as well, and never changes a value or a later sign.

``PathChoices`` picks, per layer shape, input size and thread count, whichever path is faster on this
machine (each timed a few times, the minimum kept) and remembers the answer in a small JSON file.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bbcu.core.atomic import atomic_write_bytes
from bbcu.core.errors import InvalidArgumentError, OutputError
from bbcu.engine import kernels

logger = logging.getLogger(__name__)

PATHS = ("auto", "popcount", "onednn")
"""How a ``PackedModel`` runs its binary units: the faster per layer, or one path for all."""

TIMED_RUNS = 5
"""Timed runs per path when choosing (after one warm-up run): the minimum is kept, as load only slows."""

_EXACT_LIMIT = 2**24  # float32 holds every integer up to here
_MATRIX_UNITS = (("amx_int8", "AMX"), ("avx512_vnni", "VNNI"), ("avx_vnni", "VNNI"))

# Byte b of a packed word -> 8 bytes, bit i of b -> byte i as 2 (+1) or 0 (-1), read as one uint64.
_BYTES_OF = (np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little") * 2).view(
    np.uint64
)[:, 0]


def _cpu_flags_and_model() -> tuple[set[str], str]:
    """The CPU's feature flags and model name from ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return set(), platform.processor() or platform.machine()
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    stripped = {key.strip(): value.strip() for key, value in fields.items()}
    return set(stripped.get("flags", "").split()), stripped.get("model name", platform.machine())


@cache
def matrix_unit() -> str | None:
    """``"AMX"`` or ``"VNNI"``: the int8 dot-product unit oneDNN will use here; None if the CPU lacks
    both (oneDNN still runs the int8 conv, only slower) or does not say."""
    flags, _ = _cpu_flags_and_model()
    return next((unit for flag, unit in _MATRIX_UNITS if flag in flags), None)


def path_label() -> str:
    """What ``layer_paths`` says for a unit on this path, e.g. ``oneDNN int8 (VNNI)``."""
    return f"oneDNN int8 ({matrix_unit() or 'no VNNI/AMX'})"


@cache
def available() -> bool:
    """Whether this PyTorch build has oneDNN's int8 conv (x86 builds do; others may lack it)."""
    try:
        torch.ops.onednn.qconv_prepack, torch.ops.onednn.qconv2d_pointwise  # noqa: B018
    except (AttributeError, RuntimeError):
        return False
    return torch.backends.mkldnn.is_available()


@cache
def machine() -> str:
    """What a cached choice is only valid for: CPU model, the kernels' ISA and build, the int8 unit,
    PyTorch."""
    _, model = _cpu_flags_and_model()
    return (
        f"{model} | {kernels.get_isa()} {kernels.build_id()} | int8 {matrix_unit() or 'none'} | "
        f"torch {torch.__version__}"
    )


def sign_bytes(packed: np.ndarray, channels: int) -> np.ndarray:
    """The uint8 ``(H, W, C)`` activations (2 for +1, 0 for -1) of packed signs ``(H, W, Cw)``."""
    expanded = _BYTES_OF[packed.view(np.uint8)].view(np.uint8)
    return np.ascontiguousarray(expanded.reshape(*packed.shape[:2], -1)[:, :, :channels])


class Int8Conv:
    """One binary conv with its weights prepared for oneDNN (once, here), called per image.

    Args:
        bits: uint64 ``(O, 3, 3, Cw)`` sign bits of the weights (the ``.bbcu`` layout).
        channels: Real input channel count ``C``.

    Raises:
        InvalidArgumentError: If ``C`` is so large that a dot product could leave float32's exact range.
    """

    def __init__(self, bits: np.ndarray, channels: int) -> None:
        if 9 * channels >= _EXACT_LIMIT:
            raise InvalidArgumentError(
                f"{channels} channels: int8 dot products would not be exact in float32"
            )
        outputs = bits.shape[0]
        signs = np.unpackbits(bits.astype("<u8").view(np.uint8), axis=-1, bitorder="little")
        weight = signs[..., :channels].astype(np.int8) * 2 - 1  # (O, 3, 3, C)
        self.weight_scales = torch.ones(outputs)
        self.weight_zero_points = torch.zeros(outputs, dtype=torch.int64)
        # activation scale 1, zero point 1; stride, padding, dilation 1; one group
        self.weight = torch.ops.onednn.qconv_prepack(
            torch.from_numpy(weight).permute(0, 3, 1, 2), self.weight_scales,
            1.0, 1, [1, 1], [1, 1], [1, 1], 1,
        )  # fmt: skip

    def dots(self, signs: np.ndarray) -> torch.Tensor:
        """The exact dot products, float32 ``(1, O, H, W)`` channels_last, of uint8 ``(H, W, C)`` signs."""
        image = torch.from_numpy(signs).permute(2, 0, 1).unsqueeze(0)
        return torch.ops.onednn.qconv2d_pointwise(
            image, 1.0, 1, self.weight, self.weight_scales, self.weight_zero_points, None,
            [1, 1], [1, 1], [1, 1], 1, 1.0, 0, torch.float32, "none", [], "",
        )  # fmt: skip


def add_epilogue(
    dots: torch.Tensor,
    residual: np.ndarray,
    *,
    scale: np.ndarray,
    bias: np.ndarray | None,
    rprelu: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    """``residual += RPReLU(scale * dots + bias)``, in place, rounded step by step as the C epilogue.

    Args:
        dots: float32 ``(1, O, H, W)`` from ``Int8Conv.dots`` (overwritten).
        residual: float32 ``(H, W, O)``, C-contiguous: the unit's input, updated into its output.
        scale: float32 ``(O,)`` per-output weight scale ``alpha``.
        bias: float32 ``(O,)`` or None.
        rprelu: ``(gamma, beta, zeta)``, each float32 ``(O,)``.
    """

    def per_channel(values: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(values).view(1, -1, 1, 1)

    gamma, beta, zeta = rprelu
    y = dots.mul_(per_channel(scale))
    if bias is not None:
        y.add_(per_channel(bias))
    y = F.prelu(y.add_(per_channel(gamma)), torch.from_numpy(beta)).add_(per_channel(zeta))
    torch.from_numpy(residual).permute(2, 0, 1).unsqueeze(0).add_(y)


def default_cache_file() -> Path:
    """``$XDG_CACHE_HOME/bbcu/engine_paths.json`` (``~/.cache`` when unset): per-machine path choices."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "bbcu" / "engine_paths.json"


def _best_time(run: Callable[[], object]) -> float:
    """Seconds of the fastest of ``TIMED_RUNS`` runs after a warm-up (oneDNN compiles on its first)."""
    run()
    times = []
    for _ in range(TIMED_RUNS):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


class PathChoices:
    """The faster path of each binary layer on this machine, measured once and remembered on disk.

    Args:
        file: The JSON file of remembered choices (``default_cache_file()`` when None). A file that
            cannot be read or parsed is ignored with a log line (and replaced at the next choice); one
            that cannot be written only costs a log line: the choice is then measured again next time.
    """

    def __init__(self, file: Path | None = None) -> None:
        self.file = file or default_cache_file()

    def choose(self, layer: str, runs: dict[str, Callable[[], object]]) -> str:
        """The name of the fastest of ``runs`` for ``layer`` (a key saying shape, input size, threads).

        Args:
            layer: Identifies the measurement: everything besides the machine that decides the speed.
            runs: Path name -> a call running the layer once on scratch data.
        """
        key = f"{machine()} | {layer}"
        choices = self._read()
        if choices.get(key) in runs:
            return choices[key]
        times = {name: _best_time(run) for name, run in runs.items()}
        best = min(times, key=times.__getitem__)
        measured = ", ".join(f"{name} {1e3 * t:.2f} ms" for name, t in times.items())
        logger.info("engine path for %s: %s -> %s (remembered in %s)", layer, measured, best, self.file)
        self._write({**self._read(), key: best})
        return best

    def _read(self) -> dict[str, str]:
        """The remembered choices; ``{}`` for a missing file, and for a damaged one with a log line."""
        try:
            choices = json.loads(self.file.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            logger.warning("ignoring the engine path cache %s: %s", self.file, err)
            return {}
        if not isinstance(choices, dict) or not all(isinstance(v, str) for v in choices.values()):
            logger.warning("ignoring the engine path cache %s: not a JSON object of strings", self.file)
            return {}
        return choices

    def _write(self, choices: dict[str, str]) -> None:
        try:
            atomic_write_bytes(self.file, json.dumps(choices, indent=1).encode(), make_parents=True)
        except OutputError as err:
            logger.warning("engine path choice not remembered: %s", err)
