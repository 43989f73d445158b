"""Speed of the packed 1-bit engine against full-precision PyTorch on this CPU (``bbcu bench``).

Every comparison runs both sides in the same process, one after the other, with the same thread count,
and reports the median of ``repeats`` timed runs after one warm-up run. The baseline is PyTorch/oneDNN
in ``channels_last`` with no autograd, the fastest way PyTorch runs these networks on a CPU
(docs/method.md, "What makes 1-bit fast"); networks use random weights, which do not change the work
done.

A speed-up is only worth reporting for an engine that computes the right thing, so each comparison
also says how much work each side did (OPs, ``bbcu.metrics.complexity``'s units) and, where the
reference computes the same function, how far the engine's output was from the reference's.
"""

from __future__ import annotations

import logging
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import bbcu
from bbcu.engine import kernels
from bbcu.engine.runtime import pack_model, set_num_threads
from bbcu.metrics.complexity import BINARY_MACS_PER_OP, count_cost

LAYER_SIZE = (180, 320)  # H, W of the layer benchmark and of the SR inputs (the papers' 320x180)
LAYER_CHANNELS = 64
DENOISE_SIZE = (320, 480)  # a 480x320 colour image, BSD-sized

T = TypeVar("T")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Timing:
    """Median milliseconds of one measured call."""

    wall_ms: float
    cpu_ms: float


@dataclass(frozen=True)
class Comparison:
    """One line of the benchmark table.

    Wall time is what a user waits; CPU time (all threads of this process) is what the work costs, and
    stays meaningful when other processes share the cores and stretch the wall time.

    Attributes:
        name: What is measured, e.g. ``"bbcu-m x4"``.
        input: Input size as ``CxHxW``.
        engine: Median wall and CPU time of the packed engine.
        reference: What it is compared with.
        reference_time: Median wall and CPU time of the reference.
        target: The wall-time speed-up the project aims for, or None when informative only.
        engine_ops_g: OPs (G) of one engine call: binary MACs / 64 plus float MACs.
        reference_ops_g: OPs (G) of one reference call.
        mean_abs_diff: Mean absolute difference between the engine's output and the reference's when
            both compute the same function (the layer's dot products, a network's float simulation),
            else None. The mean, because the largest is no measure on large inputs: a few binarizer
            inputs fall within float rounding of 0 there, the simulation's summation order decides
            their sign, and the flip changes a patch of the output (up to 0.1 in BBCU-M x4 at 320x180,
            mean 5e-5); a wrong engine is off everywhere.
    """

    name: str
    input: str
    engine: Timing
    reference: str
    reference_time: Timing
    target: float | None
    engine_ops_g: float
    reference_ops_g: float
    mean_abs_diff: float | None

    @property
    def speedup(self) -> float:
        """Wall-time speed-up of the engine over the reference."""
        return self.reference_time.wall_ms / self.engine.wall_ms

    @property
    def cpu_speedup(self) -> float:
        """CPU-time speed-up of the engine over the reference."""
        return self.reference_time.cpu_ms / self.engine.cpu_ms

    def as_dict(self) -> dict[str, object]:
        met = None if self.target is None else self.speedup >= self.target
        return {**asdict(self), "speedup": self.speedup, "cpu_speedup": self.cpu_speedup, "met": met}


def median_time(run: Callable[[], T], repeats: int) -> tuple[Timing, T]:
    """Median wall and CPU time of ``run`` over ``repeats`` calls after one untimed warm-up call, and
    what the warm-up call returned (every call computes the same), for checking."""
    result = run()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return Timing(statistics.median(walls) * 1e3, statistics.median(cpus) * 1e3), result


