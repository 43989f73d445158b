"""Whether the fused unit waits on memory: its share of the binary ceiling at sizes from L2-resident up.

The fused V4 unit at 320x180 reads and writes 14.7 MB of float features per call (in place), more
than the L2 of any core measured here. If that traffic held it back, feature maps that stay in L2
(a few rows, or a small image, called over and over) would run at a clearly larger share of the
ceiling, and running consecutive units band by band (features kept in cache between them) would pay.
For each size the unit is called on the same features in place, enough times for about twenty
320x180 layers of work, fastest of five such runs, against the best of three ceiling readings taken
just before.

Usage: .venv/bin/python benchmarks/unit_cache_residency.py [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import bbcu
from bbcu.engine import kernels
from bbcu.engine.runtime import _BinaryUnit, cache_line_aligned, pack_model, set_num_threads
from bbcu.report.bench import moved_off_init

SIZES = ((180, 320), (64, 320), (24, 320), (16, 128))
CHANNELS = 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    set_num_threads(args.threads)
    torch.manual_seed(0)
    steps = pack_model(moved_off_init(bbcu.create_model("bbcu-m", scale=4)), "popcount").steps
    unit = [step for step in steps if isinstance(step, _BinaryUnit)][5]
    rng = np.random.default_rng(0)
    ceiling = max(kernels.measure_ceilings(args.threads).binary_macs_per_s for _ in range(3))
    print(f"{kernels.get_isa()}, threads {args.threads}, ceiling {ceiling / 1e9:.0f} G MAC/s")
    print("| input | features MB | ms per call | share of the ceiling |\n|---|---:|---:|---:|")
    for height, width in SIZES:
        features = cache_line_aligned((height, width, CHANNELS))
        features[...] = rng.standard_normal(features.shape, np.float32) * 0.1
        signs = kernels.pack_activations(features, unit.shift)
        calls = max(3, 20 * 180 * 320 // (height * width))
        fastest = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(calls):
                kernels.binary_conv3x3(
                    signs, unit.bits, CHANNELS, residual=features, out=features, **unit.epilogue
                )
            fastest = min(fastest, (time.perf_counter() - start) / calls)
        macs = height * width * CHANNELS * CHANNELS * 9
        print(
            f"| {width}x{height} | {features.nbytes / 1e6:.2f} | {fastest * 1e3:.3f} "
            f"| {macs / fastest / ceiling:.0%} |"
        )


if __name__ == "__main__":
    main()
