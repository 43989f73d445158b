"""The packed runtime computes what the PyTorch model computes (eval mode), for every supported network.

The truth is the simulated model itself: ``model.eval()(x)`` with float convolutions of +-1 inputs and
``alpha * sign(W)`` weights. Parameters are randomised so shifts, RPReLU's gamma/beta/zeta and biases are
all non-trivial; inputs are random, so no sign input is exactly 0 (where conventions could differ).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bbcu.engine import PackedModel, export_model, load
from bbcu.engine.runtime import (
    TORCH_THREADS_MIN_WORK,
    _BandedTail,
    _Conv,
    _Flow,
    _PixelShuffle,
    _torch_threads_for,
    in_reused_buffer,
    pack_model,
    reused_buffer,
)
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
    packed = pack_model(model, "popcount")
    assert {path for name, path in packed.layer_paths() if name.startswith("body.")} == {
        "amx int8 tiles" if isa == "amx" else f"{isa} popcount"
    }
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


def test_results_survive_later_calls_and_concurrent_threads() -> None:
    """The first upsampler writes into a buffer kept per thread: no result may share it."""
    model = randomized("bbcu-m", scale=4, num_units=2)
    packed = pack_model(model)
    inputs = [torch.rand(1, 3, 7, 9, generator=torch.Generator().manual_seed(seed)) for seed in range(4)]
    with torch.no_grad():
        expected = [model(x) for x in inputs]
    first = packed(inputs[0])
    packed(inputs[1])
    assert (first - expected[0]).abs().max().item() <= TOLERANCE
    got: dict[int, torch.Tensor] = {}

    def run(index: int) -> None:
        for _ in range(3):
            got[index] = packed(inputs[index])

    workers = [threading.Thread(target=run, args=(index,)) for index in range(len(inputs))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for index, x in enumerate(expected):
        assert (got[index] - x).abs().max().item() <= TOLERANCE


def test_a_reused_buffer_is_kept_per_owner_and_shape_and_recognised() -> None:
    class Owner:
        pass

    owner = Owner()
    buffer = reused_buffer(owner, (4, 5, 8))
    assert reused_buffer(owner, (4, 5, 8)) is buffer
    assert reused_buffer(Owner(), (4, 5, 8)) is not buffer
    assert in_reused_buffer(buffer[1:3]) and not in_reused_buffer(np.zeros((4, 5, 8), np.float32))
    assert buffer.ctypes.data % 64 == 0
    resized = reused_buffer(owner, (2, 5, 8))
    assert resized.shape == (2, 5, 8) and resized is not buffer


def test_a_wrong_input_shape_is_refused() -> None:
    packed = pack_model(randomized("dncnn3-bbcu", depth=3))
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        packed(torch.rand(1, 3, 4, 4))


@pytest.mark.parametrize(
    ("scale", "height", "band_rows"),
    [(4, 1, 32), (4, 17, 32), (4, 45, 32), (2, 23, 32), (3, 13, 32), (2, 9, 1), (3, 7, 2), (4, 5, 3)],
)
def test_the_banded_tail_equals_its_steps_run_on_the_whole_image(
    scale: int, height: int, band_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BBCU-M's last upsampler -> conv_hr -> LeakyReLU -> conv_last runs band by band
    (``_BandedTail``), keeping the rows a band shares with the next; on inputs whose high-resolution
    height is below, across and well beyond one band, and with bands smaller than the rows kept, it
    gives what those steps give on the whole image, bit for bit."""
    model = randomized("bbcu-m", scale=scale, num_units=2)
    banded = pack_model(model, "popcount")
    whole = pack_model(model, "popcount")
    (at,) = [i for i, step in enumerate(whole.steps) if isinstance(step, _BandedTail)]
    whole.steps[at : at + 1] = whole.steps[at].whole_image_steps()
    x = torch.rand(1, 3, height, 9, generator=torch.Generator().manual_seed(3))
    monkeypatch.setattr(_BandedTail, "BAND_ROWS", band_rows)
    assert torch.equal(banded(x), whole(x))
    assert [name for name, _ in banded.layer_paths()][-3:] == [
        f"upsampler.{scale // 4}",
        "conv_hr",
        "conv_last",
    ]


@pytest.mark.parametrize("scale", [2, 3])
def test_pixel_shuffle_steps_equal_pytorch_whether_the_conv_before_them_is_grouped_or_not(scale: int) -> None:
    """A conv -> pixel shuffle pair as the runtime compiles it (outputs in sub-pixel order, the shuffle
    moving whole pixels) and as the graph has it, against F.conv2d and F.pixel_shuffle."""
    generator = torch.Generator().manual_seed(scale)
    weight = torch.randn(8 * scale * scale, 5, 3, 3, generator=generator)
    bias = torch.randn(8 * scale * scale, generator=generator)
    x = torch.randn(1, 5, 6, 7, generator=generator)
    expected = F.pixel_shuffle(F.conv2d(x, weight, bias, padding=1), scale)[0].permute(1, 2, 0).numpy()
    conv = _Conv("up", weight.numpy(), bias.numpy())
    for steps in (
        [conv, _PixelShuffle(scale)],
        [conv.grouped_by_subpixel(scale), _PixelShuffle(scale, grouped=True)],
    ):
        features = np.ascontiguousarray(x[0].permute(1, 2, 0).numpy())
        flow = _Flow(features, skip=features)
        for step in steps:
            step(flow)
        np.testing.assert_allclose(flow.x, expected, rtol=0, atol=1e-5)


def test_small_pytorch_steps_run_on_one_thread_and_restore_the_count() -> None:
    """A PyTorch step of the runtime under TORCH_THREADS_MIN_WORK runs on one thread (its OpenMP
    workers would spin on after it and take a core from the kernels); a large one keeps the threads;
    the count is restored after the step, also when it raises."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with _torch_threads_for(TORCH_THREADS_MIN_WORK - 1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with _torch_threads_for(TORCH_THREADS_MIN_WORK):
            assert torch.get_num_threads() == 2
        with pytest.raises(ValueError), _torch_threads_for(10):
            raise ValueError("a failing step")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
