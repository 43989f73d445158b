"""Whether the fused unit waits on memory: its share of the binary ceiling at sizes from L2-resident up.

The fused V4 unit at 320x180 reads and writes 14.7 MB of float features per call (in place), more
than the L2 of any core measured here. If that traffic held it back, feature maps that stay in L2
(a few rows, or a small image, called over and over) would run at a clearly larger share of the
ceiling, and running consecutive units band by band (features kept in cache between them) would pay.
Each size's calls (enough for about twenty 320x180 layers of work, on the same features in place) are
timed in turns with a ceiling reading right after them, every round, and each size's share is the
median over the rounds of its time against the reading of its own round (as ``bbcu bench`` does): a
ceiling read once, before, put one size at 112 % and the same size at 61 % in the next run here.

Usage: .venv/bin/python benchmarks/unit_cache_residency.py [--threads 1] [--rounds 9]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import bbcu
from bbcu.engine import kernels
from bbcu.engine.runtime import _BinaryUnit, cache_line_aligned, pack_model, set_num_threads
from bbcu.report.bench import moved_off_init
from bbcu.report.crossover import efficiency_in_rounds
from bbcu.report.timing import Turns

SIZES = ((180, 320), (64, 320), (24, 320), (16, 128))
CHANNELS = 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    set_num_threads(args.threads)
    torch.manual_seed(0)
    steps = pack_model(moved_off_init(bbcu.create_model("bbcu-m", scale=4)), "popcount").steps
    unit = [step for step in steps if isinstance(step, _BinaryUnit)][5]
    rng = np.random.default_rng(0)
    turns, rows = Turns(), []
    for height, width in SIZES:
        features = cache_line_aligned((height, width, CHANNELS))
        features[...] = rng.standard_normal(features.shape, np.float32) * 0.1
        signs = kernels.pack_activations(features, unit.shift)
        calls = max(3, 20 * 180 * 320 // (height * width))

        def layers(signs: np.ndarray = signs, features: np.ndarray = features, calls: int = calls) -> None:
            for _ in range(calls):
                kernels.binary_conv3x3(
                    signs, unit.bits, CHANNELS, residual=features, out=features, **unit.epilogue
                )

        timed, _ = turns.add(layers)
        ceiling, _ = turns.add(lambda: kernels.measure_ceilings(args.threads), keep_results=True)
        rows.append((height, width, features.nbytes, calls, timed, ceiling))
    timings = turns.run(args.rounds)
    print(f"{kernels.get_isa()}, threads {args.threads}, {args.rounds} rounds in turns")
    print("| input | features MB | median ms per call | share of the ceiling (paired by round) |")
    print("|---|---:|---:|---:|")
    for height, width, nbytes, calls, timed, ceiling in rows:
        seconds = [ms / 1e3 for ms in timings[timed].rounds_ms]
        rates = [reading.binary_macs_per_s for reading in turns.results[ceiling]]
        share = efficiency_in_rounds(height * width * CHANNELS * CHANNELS * 9 * calls, seconds, rates)
        per_call = timings[timed].wall_ms / calls
        print(f"| {width}x{height} | {nbytes / 1e6:.2f} | {per_call:.3f} | {share:.0%} |")


if __name__ == "__main__":
    main()
