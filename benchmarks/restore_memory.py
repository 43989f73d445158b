"""Peak memory of ``bbcu restore`` on large images: the claim is that a 2000x2000 x4 input fits in 4 GB.

Each case runs the real command in a child process (``python -m bbcu.cli restore IMAGE -o DIR --weights
W``, automatic tiling, no ``--tile``) on a random-noise PNG with random weights (weights do not change
memory), and reads the child's peak resident set size from ``os.wait4``'s rusage.

Peak memory has two parts: the working set of one tile's forward pass, which depends on the network
and the tile size but not on the image (tiles are never larger than the 256x256 x4 pixel budget), and
the buffers of the whole output, which depend on the image but not on the network. So when running
SRResNet x4 (64 channels, ~2.5 M MACs per input pixel) over 2000x2000 is too slow for the machine,
the default cases measure the output part with SRResNet-Lite (12 channels, same layers) at 2000x2000
and the working-set difference between the two networks at 256x256, and bound SRResNet at 2000x2000 by
``lite(2000) + srresnet(256) - lite(256)``. Pass ``--cases srresnet:2000`` to measure it directly::

    .venv/bin/python benchmarks/restore_memory.py --output benchmarks/restore_memory.md
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bbcu.archs import create_model
from bbcu.formats.image_io import write_image
from bbcu.formats.weights import save

LIMIT_GIB = 4.0
SCALE = 4
DEFAULT_CASES = "srresnet:256,srresnet-lite:256,srresnet-lite:2000"
Case = tuple[str, int]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=DEFAULT_CASES, help=f"MODEL:SIDE,... (default {DEFAULT_CASES})")
    parser.add_argument("--output", type=Path, help="write the Markdown report here too")
    args = parser.parse_args()
    cases = [(name, int(side)) for name, side in (case.split(":") for case in args.cases.split(","))]
    results: dict[Case, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bbcu-memory-") as folder:
        for name, side in cases:
            results[name, side] = measure(Path(folder), name, side)
            peak, seconds = results[name, side]
            print(
                f"{name} {side}x{side}: peak RSS {peak:.2f} GiB, {seconds:.0f} s", file=sys.stderr, flush=True
            )
    report = format_report(args.cases, results)
    print(report)
    if args.output:
        args.output.write_text(report)


def measure(folder: Path, model: str, side: int) -> tuple[float, float]:
    """Peak RSS (GiB) and wall time (s) of one ``bbcu restore`` child process on a side x side image."""
    weights, image = folder / f"{model}.safetensors", folder / f"noise{side}.png"
    if not weights.exists():
        save(create_model(model, scale=SCALE), weights)
    if not image.exists():
        write_image(image, np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8))
    command = [sys.executable, "-m", "bbcu.cli.main", "restore", str(image), "-o", str(folder / "out")]
    start = time.perf_counter()
    child = subprocess.Popen([*command, "--weights", str(weights)], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bbcu restore failed: {model} on {side}x{side} (status {status})")
    return usage.ru_maxrss / 2**20, seconds  # ru_maxrss is in KiB on Linux


def format_report(cases: str, results: dict[Case, tuple[float, float]]) -> str:
    """The Markdown table, plus the SRResNet 2000x2000 bound when its three ingredients were measured."""
    lines = [
        "# Peak memory of `bbcu restore` (automatic tiling, x4)",
        "",
        f"Command: `.venv/bin/python benchmarks/restore_memory.py --cases {cases}`",
        "Random weights; input: random-noise RGB PNG; output: PNG; peak RSS of the `bbcu restore` process.",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; shared with other jobs, so times are rough.",
        "",
        "| model | input | output | peak RSS (GiB) | wall time (s) |",
        "|---|---|---|---|---|",
    ]
    for (model, side), (peak, seconds) in results.items():
        lines.append(
            f"| {model} | {side}x{side} | {side * SCALE}x{side * SCALE} | {peak:.2f} | {seconds:.0f} |"
        )
    needed = [("srresnet-lite", 2000), ("srresnet", 256), ("srresnet-lite", 256)]
    if ("srresnet", 2000) not in results and all(case in results for case in needed):
        lite_big, full_small, lite_small = (results[case][0] for case in needed)
        bound = lite_big + full_small - lite_small
        verdict = "under" if bound < LIMIT_GIB else "NOT under"
        lines += [
            "",
            "SRResNet x4 on 2000x2000, bounded: lite(2000) + srresnet(256) - lite(256) = "
            f"{lite_big:.2f} + {full_small:.2f} - {lite_small:.2f} = **{bound:.2f} GiB**, "
            f"{verdict} the {LIMIT_GIB:.0f} GiB limit.",
        ]
    return "\n".join(lines) + "\n"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else the machine type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


if __name__ == "__main__":
    main()
