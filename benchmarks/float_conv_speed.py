"""The few-output float conv (64 -> 3, a network's last conv) against this core's fp32 FMA ceiling.

For each available path (portable excluded: it is the reference, not a speed path) it measures the
path's fp32 ceiling (`kernels.measure_ceilings(threads).fp32_macs_per_s`, best of three), then times
`kernels.float_conv3x3` on random data, minimum of many calls, at one BBCU-M x4 band (36 rows x 1280),
the whole 1280x720 map and 320x180, and prints G FMA/s and the share of the ceiling. Minimum, not
median: on a shared host interruptions only ever add time.

NumPy's large arrays start 16 bytes past a 64-byte boundary, so every 64-byte vector load of the input
spans two cache lines; ``--align-input`` times the same input copied to a 64-byte boundary instead.

Usage: .venv/bin/python benchmarks/float_conv_speed.py [--threads 1] [--calls 20] [--out-channels 3]
    [--align-input]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from simd_paths import simd_paths

from bbcu.engine import kernels

CHANNELS = 64
SIZES = ((36, 1280), (720, 1280), (180, 320))


def aligned_copy(a: np.ndarray) -> np.ndarray:
    """``a`` copied to memory that starts on a 64-byte boundary."""
    raw = np.empty(a.nbytes + 64, np.uint8)
    start = -raw.ctypes.data % 64
    out = raw[start : start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def fastest_conv(height: int, width: int, out_channels: int, calls: int, align: bool) -> float:
    """Seconds of the fastest of ``calls`` float convs of this size, after one warm-up call."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((height, width, CHANNELS), dtype=np.float32)
    x = aligned_copy(x) if align else x
    weight = kernels.float_conv_weight(rng.standard_normal((out_channels, CHANNELS, 3, 3), dtype=np.float32))
    bias = rng.standard_normal(out_channels, dtype=np.float32)
    kernels.float_conv3x3(x, weight, bias)
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        kernels.float_conv3x3(x, weight, bias)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--out-channels", type=int, default=3)
    parser.add_argument("--align-input", action="store_true")
    args = parser.parse_args()
    kernels.set_num_threads(args.threads)
    alignment = "64-byte aligned" if args.align_input else "NumPy's"
    print(f"threads {args.threads}; {CHANNELS} -> {args.out_channels} channels; {alignment} input")
    print("| path | fp32 ceiling (G FMA/s) | input | ms | G FMA/s | share of ceiling |")
    print("|---|---:|---|---:|---:|---:|")
    for isa, ceiling in simd_paths(args.threads, "fp32_macs_per_s"):
        for height, width in SIZES:
            calls = args.calls if height * width <= 60000 else max(3, args.calls // 4)
            seconds = fastest_conv(height, width, args.out_channels, calls, args.align_input)
            rate = height * width * CHANNELS * 9 * args.out_channels / seconds
            share = f"{rate / 1e9:.1f} | {rate / ceiling:.0%}"
            print(f"| {isa} | {ceiling / 1e9:.0f} | {width}x{height} | {seconds * 1e3:.2f} | {share} |")


if __name__ == "__main__":
    main()
