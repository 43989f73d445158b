"""Speed of the packed 1-bit engine against full-precision PyTorch on this CPU (``bbcu bench``).

Every comparison runs both sides in the same process, one after the other, with the same thread count,
and reports the median of ``repeats`` timed runs after one warm-up run. The baseline is PyTorch/oneDNN
in ``channels_last`` with no autograd, the fastest way PyTorch runs these networks on a CPU (DESIGN.md
section 5); networks use random weights, which do not change the work done.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

import bbcu
from bbcu.engine import kernels
from bbcu.engine.runtime import pack_model, set_num_threads

LAYER_SIZE = (180, 320)  # H, W of the layer benchmark and of the SR inputs (the papers' 320x180)
DENOISE_SIZE = (320, 480)  # a 480x320 colour image, BSD-sized


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
    """

    name: str
    input: str
    engine: Timing
    reference: str
    reference_time: Timing
    target: float | None

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


def median_time(run: Callable[[], object], repeats: int) -> Timing:
    """Median wall and CPU time of ``run`` over ``repeats`` calls, after one untimed warm-up call."""
    run()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return Timing(statistics.median(walls) * 1e3, statistics.median(cpus) * 1e3)


def _channels_last(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model in eval mode and channels_last, called without autograd."""
    model = model.eval().to(memory_format=torch.channels_last)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(x)

    return run


def bench_layer(repeats: int) -> list[Comparison]:
    """One 64 -> 64 binary 3x3 conv with its whole BBCU epilogue fused vs the same float conv."""
    height, width = LAYER_SIZE
    rng = np.random.default_rng(0)
    x = rng.standard_normal((height, width, 64), dtype=np.float32)
    per_channel = [rng.standard_normal(64, dtype=np.float32) for _ in range(5)]
    scale, gamma, beta, zeta, shift = per_channel
    packed_x = kernels.pack_activations(x, shift)
    packed_w = kernels.pack_weights(rng.standard_normal((64, 64, 3, 3), dtype=np.float32))

    def binary() -> None:
        kernels.binary_conv3x3(
            packed_x, packed_w, 64, scale=scale, rprelu=(gamma, beta, zeta), residual=x, next_shift=shift
        )

    x_t = torch.from_numpy(x).permute(2, 0, 1).unsqueeze(0)  # channels_last view
    w_t = torch.randn(64, 64, 3, 3).contiguous(memory_format=torch.channels_last)

    def full_precision() -> None:
        with torch.no_grad():
            F.conv2d(x_t, w_t, padding=1)

    return [
        Comparison(
            "binary conv 64->64 + fused epilogue",
            f"64x{height}x{width}",
            median_time(binary, repeats),
            "float conv 64->64 (oneDNN)",
            median_time(full_precision, repeats),
            15.0,
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
    simulated = bbcu.create_model(name, **kwargs)
    x = torch.rand(1, simulated.in_channels, *size).contiguous(memory_format=torch.channels_last)
    packed = pack_model(simulated)
    engine = median_time(lambda: packed(x), repeats)
    label = f"{name} x{simulated.scale}" if simulated.scale > 1 else name
    shape = f"{simulated.in_channels}x{size[0]}x{size[1]}"
    references = (
        (f"{reference_name} (PyTorch float)", bbcu.create_model(reference_name, **kwargs), target),
        (f"{name} simulated (PyTorch float)", simulated, None),
    )
    comparisons = []
    for reference_label, reference, reference_target in references:
        run = _channels_last(reference)
        timing = median_time(lambda run=run: run(x), repeats)
        comparisons.append(Comparison(label, shape, engine, reference_label, timing, reference_target))
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
    cases: list[Callable[[], list[Comparison]]] = [
        lambda: bench_layer(repeats),
        lambda: bench_network("bbcu-m", "srresnet", LAYER_SIZE, repeats, 8.0, scale=4),
        lambda: bench_network("bbcu-l", "srresnet", LAYER_SIZE, repeats, None, scale=4),
        lambda: bench_network("dncnn-bbcu", "dncnn", DENOISE_SIZE, repeats, 5.0),
    ]
    load_before = os.getloadavg()[0]
    comparisons = [row for case in tqdm(cases, desc="bench", unit="case") for row in case()]
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
        "| speed-up wall | speed-up CPU | target (wall) |",
        "|---|---|---:|---|---:|---:|---:|---|",
    ]
    for row in result["comparisons"]:
        engine, reference = row["engine"], row["reference_time"]
        target = "-" if row["target"] is None else f"{row['target']:g}x ({'met' if row['met'] else 'missed'})"
        lines.append(
            f"| {row['name']} | {row['input']} | {engine['wall_ms']:.1f} / {engine['cpu_ms']:.1f} "
            f"| {row['reference']} | {reference['wall_ms']:.1f} / {reference['cpu_ms']:.1f} "
            f"| {row['speedup']:.2f}x | {row['cpu_speedup']:.2f}x | {target} |"
        )
    return "\n".join(lines)
