"""The 64->64 binary 3x3 conv against this core's measured ceiling, per ISA path and size.

For each available path (portable excluded: it is the reference, not a speed path) it measures the
path's binary ceiling (`kernels.measure_ceilings`, best of three), then times the raw kernel (exact
dot products only) and the fused V4 unit (alpha, RPReLU, residual in place, next-layer sign packing),
minimum of many calls, at 320x180, 640x360 and 1280x720, and prints each as a share of the ceiling.
Minimum, not median: on a shared host interruptions only ever add time.

Usage: .venv/bin/python benchmarks/kernel_efficiency.py [--threads 1] [--calls 40]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from simd_paths import simd_paths

from bbcu.engine import kernels

CHANNELS = 64
SIZES = ((180, 320), (360, 640), (720, 1280))


def fastest(call: Callable[[], object], calls: int) -> float:
    """Seconds of the fastest of ``calls`` calls, after one warm-up call."""
    call()
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def measure(height: int, width: int, calls: int) -> tuple[float, float]:
    """Seconds of the raw and the fused kernel on one random layer of this size."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((height, width, CHANNELS), dtype=np.float32)
    shift, alpha, gamma, beta, zeta = (rng.standard_normal(CHANNELS, dtype=np.float32) for _ in range(5))
    packed_x = kernels.pack_activations(x, shift)
    packed_w = kernels.pack_weights(rng.standard_normal((CHANNELS, CHANNELS, 3, 3), dtype=np.float32))
    raw = fastest(lambda: kernels.binary_conv3x3_raw(packed_x, packed_w, CHANNELS), calls)
    fused = fastest(
        lambda: kernels.binary_conv3x3(
            packed_x, packed_w, CHANNELS, scale=alpha, rprelu=(gamma, beta, zeta), residual=x, out=x,
            next_shift=shift,
        ),
        calls,
    )  # fmt: skip
    return raw, fused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calls", type=int, default=40)
    args = parser.parse_args()
    kernels.set_num_threads(args.threads)
    print(f"threads {args.threads}; fastest of {args.calls} calls; share of the path's binary ceiling")
    print("| path | ceiling (G MAC/s) | input | raw ms | raw | fused ms | fused |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for isa, ceiling in simd_paths(args.threads, "binary_macs_per_s"):
        for height, width in SIZES:
            calls = args.calls if height * width <= 60000 else max(5, args.calls // 4)
            raw, fused = measure(height, width, calls)
            macs = height * width * CHANNELS * CHANNELS * 9
            raw_share, fused_share = macs / raw / ceiling, macs / fused / ceiling
            shares = f"{raw * 1e3:.2f} | {raw_share:.0%} | {fused * 1e3:.2f} | {fused_share:.0%}"
            print(f"| {isa} | {ceiling / 1e9:.0f} | {width}x{height} | {shares} |")


if __name__ == "__main__":
    main()
