"""Where a packed network's time goes: each runtime step timed alone, fastest of several runs.

Builds the packed twin of a network with random weights moved off their init (as `bbcu bench` does),
runs one image through `PackedModel.steps` one step at a time, and prints per step kind the sum of
the fastest times over the runs, beside the fastest whole run. Paths are forced to popcount, so the
figures do not depend on the int8 choice cached on this machine.

Usage: .venv/bin/python benchmarks/network_steps.py [--model bbcu-m] [--scale 4] [--threads 2] [--runs 6]
"""

from __future__ import annotations

import argparse
import collections
import time

import torch

import bbcu
from bbcu.engine.runtime import _Flow, as_hwc, pack_model, set_num_threads
from bbcu.report.bench import moved_off_init


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bbcu-m")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=6)
    args = parser.parse_args()
    set_num_threads(args.threads)
    torch.manual_seed(0)
    kwargs = {"scale": args.scale} if args.scale > 1 else {}
    model = moved_off_init(bbcu.create_model(args.model, **kwargs))
    packed = pack_model(model, "popcount")
    height, width = (180, 320) if args.scale > 1 else (320, 480)
    image = as_hwc(
        torch.rand(1, model.in_channels, height, width).contiguous(memory_format=torch.channels_last)
    )
    fastest: dict[int, float] = collections.defaultdict(lambda: float("inf"))
    totals = []
    for _ in range(args.runs):
        flow, begin = _Flow(x=image, skip=image), time.perf_counter()
        for index, step in enumerate(packed.steps):
            start = time.perf_counter()
            step(flow)
            fastest[index] = min(fastest[index], time.perf_counter() - start)
        totals.append(time.perf_counter() - begin)
    by_kind: dict[str, float] = collections.defaultdict(float)
    for index, step in enumerate(packed.steps):
        by_kind[type(step).__name__.lstrip("_")] += fastest[index]
    print(
        f"{args.model} x{args.scale}, {width}x{height} input, {args.threads} threads, fastest of {args.runs}"
    )
    print("| step kind | ms |\n|---|---:|")
    for kind, seconds in sorted(by_kind.items(), key=lambda item: -item[1]):
        print(f"| {kind} | {seconds * 1e3:.1f} |")
    print(f"| sum of the fastest steps | {sum(fastest.values()) * 1e3:.1f} |")
    print(f"| fastest whole run | {min(totals) * 1e3:.1f} |")


if __name__ == "__main__":
    main()
