"""restore_array: tiled output equals the whole-image output, grey/colour mapping, uint8/float input.

The truth for tiling is the model itself run on the whole image in one pass (a second, untiled path);
a deliberately too-small overlap must disagree, which shows the comparison can fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import bbcu.archs.bicubic  # noqa: F401  (registers "bicubic" until bbcu.archs imports it)
from bbcu import create_model
from bbcu.core.errors import InvalidArgumentError, NonFiniteError
from bbcu.data.root import data_root
from bbcu.formats.image_io import read_image
from bbcu.imaging.imresize import imresize
from bbcu.imaging.pixels import to_uint8
from bbcu.run.tiling import receptive_radius, restore_array

TOLERANCE = 1e-4

# Narrow, shallow versions of the full-precision networks keep the test fast; the tiling logic only
# depends on the receptive radius, which receptive_radius() reads from the model itself.
SMALL_MODELS = {
    "srresnet": {"scale": 3, "channels": 16, "blocks": 3},
    "dncnn": {"channels": 16, "depth": 8},
}
WEIGHT_GAIN = {"srresnet": 3.0, "dncnn": 1.0}


def _random_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth-ish random colour image (uint8) so outputs are not dominated by clipping."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(height // 4 + 1, width // 4 + 1, 3)).astype(np.float64)
    fine = np.kron(coarse, np.ones((4, 4, 1)))[:height, :width]
    return np.clip(fine + rng.normal(0, 12, fine.shape), 0, 255).astype(np.uint8)


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(name, **SMALL_MODELS[name])
    # SRResNet's Kaiming x0.1 init makes it nearly bilinear; stronger weights make a missing bit of
    # context visible at every tile seam (DnCNN's default init already shows it).
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(WEIGHT_GAIN[name])
    return model


def test_receptive_radius_counts_every_conv_of_the_full_networks() -> None:
    # SRResNet x4: conv_first + 16 blocks x 2 + 2 upsampler convs + conv_hr + conv_last = 37 convs of
    # half-width 1, plus 2 LQ pixels for the interpolated skip. DnCNN: 20 convs + 2.
    assert receptive_radius(create_model("srresnet", scale=4)) == 37 + 2
    assert receptive_radius(create_model("dncnn")) == 20 + 2


def test_receptive_radius_of_a_conv_free_stand_in_comes_from_the_network_it_names() -> None:
    stand_in = torch.nn.Identity()  # like the packed engine: no nn.Conv2d, but built by name
    stand_in.model_name, stand_in.model_kwargs = "dncnn3", {"depth": 7}
    assert receptive_radius(stand_in) == 7 + 2


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
def test_tiled_output_matches_whole_image(name: str) -> None:
    model = _model(name)
    image = _random_image(70, 62)
    whole = restore_array(model, image, tile=10_000)
    radius = receptive_radius(model)
    assert 2 * radius + 16 < min(image.shape[:2]), "tiles must not cover the whole image"
    tiled = restore_array(model, image, tile=16)  # default overlap = receptive radius
    assert tiled.shape == whole.shape == (70 * model.scale, 62 * model.scale, 3)
    assert np.abs(tiled - whole).max() < TOLERANCE
    too_little_context = restore_array(model, image, tile=16, tile_overlap=1)
    assert np.abs(too_little_context - whole).max() > 100 * TOLERANCE


def test_automatic_tiling_under_a_small_pixel_budget_matches_whole_image() -> None:
    model = _model("dncnn")
    image = _random_image(64, 64, seed=1)
    whole = restore_array(model, image)
    budget_tiled = restore_array(model, image, pixel_budget=40 * 40)
    assert np.abs(budget_tiled - whole).max() < TOLERANCE


def test_uint8_and_float_input_give_the_same_output() -> None:
    model = _model("dncnn")
    image = _random_image(24, 20)
    from_uint8 = restore_array(model, image)
    from_float = restore_array(model, image.astype(np.float32) / 255)
    np.testing.assert_allclose(from_uint8, from_float, atol=1e-6)


def test_grey_image_on_colour_model_is_replicated_then_averaged() -> None:
    model = _model("dncnn")
    grey = _random_image(24, 20)[:, :, 0]
    out = restore_array(model, grey)
    replicated = restore_array(model, np.repeat(grey[:, :, None], 3, axis=2))
    assert out.shape == grey.shape
    np.testing.assert_allclose(out, replicated.mean(axis=2), atol=1e-6)


def test_colour_image_on_grey_model_is_restored_channel_by_channel() -> None:
    torch.manual_seed(0)
    model = create_model("dncnn3", channels=8, depth=5)
    colour = _random_image(20, 24)
    out = restore_array(model, colour)
    assert out.shape == colour.shape
    for channel in range(3):
        alone = restore_array(model, colour[:, :, channel])
        np.testing.assert_allclose(out[:, :, channel], alone, atol=1e-6)


def test_bicubic_model_reproduces_imresize_and_official_lr_upscaling() -> None:
    lr = read_image(data_root() / "Set5" / "LR_bicubic" / "X2" / "birdx2.png")
    model = create_model("bicubic", scale=2)
    np.testing.assert_array_equal(to_uint8(restore_array(model, lr)), imresize(lr, 2))
    np.testing.assert_array_equal(to_uint8(restore_array(model, lr, tile=40)), imresize(lr, 2))


def test_bad_inputs_are_user_errors() -> None:
    model = _model("dncnn")
    with pytest.raises(InvalidArgumentError, match="HxW or HxWx3"):
        restore_array(model, np.zeros((8, 8, 4), np.uint8))
    with pytest.raises(InvalidArgumentError, match="positive"):
        restore_array(model, np.zeros((8, 8), np.uint8), tile=0)
    with pytest.raises(InvalidArgumentError, match="negative"):
        restore_array(model, np.zeros((8, 8), np.uint8), tile=4, tile_overlap=-1)


class _Broken(torch.nn.Module):
    """Outputs NaN where the input is bright: damaged weights, as a running network shows them."""

    in_channels = 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x > 0.5, torch.nan, x)


def test_a_non_finite_output_is_an_error_not_a_black_picture() -> None:
    image = np.zeros((40, 40, 3), np.uint8)
    image[30:, 30:] = 255  # only the last tile goes wrong
    with pytest.raises(NonFiniteError, match="_Broken produced NaN"):
        restore_array(_Broken(), image, tile=16)
    assert restore_array(_Broken(), image[:20, :20], tile=16).max() == 0
