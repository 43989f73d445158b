"""Two builds of the kernels in one process, call for call: the A/B test this noisy host allows.

On the KVM guests this project runs on, the host's load moves a kernel's time by 1.5-2x within minutes
(benchmarks/kernels_session8.md), so two builds timed in separate runs, even alternating, differ by
more than most changes make. Here both compiled modules are loaded side by side (each ``_bitops``
shared object under its own package name, so each keeps its own thread pool and ISA choice) and take
turns behind ``bbcu.engine.kernels``; their outputs are checked equal on the same input, then their
calls alternate A, B, A, B, ..., each after untimed calls of itself (``Turns``): every pair of calls
sees the same moment of the host, and neither finds the other's data warm in cache. The figure to
read is the median of the paired ratios B / A.

The layer is ``bbcu bench``'s fused V4 unit (64 -> 64 at 320x180, in place; ``LayerProblem``, one per
build), BBCU-M x4's first x2 upsampler (64 -> 256 with the sub-pixel shuffle, 320x180 -> 640x360,
random weights moved off their init as ``bbcu bench`` makes them), or that whole packed network on a
320x180 image (popcount paths; the runtime's PyTorch steps take ``--threads`` too), its last conv
(``--layer float``: 64 -> 3 fp32 on one band of its banded tail, 36 x 1280, cache-line aligned), or the
path's binary ceiling loop (``--layer ceiling``: the same rounds in each build, so B / A compares how
fast they count).

Usage: .venv/bin/python benchmarks/ab_builds.py A/_bitops...so B/_bitops...so [--isa avx512]
    [--threads 1] [--layer unit|upsampler|network|float|ceiling] [--rounds 40]
(A build of an earlier commit: ``git archive <commit> | tar -x -C DIR && cd DIR && python setup.py
build_ext --inplace``.)
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

import bbcu
from bbcu.engine import kernels
from bbcu.engine.runtime import _BinaryUpsample, cache_line_aligned, pack_model
from bbcu.report.bench import LAYER_SIZE, LayerProblem, moved_off_init
from bbcu.report.timing import Turns


def load_build(tag: str, path: Path) -> ModuleType:
    """The compiled module at ``path``, loaded as ``<tag>._bitops`` beside any other copy."""
    spec = importlib.util.spec_from_file_location(f"{tag}._bitops", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"error: {path} is not a loadable extension module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def behind_kernels(build: ModuleType) -> Iterator[None]:
    """``bbcu.engine.kernels`` calling ``build`` inside the block."""
    original, kernels._bitops = kernels._bitops, build
    try:
        yield
    finally:
        kernels._bitops = original


Layer = tuple[Callable[[], None], Callable[[], np.ndarray]]
"""A build's timed call, and what reads its output afterwards."""


def unit_layer() -> Layer:
    """One build's fused unit, in place on its own feature map."""
    problem = LayerProblem(LAYER_SIZE)
    return problem.unit, lambda: problem.features


def upsampler_layer() -> Layer:
    """One build's first x2 upsampler of BBCU-M x4, into a kept buffer."""
    torch.manual_seed(0)
    steps = pack_model(moved_off_init(bbcu.create_model("bbcu-m", scale=4)), "popcount").steps
    unit = next(step for step in steps if isinstance(step, _BinaryUpsample)).unit
    features = np.random.default_rng(0).standard_normal((*LAYER_SIZE, unit.channels), np.float32)
    signs = kernels.pack_activations(features, unit.shift)
    out = cache_line_aligned((2 * LAYER_SIZE[0], 2 * LAYER_SIZE[1], unit.channels))

    def call() -> None:
        kernels.binary_conv3x3(
            signs, unit.bits, unit.channels, residual=features, out=out, shuffle=2, **unit.epilogue
        )

    return call, lambda: out


def network_layer() -> Layer:
    """One build's packed BBCU-M x4 (popcount paths) on a fixed random 320x180 image."""
    torch.manual_seed(0)
    packed = pack_model(moved_off_init(bbcu.create_model("bbcu-m", scale=4)), "popcount")
    image = torch.rand(1, 3, *LAYER_SIZE)
    result: list[torch.Tensor] = []

    def call() -> None:
        result[:] = [packed.forward(image)]

    return call, lambda: result[0].numpy()


FLOAT_BAND = (36, 1280)  # rows x columns of one band of BBCU-M x4's tail at 320x180


def float_layer() -> Layer:
    """One build's 64 -> 3 float conv on a band of BBCU-M x4's tail (random features and weights)."""
    rng = np.random.default_rng(0)
    band = cache_line_aligned((*FLOAT_BAND, 64))
    band[...] = rng.standard_normal(band.shape, np.float32)
    weight = kernels.float_conv_weight(rng.standard_normal((3, 64, 3, 3)).astype(np.float32))
    bias = rng.standard_normal(3).astype(np.float32)
    result: list[np.ndarray] = []

    def call() -> None:
        result[:] = [kernels.float_conv3x3(band, weight, bias)]

    return call, lambda: result[0]


CEILING_ROUNDS = 100_000  # about 4 ms of the AVX2 loop on one Zen 3 core


def ceiling_layer() -> Layer:
    """One build's binary ceiling loop for a fixed number of rounds: its time, so a loop that counts
    faster shows as B / A below 1 (both count the same MACs; there is no output to compare)."""
    threads = kernels.get_num_threads()

    def call() -> None:
        kernels._bitops.ceiling_rate("binary", CEILING_ROUNDS, threads)

    return call, lambda: np.zeros(1)


LAYERS = {
    "unit": unit_layer,
    "upsampler": upsampler_layer,
    "network": network_layer,
    "float": float_layer,
    "ceiling": ceiling_layer,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--isa", default="avx512")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--layer", choices=tuple(LAYERS), default="unit")
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    builds = {"A": load_build("a", args.a), "B": load_build("b", args.b)}
    torch.set_num_threads(args.threads)
    layers = {}
    for tag, build in builds.items():
        build.set_isa(args.isa)
        build.set_num_threads(args.threads)
        with behind_kernels(build):
            layers[tag] = LAYERS[args.layer]()

    def turn(tag: str) -> None:
        with behind_kernels(builds[tag]):
            layers[tag][0]()

    turns = Turns()  # filing runs each call once, from equal states: their outputs must be equal
    (handle_a, _), (handle_b, _) = turns.add(lambda: turn("A")), turns.add(lambda: turn("B"))
    if not np.array_equal(layers["A"][1](), layers["B"][1]()):
        raise SystemExit("error: the two builds give different outputs")
    timings = turns.run(args.rounds)
    a_ms, b_ms = np.array(timings[handle_a].rounds_ms), np.array(timings[handle_b].rounds_ms)
    size = f"input {LAYER_SIZE[0]}x{LAYER_SIZE[1]}"
    problem = {
        "ceiling": f"{CEILING_ROUNDS} loop rounds",
        "float": f"band {FLOAT_BAND[0]}x{FLOAT_BAND[1]}",
    }.get(args.layer, size)
    print(
        f"{args.layer}, {problem}, isa {args.isa}, threads {args.threads}, "
        f"{args.rounds} rounds in turns: "
        f"A median {np.median(a_ms):.2f} ms (fastest {a_ms.min():.2f}), B median {np.median(b_ms):.2f} ms "
        f"(fastest {b_ms.min():.2f}); median of paired B / A {np.median(b_ms / a_ms):.3f}"
    )


if __name__ == "__main__":
    main()
