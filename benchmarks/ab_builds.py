"""Two builds of the kernels in one process, call for call: the A/B test this noisy host allows.

On the KVM guests this project runs on, the host's load moves a kernel's time by 1.5-2x within minutes
(benchmarks/kernels_session8.md), so two builds timed in separate runs, even alternating, differ by
more than most changes make. Here both compiled modules are loaded side by side (each ``_bitops``
shared object under its own package name, so each keeps its own thread pool and ISA choice), their
outputs are checked equal on the same input, and their calls alternate A, B, A, B, ...: every pair of
calls sees the same moment of the host. The figure to read is the median of the paired ratios B / A.

The layer is BBCU-M x4's fused V4 unit (64 -> 64 at 320x180, in place) or its first x2 upsampler
(64 -> 256 with the sub-pixel shuffle, 320x180 -> 640x360), random weights moved off their init as
``bbcu bench`` makes them.

Usage: .venv/bin/python benchmarks/ab_builds.py A/_bitops...so B/_bitops...so [--isa avx512]
    [--threads 1] [--layer unit|upsampler] [--rounds 40]
(A build of an earlier commit: ``git archive <commit> | tar -x -C DIR && cd DIR && python setup.py
build_ext --inplace``.)
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

import bbcu
from bbcu.engine import kernels
from bbcu.engine.runtime import _BinaryUnit, _BinaryUpsample, cache_line_aligned, pack_model
from bbcu.report.bench import moved_off_init
from bbcu.report.timing import Turns

HEIGHT, WIDTH, CHANNELS = 180, 320, 64


def load_build(tag: str, path: Path) -> ModuleType:
    """The compiled module at ``path``, loaded as ``<tag>._bitops`` beside any other copy."""
    spec = importlib.util.spec_from_file_location(f"{tag}._bitops", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"error: {path} is not a loadable extension module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def layer(name: str) -> tuple[_BinaryUnit, int]:
    """The unit (or the upsampler's unit) and its sub-pixel shuffle."""
    torch.manual_seed(0)
    steps = pack_model(moved_off_init(bbcu.create_model("bbcu-m", scale=4)), "popcount").steps
    if name == "upsampler":
        upsample = next(step for step in steps if isinstance(step, _BinaryUpsample))
        return upsample.unit, upsample.scale
    return [step for step in steps if isinstance(step, _BinaryUnit)][5], 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--isa", default="avx512")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--layer", choices=("unit", "upsampler"), default="unit")
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    builds = {"A": load_build("a", args.a), "B": load_build("b", args.b)}
    for module in builds.values():
        module.set_isa(args.isa)
        module.set_num_threads(args.threads)
    unit, shuffle = layer(args.layer)
    features = cache_line_aligned((HEIGHT, WIDTH, CHANNELS))
    features[...] = np.random.default_rng(0).standard_normal(features.shape, np.float32) * 0.1
    signs = kernels.pack_activations(features, unit.shift)
    gamma, beta, zeta = unit.epilogue["rprelu"]
    # The unit runs in place on its build's own copy of the features, as in a network; the upsampler
    # writes into a kept buffer. Both builds start from the same features and change them alike.
    residual = {tag: features.copy() if shuffle == 1 else features for tag in builds}
    out = {
        tag: residual[tag] if shuffle == 1 else cache_line_aligned((2 * HEIGHT, 2 * WIDTH, CHANNELS))
        for tag in builds
    }

    def call(tag: str) -> tuple[np.ndarray, np.ndarray]:
        return builds[tag].binary_conv3x3(
            signs, unit.bits, unit.channels, unit.epilogue["scale"], None, gamma, beta, zeta,
            residual[tag], unit.epilogue["next_shift"], out[tag], shuffle, None, None,
        )  # fmt: skip

    if not all(np.array_equal(a, b) for a, b in zip(call("A"), call("B"), strict=True)):
        raise SystemExit("error: the two builds give different outputs")
    turns = Turns()
    handle_a, _ = turns.add(lambda: call("A"))
    handle_b, _ = turns.add(lambda: call("B"))
    timings = turns.run(args.rounds)
    a_ms, b_ms = np.array(timings[handle_a].rounds_ms), np.array(timings[handle_b].rounds_ms)
    print(
        f"{args.layer}, input {HEIGHT}x{WIDTH}, isa {args.isa}, threads {args.threads}, "
        f"{args.rounds} rounds in turns: "
        f"A median {np.median(a_ms):.2f} ms (fastest {a_ms.min():.2f}), B median {np.median(b_ms):.2f} ms "
        f"(fastest {b_ms.min():.2f}); median of paired B / A {np.median(b_ms / a_ms):.3f}"
    )


if __name__ == "__main__":
    main()
