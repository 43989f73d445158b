"""One packed network's whole run on one input: fastest and median of several runs (popcount paths).

For before/after comparisons of the engine: run it alternately against two builds (e.g. a checkout of
the earlier commit on PYTHONPATH) in one shell loop, so that both see the same machine.

Usage: .venv/bin/python benchmarks/network_time.py [--model bbcu-m] [--scale 4] [--size 180 320]
       [--threads 1] [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import bbcu
from bbcu.engine.runtime import pack_model, set_num_threads
from bbcu.report.bench import moved_off_init


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bbcu-m")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--size", type=int, nargs=2, default=(180, 320), metavar=("H", "W"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    set_num_threads(args.threads)
    torch.manual_seed(0)
    model = moved_off_init(bbcu.create_model(args.model, **({"scale": args.scale} if args.scale > 1 else {})))
    packed = pack_model(model, "popcount")
    image = torch.rand(1, model.in_channels, *args.size)
    packed.forward(image)  # warm-up
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        packed.forward(image)
        times.append((time.perf_counter() - start) * 1e3)
    height, width = args.size
    print(
        f"{args.model} x{args.scale} {width}x{height}, {args.threads} threads: "
        f"fastest {min(times):.1f} ms, median {statistics.median(times):.1f} ms"
    )


if __name__ == "__main__":
    main()
