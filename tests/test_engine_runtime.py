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

from bbcu.binary.conv import BinaryConv2d
from bbcu.cli.main import main
from bbcu.engine import PackedModel, export_model, load
from bbcu.engine.runtime import pack_model
from bbcu.metrics.complexity import count_cost
from bbcu.report.bench import LAYER_SIZE, bench_layer, bench_network, format_table
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


def test_every_kernel_path_gives_the_same_network_output(isa: str) -> None:
    model = randomized("bbcu-m", scale=2, channels=72, num_units=3)
    packed = pack_model(model)
    x = torch.rand(1, 3, 11, 6, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert (packed(x) - model(x)).abs().max().item() <= TOLERANCE


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


def test_bench_layer_times_the_conv_it_claims_and_checks_its_output() -> None:
    """The layer row: the engine's output equals the V4 epilogue of the float conv's dot products, and
    the work is what a 64->64 3x3 conv at that size costs (counted by the complexity module's hooks on
    modules of that shape)."""
    height, width = LAYER_SIZE
    (row,) = bench_layer(repeats=1)
    assert row.mean_abs_diff == 0.0  # same float32 operations in the same order as the kernel
    binary = count_cost(BinaryConv2d(64, 64), (width, height))
    full = count_cost(torch.nn.Conv2d(64, 64, 3, padding=1, bias=False), (width, height))
    assert (binary.fp_macs, binary.binary_macs) == (0, height * width * 64 * 64 * 9)
    assert row.engine_ops_g == pytest.approx(binary.ops_g)
    assert row.reference_ops_g == pytest.approx(full.ops_g)
    assert row.input == f"64x{height}x{width}" and row.target == 15.0


def test_bench_network_rows_share_the_engine_run_and_check_it_against_the_simulation() -> None:
    """Binary DnCNN (depth 4, 16 channels) on 12x10: its OPs by hand are 3->16 and 16->3 float convs
    plus two 16->16 binary ones at 1/64, DnCNN's are all four in float; the engine's output is on
    average within a tenth of the runtime tests' tolerance of the simulated model's, and the other
    network's row claims no such check."""
    height, width, c = 12, 10, 16
    versus_float, versus_simulation = bench_network(
        "dncnn-bbcu", "dncnn", (height, width), repeats=1, target=5.0, depth=4, channels=c
    )
    pixels_taps = height * width * 9
    fp_macs, binary_macs = pixels_taps * (3 * c + c * 3), pixels_taps * 2 * c * c
    assert versus_float.engine_ops_g == pytest.approx((fp_macs + binary_macs / 64) / 1e9)
    assert versus_float.reference_ops_g == pytest.approx((fp_macs + binary_macs) / 1e9)
    assert versus_simulation.reference_ops_g == pytest.approx(versus_float.engine_ops_g)
    assert versus_simulation.mean_abs_diff <= TOLERANCE / 10 and versus_float.mean_abs_diff is None
    assert versus_float.engine is versus_simulation.engine and versus_float.input == f"3x{height}x{width}"
    assert (versus_float.target, versus_simulation.target) == (5.0, None)
    assert versus_float.reference == "dncnn (PyTorch float)"
    assert versus_simulation.reference == "dncnn-bbcu simulated (PyTorch float)"


def test_bench_table_shows_every_row_and_its_target(capsys: pytest.CaptureFixture[str]) -> None:
    rows = bench_network("dncnn-bbcu", "dncnn", (6, 5), repeats=1, target=1e9, depth=3, channels=8)
    result = {"machine": "m", "threads": 1, "isa": "avx2", "repeats": 1, "torch": "t", "load_average": [0, 0]}
    table = format_table({**result, "comparisons": [row.as_dict() for row in rows]}).splitlines()
    assert len(table) == 4 + len(rows)
    for line, row in zip(table[4:], rows, strict=True):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[5] == f"{row.speedup:.2f}x"
        assert cells[7] == ("1e+09x (missed)" if row.target else "-")
        assert cells[8] == f"{row.engine_ops_g:.3g} / {row.reference_ops_g:.3g}"
        assert cells[9] == ("-" if row.mean_abs_diff is None else f"{row.mean_abs_diff:.1e}")
    assert main(["bench", "--repeats", "0"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