def _channels_last(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model in eval mode and channels_last, called without autograd."""
    model = model.eval().to(memory_format=torch.channels_last)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(x)

    return run


def moved_off_init(model: nn.Module) -> nn.Module:
    """``model`` with every parameter moved off its initial value by seeded noise, in place.

    At init the binarizers' shifts and RPReLU's offsets are 0, so many binarizer inputs (ReLU's zeros)
    sit exactly on 0, where the float simulation's rounding rather than the network decides the sign
    and its output is no yardstick for the engine's; trained networks do not sit there.
    """
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    return model


def _signs(values: np.ndarray) -> np.ndarray:
    """+1 where ``values >= 0`` else -1, float32 (the engine's sign(0) = +1)."""
    return np.where(values >= 0, np.float32(1), np.float32(-1))


def bench_layer(repeats: int, size: tuple[int, int] = LAYER_SIZE) -> list[Comparison]:
    """One 64 -> 64 binary 3x3 conv with its whole BBCU epilogue fused vs the same float conv.

    The float conv convolves the +-1 values the binary conv packs (a dense conv costs the same whatever
    its values), so its output is the binary conv's exact dot products, and the engine's output is
    checked against the V4 epilogue (alpha, RPReLU, residual) applied to them.
    """
    height, width, channels = *size, LAYER_CHANNELS
    rng = np.random.default_rng(0)
    x = rng.standard_normal((height, width, channels), dtype=np.float32)
    alpha, gamma, beta, zeta, shift = (rng.standard_normal(channels, dtype=np.float32) for _ in range(5))
    w = rng.standard_normal((channels, channels, 3, 3), dtype=np.float32)
    packed_x, packed_w = kernels.pack_activations(x, shift), kernels.pack_weights(w)

    def binary() -> np.ndarray:
        y, _ = kernels.binary_conv3x3(
            packed_x,
            packed_w,
            channels,
            scale=alpha,
            rprelu=(gamma, beta, zeta),
            residual=x,
            next_shift=shift,
        )
        return y

    x_t = torch.from_numpy(_signs(x + shift)).permute(2, 0, 1).unsqueeze(0)  # channels_last view
    w_t = torch.from_numpy(_signs(w)).contiguous(memory_format=torch.channels_last)

    def full_precision() -> np.ndarray:
        with torch.no_grad():
            return F.conv2d(x_t, w_t, padding=1)[0].permute(1, 2, 0).numpy()

    engine, y = median_time(binary, repeats)
    reference, dot = median_time(full_precision, repeats)
    t = alpha * dot + gamma
    expected = np.where(t >= 0, t, beta * t) + zeta + x
    macs = height * width * channels * channels * 9
    return [
        Comparison(
            name=f"binary conv {channels}->{channels} + fused epilogue",
            input=f"{channels}x{height}x{width}",
            engine=engine,
            reference=f"float conv {channels}->{channels} (oneDNN)",
            reference_time=reference,
            target=15.0,
            engine_ops_g=macs / BINARY_MACS_PER_OP / 1e9,
            reference_ops_g=macs / 1e9,
            mean_abs_diff=float(np.abs(y - expected).mean()),
        )
    ]


def bench_network(
    name: str,
    reference_name: str,
    size: tuple[int, int],
    repeats: int,
    target: float | None,
    **kwargs: object,
) -> list[Comparison]:
    """A packed network vs its full-precision reference and vs its own PyTorch float simulation."""
    torch.manual_seed(0)
    simulated = moved_off_init(bbcu.create_model(name, **kwargs))
    x = torch.rand(1, simulated.in_channels, *size).contiguous(memory_format=torch.channels_last)
    packed = pack_model(simulated)
    engine, output = median_time(lambda: packed(x), repeats)
    label = f"{name} x{simulated.scale}" if simulated.scale > 1 else name
    shape = f"{simulated.in_channels}x{size[0]}x{size[1]}"
    references = (
        (f"{reference_name} (PyTorch float)", bbcu.create_model(reference_name, **kwargs), target),
        (f"{name} simulated (PyTorch float)", simulated, None),
    )
    comparisons = []
    for reference_label, reference, reference_target in references:
        run = _channels_last(reference)
        timing, expected = median_time(lambda run=run: run(x), repeats)
        comparisons.append(
            Comparison(
                name=label,
                input=shape,
                engine=engine,
                reference=reference_label,
                reference_time=timing,
                target=reference_target,
                engine_ops_g=count_cost(simulated, size[::-1]).ops_g,
                reference_ops_g=count_cost(reference, size[::-1]).ops_g,
                mean_abs_diff=(output - expected).abs().mean().item() if reference is simulated else None,
            )
        )
    return comparisons


def run_benchmarks(repeats: int = 5, threads: int | None = None) -> dict[str, object]:
    """Every comparison of the engine's speed targets, plus what was measured on.

    Args:
        repeats: Timed runs per measurement (the median is kept).
        threads: Threads for both PyTorch and the kernels; default all the cores PyTorch sees.

    Returns:
        ``{"machine": ..., "threads": ..., "isa": ..., "repeats": ..., "comparisons": [...]}``.
    """
    threads = threads or torch.get_num_threads()
    set_num_threads(threads)
    cases: dict[str, Callable[[], list[Comparison]]] = {
        "one binary layer": lambda: bench_layer(repeats),
        "bbcu-m x4": lambda: bench_network("bbcu-m", "srresnet", LAYER_SIZE, repeats, 8.0, scale=4),
        "bbcu-l x4": lambda: bench_network("bbcu-l", "srresnet", LAYER_SIZE, repeats, None, scale=4),
        "dncnn-bbcu": lambda: bench_network("dncnn-bbcu", "dncnn", DENOISE_SIZE, repeats, 5.0),
    }
    load_before = os.getloadavg()[0]
    comparisons = []
    for number, (label, case) in enumerate(cases.items(), start=1):
        logger.info("timing %s (%d of %d)", label, number, len(cases))
        comparisons += case()
    return {
        "machine": machine_description(),
        "threads": threads,
        "isa": kernels.get_isa(),
        "repeats": repeats,
        "torch": torch.__version__,
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "comparisons": [row.as_dict() for row in comparisons],
    }


def machine_description() -> str:
    """The CPU model name and logical core count."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        lines = cpuinfo.read_text().splitlines()
        names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
        model = names[0] if names else model
    return f"{model}, {os.cpu_count()} logical cores"


def format_table(result: dict[str, object]) -> str:
    """A Markdown table of the comparisons, headed by what they ran on."""
    before, after = result["load_average"]
    lines = [
        f"machine: {result['machine']}; threads: {result['threads']}; kernel ISA: {result['isa']}; "
        f"median of {result['repeats']} runs after 1 warm-up; torch {result['torch']}; "
        f"1-min load average {before} at start, {after} at end",
        "",
        "| measured | input | engine wall / CPU ms | reference | reference wall / CPU ms "
        "| speed-up wall | speed-up CPU | target (wall) | OPs (G) engine / reference | mean abs diff |",
        "|---|---|---:|---|---:|---:|---:|---|---:|---:|",
    ]
    for row in result["comparisons"]:
        engine, reference = row["engine"], row["reference_time"]
        target = "-" if row["target"] is None else f"{row['target']:g}x ({'met' if row['met'] else 'missed'})"
        diff = "-" if row["mean_abs_diff"] is None else f"{row['mean_abs_diff']:.1e}"
        lines.append(
            f"| {row['name']} | {row['input']} | {engine['wall_ms']:.1f} / {engine['cpu_ms']:.1f} "
            f"| {row['reference']} | {reference['wall_ms']:.1f} / {reference['cpu_ms']:.1f} "
            f"| {row['speedup']:.2f}x | {row['cpu_speedup']:.2f}x | {target} "
            f"| {row['engine_ops_g']:.3g} / {row['reference_ops_g']:.3g} | {diff} |"
        )
    return "\n".join(lines)
