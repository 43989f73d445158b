"""The raw binary conv's MAC rate against its output channel count, at equal work, in turns.

A 3x3 conv over 64 input channels, dot products only (``binary_conv3x3_raw``), one call per width in
each round, every width given the same number of MACs (``pixels x outputs`` fixed). What changes with
the width is only how much lane-weight memory each pixel walks through: where a layer's weights stop
fitting the L1, or fall into few of its sets, the rate drops (session 10: the AVX2 path on Zen 3, whose
64 -> 256 upsamplers ran at about two thirds of the 64-output rate; benchmarks/kernels_session10.md).
Printed against the ISA's binary ceiling, read in every round (the host's speed drifts within minutes).

Usage: .venv/bin/python benchmarks/output_width.py [--isa avx2] [--threads 1] [--rounds 7]
    [--widths 64,128,192,256,264,512]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from bbcu.engine import kernels

MACS = 64 * 64 * 256 * 64 * 9  # a 64x64 map at 256 outputs: about 0.6 G MACs per call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--isa", default="avx2")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--widths", default="64,128,192,256,264,512")
    args = parser.parse_args()
    if args.isa not in kernels.available_isas():
        raise SystemExit(f"error: this CPU cannot run the {args.isa!r} kernels: {kernels.available_isas()}")
    kernels.set_isa(args.isa)
    kernels.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    calls = {}
    for outputs in (int(width) for width in args.widths.split(",")):
        height, width = 64, MACS // (64 * outputs * 64 * 9)
        xp = kernels.pack_activations(
            rng.standard_normal((height, width, 64), np.float32), np.zeros(64, np.float32)
        )
        wp = kernels.pack_weights(rng.standard_normal((outputs, 64, 3, 3)).astype(np.float32))
        calls[outputs] = (
            height * width * outputs * 64 * 9,
            lambda xp=xp, wp=wp: kernels.binary_conv3x3_raw(xp, wp, 64),
        )
    shares: dict[int, list[float]] = {outputs: [] for outputs in calls}
    rates: dict[int, list[float]] = {outputs: [] for outputs in calls}
    for _ in range(args.rounds):
        ceiling = kernels.measure_ceilings(args.threads, seconds=0.01).binary_macs_per_s
        for outputs, (macs, call) in calls.items():
            call()  # untimed: the timed call finds its own data, not the previous width's, in cache
            start = time.perf_counter()
            call()
            rate = macs / (time.perf_counter() - start)
            rates[outputs].append(rate)
            shares[outputs].append(rate / ceiling)
    planes = 2 if args.isa == "avx2" else 1
    print(
        f"raw 3x3 conv, 64 input channels, isa {args.isa}, threads {args.threads}, "
        f"{args.rounds} rounds in turns"
    )
    print("each share sets a call's rate against the binary ceiling read at the start of its round; medians")
    print("| outputs | lane weights (KB) | median G MAC/s | fastest G MAC/s | median share of the ceiling |")
    print("|---:|---:|---:|---:|---:|")
    for outputs in calls:
        kilobytes, median = 9 * planes * outputs * 8 / 1024, statistics.median(rates[outputs])
        print(
            f"| {outputs} | {kilobytes:.1f} | {median / 1e9:.0f} | {max(rates[outputs]) / 1e9:.0f} "
            f"| {statistics.median(shares[outputs]):.0%} |"
        )


if __name__ == "__main__":
    main()
