"""MATLAB-exact bicubic resizing: checked against MATLAB's own LR files and against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bbcu.archs.bicubic import Bicubic
from bbcu.archs.registry import create_model, model_entry
from bbcu.data.root import data_root
from bbcu.formats.image_io import read_image
from bbcu.imaging.imresize import bicubic_downsample, contributions, cubic, imresize, modcrop
from bbcu.imaging.pixels import image_to_tensor, tensor_to_image, to_float

# MATLAB's well-known x1/2 antialiased bicubic filter: 0.5 * cubic(d / 2) at d = +-0.5, +-1.5, +-2.5, +-3.5.
HALF_SCALE_FILTER = np.array([-3, -9, 29, 111, 111, 29, -9, -3]) / 256


@pytest.mark.parametrize("set_name", ["Set5", "Set14"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_official_matlab_lr_files_are_reproduced_bit_for_bit(set_name: str, scale: int) -> None:
    """Every official LR file (made by MATLAB's imresize) equals bicubic_downsample of its HR image."""
    folder = data_root() / set_name
    hr_files = sorted((folder / "HR").glob("*.png"))
    assert len(hr_files) == {"Set5": 5, "Set14": 14}[set_name]
    for hr_file in hr_files:
        hr = read_image(hr_file)
        lr = read_image(folder / "LR_bicubic" / f"X{scale}" / f"{hr_file.stem}x{scale}.png")
        if hr.ndim == 2 and lr.ndim == 3:
            hr = np.repeat(hr[:, :, None], 3, axis=2)
        mine = bicubic_downsample(hr, scale)
        assert mine.dtype == np.uint8
        assert mine.shape == lr.shape, hr_file.name
        assert np.array_equal(mine, lr), (
            f"{hr_file.name} x{scale}: {np.count_nonzero(mine != lr)} pixels differ"
        )


def test_cubic_kernel_matches_keys_closed_form() -> None:
    """Keys (a = -0.5) at hand-computed points, including the kernel's zeros at the integers."""
    x = np.array([0.0, 0.25, 0.5, 1.0, 1.25, 1.5, 2.0, 2.5, -0.5])
    expected = np.array([1.0, 0.8671875, 0.5625, 0.0, -0.0703125, -0.0625, 0.0, 0.0, 0.5625])
    np.testing.assert_array_equal(cubic(x), expected)


def test_half_scale_contributions_are_matlabs_filter_with_symmetric_borders() -> None:
    """At x1/2 every output pixel uses the 8-tap filter; at the left edge taps mirror as 3 2 1 | 1 2 3 ..."""
    weights, indices = contributions(16, 8, 0.5)
    assert weights.shape == (8, 8)
    for row in weights:
        np.testing.assert_allclose(row, HALF_SCALE_FILTER, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(indices[0], [2, 1, 0, 0, 1, 2, 3, 4])
    np.testing.assert_array_equal(indices[3], [3, 4, 5, 6, 7, 8, 9, 10])
    np.testing.assert_array_equal(indices[7], [11, 12, 13, 14, 15, 15, 14, 13])


def test_uint8_rounds_half_away_from_zero_and_saturates() -> None:
    """An impulse of 128 under the 29/256 tap gives exactly 14.5: MATLAB stores 15 (np.round gives 14)."""
    row = np.zeros(16)
    row[5] = 128
    img = np.tile(row, (8, 1))
    as_float = imresize(img, 0.5)
    as_uint8 = imresize(img.astype(np.uint8), 0.5)
    assert as_float.dtype == np.float64
    np.testing.assert_allclose(as_float[:, 3], 14.5, rtol=0, atol=1e-12)
    assert np.all(as_uint8[:, 3] == 15)
    np.testing.assert_allclose(as_float[:, 1], -128 * 9 / 256, rtol=0, atol=1e-12)
    assert np.all(as_uint8[:, 1] == 0)


def test_upscaling_reproduces_a_linear_ramp_away_from_the_borders() -> None:
    """Keys' kernel reproduces linear functions; output pixel x samples the input at (x + 0.5) / s - 0.5."""
    scale = 3
    ramp = np.tile(np.arange(20, dtype=np.float64) * 2.5 + 7, (6, 1))
    out = imresize(ramp, scale)
    assert out.shape == (18, 60)
    x = np.arange(60)
    source = (x + 0.5) / scale - 0.5
    interior = (source > 2) & (source < 17)
    np.testing.assert_allclose(out[:, interior], np.tile(source[interior] * 2.5 + 7, (18, 1)), atol=1e-12)


@pytest.mark.parametrize("scale", [0.25, 1 / 3, 0.5, 2, 3, 4])
def test_constant_images_stay_constant(scale: float) -> None:
    """Weights sum to one (and the mirror adds no new values), so a flat image stays exactly flat."""
    img = np.full((13, 10, 3), 77, dtype=np.uint8)
    out = imresize(img, scale)
    assert out.shape == (int(np.ceil(13 * scale)), int(np.ceil(10 * scale)), 3)
    assert np.all(out == 77)


def test_output_shape_and_scale_arguments() -> None:
    """``output_shape`` sets each side (with its own scale); exactly one of the two must be given."""
    img = np.random.default_rng(0).random((30, 40))
    assert imresize(img, output_shape=(7, 55)).shape == (7, 55)
    assert imresize(img[:, :, None], 0.5).shape == (15, 20, 1)
    with pytest.raises(ValueError, match="exactly one"):
        imresize(img)
    with pytest.raises(ValueError, match="exactly one"):
        imresize(img, 0.5, output_shape=(3, 3))


def test_modcrop_removes_the_remainder_from_bottom_and_right() -> None:
    img = np.arange(11 * 14).reshape(11, 14)
    np.testing.assert_array_equal(modcrop(img, 4), img[:8, :12])
    assert bicubic_downsample(np.zeros((11, 14, 3), np.uint8), 4).shape == (2, 3, 3)


def test_bicubic_model_is_registered_and_matches_imresize_on_the_uint8_input() -> None:
    """The ``bicubic`` baseline model rounds its input to uint8 and upscales it MATLAB-exactly."""
    entry = model_entry("bicubic")
    assert (entry.task, entry.binary) == ("sr", False)
    model = create_model("bicubic", scale=3)
    assert isinstance(model, Bicubic)
    assert (model.scale, model.in_channels, model.k) == (3, 3, 1.0)
    lr = read_image(data_root() / "Set5" / "LR_bicubic" / "X3" / "birdx3.png")
    noisy = image_to_tensor(lr) + torch.full((1, 3, *lr.shape[:2]), 0.4 / 255)
    out = model(torch.cat([noisy, noisy.flip(-1)]))
    assert out.shape == (2, 3, lr.shape[0] * 3, lr.shape[1] * 3)
    assert out.dtype == torch.float32
    np.testing.assert_array_equal(tensor_to_image(out[:1]), to_float(imresize(lr, 3)))
    np.testing.assert_array_equal(tensor_to_image(out[1:]), to_float(imresize(lr[:, ::-1], 3)))
