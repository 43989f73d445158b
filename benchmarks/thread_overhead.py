"""What a call pays for threads: one 64->64 binary conv (full V4 epilogue) on small inputs, 1 and 2 threads.

Below some size a layer is cheaper than starting threads for it; the band runner (threads.c) keeps a
pool so that a call costs a wake-up rather than a thread creation. Prints the fastest of many calls.

Usage: .venv/bin/python benchmarks/thread_overhead.py [--calls 300]
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable

import numpy as np

from bbcu.engine import kernels


def fastest_us(call: Callable[[], object], calls: int) -> float:
    """The fastest of ``calls`` runs, in microseconds."""
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    weights = kernels.pack_weights(np.sign(rng.standard_normal((64, 64, 3, 3))).astype(np.float32))
    ones, zeros = np.ones(64, np.float32), np.zeros(64, np.float32)
    print(f"isa {kernels.get_isa()}; fastest of {args.calls} calls")
    print("| input | 1 thread (us) | 2 threads (us) |\n|---|---:|---:|")
    for side in (24, 48, 96):
        x = rng.standard_normal((side, side, 64)).astype(np.float32)
        bits = kernels.pack_activations(x, zeros)
        epilogue = {"scale": ones, "rprelu": (zeros, ones, zeros), "residual": x, "next_shift": zeros}
        call = functools.partial(kernels.binary_conv3x3, bits, weights, 64, **epilogue)
        times = []
        for threads in (1, 2):
            kernels.set_num_threads(threads)
            times.append(fastest_us(call, args.calls))
        print(f"| {side}x{side} | {times[0]:.1f} | {times[1]:.1f} |")


if __name__ == "__main__":
    main()
