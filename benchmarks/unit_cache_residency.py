"""Whether the fused unit waits on memory: its share of the binary ceiling at sizes from L2-resident up.

The fused V4 unit at 320x180 reads and writes 14.7 MB of float features per call (in place), more
than the L2 of any core measured here. If that traffic held it back, feature maps that stay in L2
(a few rows, or a small image, called over and over) would run at a clearly larger share of the
ceiling, and running consecutive units band by band (features kept in cache between them) would pay.

Each size is ``bbcu bench``'s layer (``LayerProblem``) at that size. Its calls (enough for about twenty
320x180 layers of work) are timed in turns with a ceiling reading right after them, every round, and
each size's share is the median over the rounds of its time against the reading of its own round (as
``bbcu bench`` does): a ceiling read once, before, put one size at 112 % and the same size at 61 % in
the next run here.

Usage: .venv/bin/python benchmarks/unit_cache_residency.py [--threads 1] [--rounds 9]
"""

from __future__ import annotations

import argparse

from bbcu.engine import kernels
from bbcu.report.bench import LAYER_SIZE, LayerProblem
from bbcu.report.crossover import efficiency_in_rounds
from bbcu.report.timing import Turns

SIZES = (LAYER_SIZE, (64, 320), (24, 320), (16, 128))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    kernels.set_num_threads(args.threads)
    turns, rows = Turns(), []
    for size in SIZES:
        problem = LayerProblem(size)
        calls = max(3, 20 * LAYER_SIZE[0] * LAYER_SIZE[1] // (size[0] * size[1]))

        def layers(problem: LayerProblem = problem, calls: int = calls) -> None:
            for _ in range(calls):
                problem.unit()

        timed, _ = turns.add(layers)
        ceiling, _ = turns.add(lambda: kernels.measure_ceilings(args.threads), keep_results=True)
        rows.append((problem, calls, timed, ceiling))
    timings = turns.run(args.rounds)
    print(f"{kernels.get_isa()}, threads {args.threads}, {args.rounds} rounds in turns")
    print("| input | features MB | median ms per call | share of the ceiling (paired by round) |")
    print("|---|---:|---:|---:|")
    for problem, calls, timed, ceiling in rows:
        seconds = [ms / 1e3 for ms in timings[timed].rounds_ms]
        rates = [reading.binary_macs_per_s for reading in turns.results[ceiling]]
        share = efficiency_in_rounds(problem.macs * calls, seconds, rates)
        per_call, megabytes = timings[timed].wall_ms / calls, problem.features.nbytes / 1e6
        print(f"| {problem.width}x{problem.height} | {megabytes:.2f} | {per_call:.3f} | {share:.0%} |")


if __name__ == "__main__":
    main()
