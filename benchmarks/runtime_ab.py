"""The Python runtime of a git revision against the working tree's, one network, call for call.

``benchmarks/ab_builds.py`` compares two builds of the C kernels; this compares two versions of
``bbcu.engine.runtime`` (the steps around the kernels: banding, buffers, fusion) on the same kernels.
The revision's ``runtime.py`` is loaded from git beside the current one, both pack the same model
(random weights moved off their init, as ``bbcu bench`` makes them, popcount paths), and their calls
alternate on the same image, A first in odd rounds and B first in even ones; the outputs must be
equal. The figure to read is the median of the paired ratios B / A.

Usage: .venv/bin/python benchmarks/runtime_ab.py REVISION [--model bbcu-m] [--scale 4] [--threads 2]
    [--rounds 16] [--size 320x180]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import torch

import bbcu
from bbcu.engine import runtime
from bbcu.report.bench import moved_off_init


def runtime_at(revision: str) -> ModuleType:
    """``src/bbcu/engine/runtime.py`` as it was at ``revision``, imported as ``runtime_at_revision``."""
    source = subprocess.run(
        ["git", "show", f"{revision}:src/bbcu/engine/runtime.py"], capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "runtime_at_revision.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("runtime_at_revision", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"error: cannot load runtime.py of {revision}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revision")
    parser.add_argument("--model", default="bbcu-m")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--size", default="320x180", help="input width x height")
    args = parser.parse_args()
    runtime.set_num_threads(args.threads)
    torch.manual_seed(0)
    kwargs = {"scale": args.scale} if args.scale > 1 else {}
    model = moved_off_init(bbcu.create_model(args.model, **kwargs))
    networks = {
        "A": runtime_at(args.revision).pack_model(model, "popcount"),
        "B": runtime.pack_model(model, "popcount"),
    }
    width, height = map(int, args.size.split("x"))
    image = torch.rand(1, model.in_channels, height, width)
    times: dict[str, list[float]] = {"A": [], "B": []}
    outputs = {}
    with torch.no_grad():
        for tag, network in networks.items():
            outputs[tag] = network(image)
        if not torch.equal(outputs["A"], outputs["B"]):
            raise SystemExit("error: the two runtimes give different outputs")
        for round_index in range(args.rounds):
            for tag in ("A", "B") if round_index % 2 else ("B", "A"):
                start = time.perf_counter()
                networks[tag](image)
                times[tag].append(time.perf_counter() - start)
    a_ms, b_ms = (statistics.median(times[tag]) * 1e3 for tag in ("A", "B"))
    ratio = statistics.median(b / a for a, b in zip(times["A"], times["B"], strict=True))
    print(
        f"{args.model} x{args.scale}, {args.size}, threads {args.threads}, {args.rounds} rounds in turns: "
        f"A ({args.revision}) median {a_ms:.1f} ms, B (working tree) median {b_ms:.1f} ms; "
        f"median of paired B / A {ratio:.3f}"
    )


if __name__ == "__main__":
    main()
