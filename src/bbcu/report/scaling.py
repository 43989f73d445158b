"""How the packed engine's time grows with input size and threads (``bbcu bench --scaling``).

A convolution engine should cost time in proportion to pixels, with no fixed cost that makes small
inputs pay for large-input machinery (thread start-up, buffer setup). The sweep times the fused 64->64
binary layer from 64x64 to 1920x1080 and the packed BBCU-M x4 from a 64x64 to a 480x270 input (a
1920x1080 output), at 1, 2 and all threads, and fits ``time = overhead + pixels * per_pixel`` per case
and thread count: R^2 says how linear it is, the intercept how much a call costs regardless of size,
and the spread of time per pixel over the sizes how far from proportional the small sizes are.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
from tqdm import tqdm

import bbcu
from bbcu.engine.runtime import pack_model, set_num_threads
from bbcu.report.bench import LayerProblem, machine_description, moved_off_init
from bbcu.report.pictures import save_figure
from bbcu.report.timing import median_time

LAYER_SIZES = ((64, 64), (180, 320), (360, 640), (720, 1280), (1080, 1920))
"""(H, W) of the 64->64 layer's input."""
NETWORK_SIZES = ((64, 64), (90, 160), (180, 320), (270, 480))
"""(H, W) of BBCU-M x4's input: the last one gives a 1920x1080 output."""
TINY_SIZES = ((8, 8), (16, 16), (24, 32))
"""``--tiny``: a smoke run of the whole sweep."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScalingPoint:
    """One timed call: which case, threads, input size, median wall and CPU milliseconds."""

    case: str
    threads: int
    height: int
    width: int
    wall_ms: float
    cpu_ms: float

    @property
    def pixels(self) -> int:
        return self.height * self.width


@dataclass(frozen=True)
class LinearFit:
    """``time = intercept + slope * pixels``, fitted by least squares.

    Attributes:
        intercept_ms: Time at zero pixels: the per-call overhead.
        ms_per_megapixel: Slope.
        r_squared: Coefficient of determination (1 = exactly linear).
        per_pixel_spread: Largest over smallest time per pixel across the sizes (1 = proportional).
    """

    intercept_ms: float
    ms_per_megapixel: float
    r_squared: float
    per_pixel_spread: float


def linear_fit(pixels: Sequence[float], times_ms: Sequence[float]) -> LinearFit:
    """Least-squares line through (pixels, time) and how well it fits.

    Raises:
        ValueError: With fewer than two distinct sizes (no line is determined).
    """
    x, y = np.asarray(pixels, dtype=np.float64), np.asarray(times_ms, dtype=np.float64)
    if len(set(x.tolist())) < 2:
        raise ValueError("a linear fit needs at least two distinct sizes")
    slope, intercept = np.polyfit(x, y, 1)
    residual = float(np.sum((y - (intercept + slope * x)) ** 2))
    total = float(np.sum((y - y.mean()) ** 2))
    per_pixel = y / x
    return LinearFit(
        intercept_ms=float(intercept),
        ms_per_megapixel=float(slope * 1e6),
        r_squared=1.0 - residual / total if total else 1.0,
        per_pixel_spread=float(per_pixel.max() / per_pixel.min()),
    )


def thread_counts() -> list[int]:
    """1, 2 and all cores, without repeats (a 2-core machine sweeps 1 and 2)."""
    cores = os.cpu_count() or 1
    return sorted({n for n in (1, 2, cores) if n <= cores})


def _layer_call(size: tuple[int, int]) -> Callable[[], object]:
    return LayerProblem(size).unit  # in place, as the bench's layer row times it


def _network_call(size: tuple[int, int]) -> Callable[[], object]:
    torch.manual_seed(0)
    packed = pack_model(moved_off_init(bbcu.create_model("bbcu-m", scale=4)))
    x = torch.rand(1, 3, *size).contiguous(memory_format=torch.channels_last)
    return lambda: packed(x)


CASES: dict[str, tuple[Callable[[tuple[int, int]], Callable[[], object]], tuple[tuple[int, int], ...]]] = {
    "binary conv 64->64 + fused epilogue": (_layer_call, LAYER_SIZES),
    "bbcu-m x4 (packed)": (_network_call, NETWORK_SIZES),
}


def run_scaling(repeats: int = 3, *, tiny: bool = False) -> dict[str, object]:
    """Time every case at every size and thread count, and fit each (case, threads) line.

    Args:
        repeats: Timed runs per measurement (the median is kept).
        tiny: Use ``TINY_SIZES`` for every case (a smoke run, not a measurement).

    Returns:
        ``{"machine", "repeats", "points": [...], "fits": [{"case", "threads", **LinearFit}]}``.
    """
    before = torch.get_num_threads()
    jobs = [
        (case, threads, size)
        for case, (_, sizes) in CASES.items()
        for threads in thread_counts()
        for size in (TINY_SIZES if tiny else sizes)
    ]
    points = []
    try:
        for case, threads, size in tqdm(jobs, desc="scaling", unit="run", leave=False):
            set_num_threads(threads)
            timing, _ = median_time(CASES[case][0](size), repeats)
            points.append(ScalingPoint(case, threads, *size, timing.wall_ms, timing.cpu_ms))
    finally:
        set_num_threads(before)
    return {
        "machine": machine_description(),
        "repeats": repeats,
        "points": [{**asdict(p), "pixels": p.pixels} for p in points],
        "fits": fits(points),
    }


def fits(points: Sequence[ScalingPoint]) -> list[dict[str, object]]:
    """The linear fit of each (case, threads) series, and the small-input cost of threads: the smallest
    input's time with these threads over its time with one (above 1: threads cost more than they save)."""
    groups: dict[tuple[str, int], list[ScalingPoint]] = {}
    for point in points:
        groups.setdefault((point.case, point.threads), []).append(point)
    rows = []
    for (case, threads), series in groups.items():
        fit = linear_fit([p.pixels for p in series], [p.wall_ms for p in series])
        smallest = min(series, key=lambda p: p.pixels)
        single = {p.pixels: p for p in groups.get((case, 1), series)}.get(smallest.pixels, smallest)
        rows.append(
            {
                "case": case,
                "threads": threads,
                **asdict(fit),
                "smallest": f"{smallest.width}x{smallest.height}",
                "smallest_vs_one_thread": smallest.wall_ms / single.wall_ms,
            }
        )
    return rows


