"""What a fresh output array costs a big kernel call: BBCU-M x4's first upsampler (64 -> 256 channels
at 320x180, PixelShuffle fused, a 59 MB 640x360x64 output) writing into a new array each call, against
writing into one kept across calls (as ``runtime.reused_buffer`` does since session 7).

A new array's pages are faulted in and zeroed by the kernel on first touch, on every call. Three rounds,
each timing both variants (fastest of 10 calls after one warm-up)::

    .venv/bin/python benchmarks/fresh_output_cost.py [--threads 2]
"""

from __future__ import annotations

import argparse

import numpy as np
from kernel_efficiency import fastest

from bbcu.engine import kernels

HEIGHT, WIDTH, CHANNELS, SCALE = 180, 320, 64, 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    kernels.set_num_threads(args.threads)
    rng = np.random.default_rng(0)

    def floats(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    outputs = SCALE**2 * CHANNELS
    x = floats(HEIGHT, WIDTH, CHANNELS)
    packed = kernels.pack_activations(x, 0.1 * floats(CHANNELS))
    bits = kernels.pack_weights(floats(outputs, CHANNELS, 3, 3))
    epilogue = {
        "scale": floats(outputs),
        "bias": None,
        "rprelu": (floats(outputs), floats(outputs), floats(outputs)),
        "next_shift": 0.1 * floats(outputs),
    }
    kept = np.empty((SCALE * HEIGHT, SCALE * WIDTH, CHANNELS), np.float32)

    def upsample(out: np.ndarray | None) -> None:
        kernels.binary_conv3x3(packed, bits, CHANNELS, residual=x, out=out, shuffle=SCALE, **epilogue)

    variants = {"fresh output": lambda: upsample(None), "kept output": lambda: upsample(kept)}
    macs = HEIGHT * WIDTH * outputs * CHANNELS * 9
    print(f"x2 upsampler 64 -> 256 at {WIDTH}x{HEIGHT}, {args.threads} thread(s), fastest of 10 calls")
    for round_ in range(1, 4):
        for name, call in variants.items():
            seconds = fastest(call, 10)
            rate = macs / seconds / 1e9
            print(f"round {round_}, {name}: {1e3 * seconds:.2f} ms, {rate:.0f} G binary MAC/s")


if __name__ == "__main__":
    main()
