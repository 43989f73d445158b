"""Where the packed engine and the PyTorch simulation may differ by more than 1e-4, and why (issue 12).

A binary unit thresholds ``x + shift`` at 0. The engine and the simulation compute ``x`` in float32 along
different paths (the engine scales an exact popcount once, the simulation sums ``alpha * (+-1)`` products
in oneDNN's order), so the two agree to float rounding, not bit for bit. When some ``x + shift`` lies
within that rounding of 0, the two sides may take opposite signs, and the flip changes every output pixel
that reads it: the 0.007 reported on a 1x4000 strip is such a tie, not a border error (the same happens
inside a 64x64 image). The tests here prove that explanation on each case: features agree to float
rounding up to the first flip, each flipped input lies within rounding of 0, and outside the reach of the
flipped pixels the outputs agree to the documented 1e-4.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bbcu.binary.layers import LearnableBias
from bbcu.engine.runtime import (
    PackedModel,
    _BandedTail,
    _BinaryUnit,
    _BinaryUpsample,
    _Flow,
    as_hwc,
    pack_model,
)
from bbcu.run.tiling import receptive_radius
from helpers import randomized

TOLERANCE = 1e-4  # the documented bound on the [0, 1] output scale, away from ties
ROUNDING = 16 * float(np.finfo(np.float32).eps)
"""Disagreement of two float32 evaluations of the same features, relative to their largest magnitude
(observed: 2 to 3 ulps of it)."""

pytestmark = pytest.mark.usefixtures("one_thread")


def simulated_binarizer_inputs(
    model: torch.nn.Module, x: torch.Tensor
) -> tuple[list[np.ndarray], np.ndarray]:
    """``x + shift`` of every binary operation of the simulation, in run order, and its output."""
    inputs: list[np.ndarray] = []

    def keep(module: torch.nn.Module, args: tuple[torch.Tensor], output: torch.Tensor) -> None:
        inputs.append(output[0].permute(1, 2, 0).numpy().copy())

    hooks = [m.register_forward_hook(keep) for m in model.modules() if isinstance(m, LearnableBias)]
    with torch.no_grad():
        y = model(x)
    for hook in hooks:
        hook.remove()
    return inputs, y[0].permute(1, 2, 0).numpy()


def engine_binarizer_inputs(packed: PackedModel, x: torch.Tensor) -> tuple[list[np.ndarray], np.ndarray]:
    """``x + shift`` (float32, as the kernels compute it) before every binary step, and the output."""
    inputs: list[np.ndarray] = []
    flow = _Flow(x=as_hwc(x), skip=as_hwc(x))
    steps = [
        part
        for step in packed.steps
        for part in (step.whole_image_steps() if isinstance(step, _BandedTail) else [step])
    ]  # the banded tail computes the same (tests/test_engine_runtime.py), with its features in bands
    for step in steps:
        if isinstance(step, _BinaryUnit | _BinaryUpsample):
            shift = (step if isinstance(step, _BinaryUnit) else step.unit).shift
            inputs.append(flow.x + shift)
        step(flow)
    return inputs, flow.x


CASES = {
    "1x4000-strip": ((1, 4000), 1),  # the shape of the report: a tie at column 2877 (unit 8)
    "64x64": ((64, 64), 0),  # a tie well inside an image (row 52, column 30, second upsampler)
}
"""(height, width) and the random draws skipped before the input: the draw that holds a tie on an AVX2
x86 machine (another machine's rounding may hold none, and then the outputs agree within 1e-4)."""


@pytest.mark.parametrize(("shape", "skipped"), CASES.values(), ids=CASES.keys())
def test_differences_beyond_the_bound_come_only_from_sign_ties(shape: tuple[int, int], skipped: int) -> None:
    model = randomized("bbcu-m", scale=4)
    packed = pack_model(model)
    generator = torch.Generator().manual_seed(1)
    for _ in range(skipped + 1):
        x = torch.rand(1, 3, *shape, generator=generator)
    simulated, expected = simulated_binarizer_inputs(model, x)
    engine, got = engine_binarizer_inputs(packed, x)
    assert len(simulated) == len(engine) == 35  # 32 body units, 2 upsampling stages, conv_hr

    flips = np.zeros(shape, bool)
    for sim, eng in zip(simulated, engine, strict=True):
        rounding = ROUNDING * max(1.0, float(np.abs(sim).max()))
        assert np.abs(sim - eng).max() <= rounding  # same features so far, to float rounding
        flipped = (sim >= 0) != (eng >= 0)
        if flipped.any():
            assert np.abs(sim[flipped]).max() <= rounding  # each flip is a tie at 0
            factor = flipped.shape[0] // shape[0]  # an upsampling stage's features are larger
            rows, cols, _ = np.nonzero(flipped)
            flips[rows // factor, cols // factor] = True
            break  # after a flip the two sides run on different features

    difference = np.abs(got - expected).max(axis=2)
    reach = np.zeros(shape, bool)
    radius = receptive_radius(model)
    for row, col in zip(*np.nonzero(flips), strict=True):
        reach[max(0, row - radius) : row + radius + 1, max(0, col - radius) : col + radius + 1] = True
    far = ~np.repeat(np.repeat(reach, 4, axis=0), 4, axis=1)
    assert difference[far].max() <= TOLERANCE
    if not flips.any():
        assert difference.max() <= TOLERANCE
