"""The packed runtime computes what the PyTorch model computes (eval mode), for every supported network.

The truth is the simulated model itself: ``model.eval()(x)`` with float convolutions of +-1 inputs and
``alpha * sign(W)`` weights. Parameters are randomised so shifts, RPReLU's gamma/beta/zeta and biases are
all non-trivial; inputs are random, so no sign input is exactly 0 (where conventions could differ).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bbcu.engine import PackedModel, kernels, load
from bbcu.engine.runtime import pack_model
from bbcu.formats.packed import export_model
from bbcu.run.tiling import restore_array
from helpers import randomized

TOLERANCE = 1e-4  # max abs difference on the [0, 1] output scale

CASES = [
    ("bbcu-l", {"scale": 2, "num_units": 4}),
    ("bbcu-l", {"scale": 3, "num_units": 4}),
    ("bbcu-l", {"scale": 4}),
    ("bbcu-m", {"scale": 2}),
    ("bbcu-m", {"scale": 3}),
    ("bbcu-m", {"scale": 4}),
    ("dncnn-bbcu", {}),
    ("dncnn3-bbcu", {}),
    ("bbcu-m", {"scale": 4, "channels": 40, "num_units": 4}),  # channels below one word
    ("bbcu-m", {"scale": 3, "channels": 72, "num_units": 4}),  # a word and a bit
    ("bbcu-l", {"scale": 2, "channels": 72, "num_units": 3}),
    ("dncnn3-bbcu", {"channels": 40}),
    ("dncnn-bbcu", {"channels": 130, "depth": 5}),
]
SIZES = [(1, 1, 1), (2, 5, 7), (1, 9, 16)]  # (batch, H, W): a 1x1 image, odd sizes, a batch


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    ("name", "kwargs"), CASES, ids=[f"{n}-{'-'.join(map(str, k.values()))}" for n, k in CASES]
)
def test_packed_output_equals_the_simulated_model(name: str, kwargs: dict) -> None:
    model = randomized(name, **kwargs)
    packed = pack_model(model)
    generator = torch.Generator().manual_seed(1)
    for batch, height, width in SIZES:
        x = torch.rand(batch, model.in_channels, height, width, generator=generator)
        with torch.no_grad():
            expected = model(x)
        got = packed(x)
        assert got.shape == expected.shape
        assert (got - expected).abs().max().item() <= TOLERANCE


def test_loaded_file_carries_the_model_attributes(tmp_path: Path) -> None:
    model = randomized("bbcu-m", scale=3, num_units=2)
    packed = load(export_model(model, tmp_path / "m.bbcu"))
    assert isinstance(packed, PackedModel)
    assert (packed.scale, packed.in_channels, packed.out_channels, packed.k) == (3, 3, 3, 130.0)
    assert packed.architecture == packed.model_name == "bbcu-m"
    assert packed.model_kwargs == {"scale": 3, "num_units": 2}


@pytest.mark.parametrize("isa", kernels.available_isas())
def test_every_kernel_path_gives_the_same_network_output(isa: str) -> None:
    model = randomized("bbcu-m", scale=2, channels=72, num_units=3)
    packed = pack_model(model)
    x = torch.rand(1, 3, 11, 6, generator=torch.Generator().manual_seed(2))
    kernels.set_isa(isa)
    try:
        got = packed(x)
    finally:
        kernels.set_isa("auto")
    with torch.no_grad():
        assert (got - model(x)).abs().max().item() <= TOLERANCE


def test_restore_array_runs_a_packed_model_like_the_pytorch_one() -> None:
    model = randomized("dncnn3-bbcu", depth=6)
    packed = pack_model(model)
    image = np.random.default_rng(3).integers(0, 256, (13, 10), dtype=np.uint8)
    expected = restore_array(model, image)
    got = restore_array(packed, image)
    assert got.shape == expected.shape == (13, 10)
    assert np.abs(got - expected).max() <= TOLERANCE


def test_the_input_batch_is_left_unchanged() -> None:
    packed = pack_model(randomized("dncnn-bbcu", depth=4))
    x = torch.rand(1, 3, 6, 5).contiguous(memory_format=torch.channels_last)
    before = x.clone()
    packed(x)
    assert torch.equal(x, before)


def test_a_wrong_input_shape_is_refused() -> None:
    packed = pack_model(randomized("dncnn3-bbcu", depth=3))
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        packed(torch.rand(1, 3, 4, 4))


def test_bench_layer_reports_a_comparison_and_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    from bbcu.cli.main import main
    from bbcu.report.bench import bench_layer, format_table

    (row,) = bench_layer(repeats=1)
    assert row.engine.wall_ms > 0 and row.reference_time.cpu_ms > 0
    assert row.speedup == pytest.approx(row.reference_time.wall_ms / row.engine.wall_ms)
    result = {"machine": "m", "threads": 1, "isa": "avx2", "repeats": 1, "torch": "t", "load_average": [0, 0]}
    table = format_table({**result, "comparisons": [row.as_dict()]})
    assert f"| {row.speedup:.2f}x |" in table and "15x (" in table
    assert main(["bench", "--repeats", "0"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
