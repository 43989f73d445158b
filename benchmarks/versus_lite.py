"""BBCU-M packed against SRResNet-Lite (fp32, PyTorch channels_last), alternating call by call in one
process: fastest and median of each, and the median of the paired ratios (on a host whose speed drifts,
a pair's two calls see the same phase of it).

For before/after comparisons run it alternately against two builds (e.g. a checkout of the earlier
commit on PYTHONPATH), as benchmarks/kernels_session6.md does.

Usage: .venv/bin/python benchmarks/versus_lite.py [--threads 2] [--scale 4] [--pairs 8]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import bbcu
from bbcu.engine.runtime import pack_model, set_num_threads
from bbcu.report.bench import moved_off_init
from bbcu.report.bench_references import fp32_runner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    set_num_threads(args.threads)
    torch.manual_seed(0)
    packed = pack_model(moved_off_init(bbcu.create_model("bbcu-m", scale=args.scale)), "popcount")
    lite = fp32_runner(bbcu.create_model("srresnet-lite", scale=args.scale))
    x = torch.rand(1, 3, 180, 320).contiguous(memory_format=torch.channels_last)
    packed(x), lite(x)
    engine, reference = [], []
    for _ in range(args.pairs):
        for run, times in ((packed, engine), (lite, reference)):
            start = time.perf_counter()
            run(x)
            times.append(time.perf_counter() - start)
    ratios = [r / e for e, r in zip(engine, reference, strict=True)]
    print(
        f"x{args.scale}, {args.threads} threads: packed fastest {min(engine) * 1e3:.1f} ms, median "
        f"{statistics.median(engine) * 1e3:.1f}; lite fastest {min(reference) * 1e3:.1f}, median "
        f"{statistics.median(reference) * 1e3:.1f}; lite / packed: fastest "
        f"{min(reference) / min(engine):.2f}x, median of pairs {statistics.median(ratios):.2f}x"
    )


if __name__ == "__main__":
    main()
