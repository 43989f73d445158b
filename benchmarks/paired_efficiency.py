"""Why `bbcu bench` pairs each round's layer time with a ceiling read in the same round.

Alternates, round after round, one reading of the binary ceiling (`kernels.measure_ceilings`) and one
timed call of the fused 64->64 unit at 320x180 (`bbcu.report.bench.LayerProblem`, after a few untimed
calls of it), then prints three efficiencies of the same calls: the median of each round's time over
its own round's ceiling (what the bench reports), the median time over the peak ceiling (what it
reported until session 8), and the fastest time over the peak ceiling. On a host whose speed drifts,
the second sets a time from a slow phase against a ceiling from a fast one.

Usage: .venv/bin/python benchmarks/paired_efficiency.py [--threads 2] [--rounds 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

from bbcu.engine import kernels
from bbcu.report.bench import LAYER_SIZE, LayerProblem
from bbcu.report.crossover import efficiency, efficiency_in_rounds

SETTLING_CALLS = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    kernels.set_num_threads(args.threads)
    problem = LayerProblem(LAYER_SIZE)
    ceilings, seconds = [], []
    for _ in range(args.rounds):
        ceilings.append(kernels.measure_ceilings(args.threads).binary_macs_per_s)
        for _ in range(SETTLING_CALLS):
            problem.unit()
        start = time.perf_counter()
        problem.unit()
        seconds.append(time.perf_counter() - start)
    print(f"{kernels.get_isa()}, {args.threads} threads, {args.rounds} rounds, 320x180 fused unit")
    print(f"ceiling G MAC/s: median {statistics.median(ceilings) / 1e9:.0f}, peak {max(ceilings) / 1e9:.0f}")
    print(f"unit ms: median {statistics.median(seconds) * 1e3:.2f}, fastest {min(seconds) * 1e3:.2f}")
    peak, macs = max(ceilings), problem.macs
    print(f"paired by round, median: {efficiency_in_rounds(macs, seconds, ceilings):.1%}")
    print(f"median time / peak ceiling: {efficiency(macs, statistics.median(seconds), peak):.1%}")
    print(f"fastest time / peak ceiling: {efficiency(macs, min(seconds), peak):.1%}")


if __name__ == "__main__":
    main()