def format_scaling(result: dict[str, object]) -> str:
    """The sweep's times as a table, then the fits with their overhead figures."""
    lines = [
        f"machine: {result['machine']}; median of {result['repeats']} runs after 1 warm-up; wall ms",
        "",
        "| case | threads | input (WxH) | pixels | wall / CPU ms | ms per megapixel |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for p in result["points"]:
        lines.append(
            f"| {p['case']} | {p['threads']} | {p['width']}x{p['height']} | {p['pixels']} "
            f"| {p['wall_ms']:.2f} / {p['cpu_ms']:.2f} | {p['wall_ms'] / p['pixels'] * 1e6:.1f} |"
        )
    lines += [
        "",
        "Linear fit time = overhead + pixels x slope, per case and threads; spread = largest / smallest time "
        "per pixel; small input = the smallest input's time with these threads / with 1 thread:",
        "",
        "| case | threads | overhead (ms) | ms per megapixel | R^2 | per-pixel spread "
        "| small input vs 1 thread |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for f in result["fits"]:
        lines.append(
            f"| {f['case']} | {f['threads']} | {f['intercept_ms']:.2f} | {f['ms_per_megapixel']:.1f} "
            f"| {f['r_squared']:.4f} | {f['per_pixel_spread']:.2f}x | {f['smallest_vs_one_thread']:.2f}x "
            f"({f['smallest']}) |"
        )
    return "\n".join(lines)


def draw_scaling_chart(result: dict[str, object]) -> Figure:
    """Wall time against pixels (log-log), one panel per case, a line per thread count with its fit."""
    cases = list(dict.fromkeys(p["case"] for p in result["points"]))
    figure = Figure(figsize=(6 * len(cases), 4.5), layout="constrained")
    fitted = {(f["case"], f["threads"]): f for f in result["fits"]}
    for axes, case in zip(np.atleast_1d(figure.subplots(1, len(cases))), cases, strict=True):
        for threads in sorted({p["threads"] for p in result["points"] if p["case"] == case}):
            series = [p for p in result["points"] if p["case"] == case and p["threads"] == threads]
            pixels = np.array([p["pixels"] for p in series], dtype=np.float64)
            fit = fitted[case, threads]
            dots = axes.plot(pixels, [p["wall_ms"] for p in series], "o", label=f"{threads} thread(s)")
            line = np.geomspace(pixels.min(), pixels.max(), 50)
            axes.plot(
                line,
                fit["intercept_ms"] + fit["ms_per_megapixel"] * line / 1e6,
                "-",
                color=dots[0].get_color(),
                alpha=0.6,
                label=f"fit, R^2 {fit['r_squared']:.3f}",
            )
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xlabel("input pixels (log scale)")
        axes.set_ylabel("wall ms (log scale)")
        axes.set_title(case)
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(loc="best", fontsize=8)
    return figure


def save_scaling_plot(result: dict[str, object], path: str | os.PathLike[str]) -> None:
    """Draw ``draw_scaling_chart`` to a PNG file, atomically."""
    save_figure(draw_scaling_chart(result), path)
