"""BBCU-M x4 packed on a small input, one and two threads alternating call by call: fastest and median
of each. On a small input the whole run fits in the ~10 ms that PyTorch's OpenMP workers keep spinning
after a parallel call, so this is where PyTorch steps inside the runtime can take a core from the
kernels (runtime.TORCH_THREADS_MIN_WORK). Compare builds by running it alternately with PYTHONPATH set
to a checkout of the earlier commit.

Usage: .venv/bin/python benchmarks/small_input_threads.py [--size 64 64] [--calls 10]
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
    parser.add_argument("--size", type=int, nargs=2, default=(64, 64), metavar=("H", "W"))
    parser.add_argument("--calls", type=int, default=10)
    args = parser.parse_args()
    torch.manual_seed(0)
    packed = pack_model(moved_off_init(bbcu.create_model("bbcu-m", scale=4)), "popcount")
    x = torch.rand(1, 3, *args.size).contiguous(memory_format=torch.channels_last)
    times: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.calls):
        for threads, series in times.items():
            set_num_threads(threads)
            packed(x)  # untimed: the call before belongs to the other thread count
            start = time.perf_counter()
            packed(x)
            series.append(time.perf_counter() - start)
    print(
        f"bbcu-m x4 {args.size[1]}x{args.size[0]}: "
        + "; ".join(
            f"{threads} thread(s) fastest {min(s) * 1e3:.1f} ms, median {statistics.median(s) * 1e3:.1f}"
            for threads, s in times.items()
        )
    )


if __name__ == "__main__":
    main()
