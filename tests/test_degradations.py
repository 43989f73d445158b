"""Degradations of the published protocols: Y channel, test/train noise and JPEG."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from bbcu.data.degradations import add_test_noise, add_train_noise, jpeg_compress, jpeg_encode, rgb_to_y
from bbcu.data.root import data_root
from bbcu.formats.image_io import read_image

# Made with libjpeg-turbo 2.1.5's command-line tools (Debian bookworm package libjpeg-turbo-progs), a
# separate build from the libjpeg inside Pillow, from the data file written out as PGM/PPM by Pillow:
#   cjpeg -baseline -quality Q in.pgm > out.jpg   -> sha256 of the file, first 32 hex digits (third column)
#   djpeg -pnm out.jpg                            -> sha256 of the pixel payload, likewise (fourth column)
# "-baseline" is what OpenCV's imencode and Pillow ask libjpeg for (8-bit quantisation tables).
CJPEG_REFERENCE = """
Classic5/baboon.png    10 26bd66aa34038f0fab47bfce8c21c4e4 71342b9ec6081d03454efb52aef29286
Classic5/baboon.png    20 9ebc9b308a4e73cc9281d955ecb5a39e aad5557d920cd97b0496af87005a6505
Classic5/baboon.png    30 675af74cb9e7d8aaf3611a98580c22d8 5a828a6cc5b9a0d8654cc10c2365df97
Classic5/baboon.png    40 e11c330df5a5019ef954a696dcc184a4 5f55012611baf17c79a6e7dcbfd75a14
Classic5/barbara.png   10 43e99788097fdd404937ebcc4e44373d 8a469a5ee71359ac55ddbbba66b940d1
Classic5/barbara.png   20 28ebb637c2928df851c311ecef7d4f3c 4c16162f15915207aa7787714a0bf2db
Classic5/barbara.png   30 01e4c470947b628e9270d962ff66a7c7 c28479969501d43c0080efd45134d1ad
Classic5/barbara.png   40 2ae7345ab0d49fcbe14430776001f47b 7d878902cca8a6a30cdcd8e94eff9157
Classic5/boats.png     10 02194ec791d8574fb190b6259402df01 1e3d8ab5398e04af8e386d353812528d
Classic5/boats.png     20 02a6fe7f7fd28da9c20d852eea78d3b7 dd5508e8c4d83ca0fee48049af088708
Classic5/boats.png     30 6933bcbebc671268e403a7f8503eae13 cd1cd41cdca3a506a943d53998619507
Classic5/boats.png     40 a50e606fda52117100c9164875207291 7064574e1ad9070cc0249dfeff961ef2
Classic5/lena.png      10 06146814b450aeb8ea44b804c2fb0103 1404902f44a4615f858e92d4c874170d
Classic5/lena.png      20 4bb5bcff5b68c4430bc39866b92792d0 70ae29d21e957fe3102cbb36639c33f1
Classic5/lena.png      30 37267d7862c5a439e58d4933fd5da075 e870dc1323039bd7db861de1df55344b
Classic5/lena.png      40 d9d029bce29359072252fe381c5f0039 f060ca586d4e6af0b7f1b4d51b242ef9
Classic5/peppers.png   10 14882e397174ba22e688fbebccfb1e4a 067d5676314037586d84d44099d7b2fa
Classic5/peppers.png   20 e882d79619f7a544ec62f6927140bb3c 930b16359a5bee3c940c26326db44b27
Classic5/peppers.png   30 4ad9e36defd8850737ccacebd0ec09fe efb66ed2e6295a2fb46a1022917f97ba
Classic5/peppers.png   40 21dba69ed4c58993412fd586efa8a43d 838984804987d242adc6144b97ca2a20
# cjpeg -quality 0: libjpeg treats every quality <= 0 as 1 (same file as quality 1).
Classic5/barbara.png    0 f8ce1d90d2600ea97981cd45a69f2280 0ecc358de321bfbb1fab620d89772d02
# Colour: cjpeg's default 2x2 chroma sampling (4:2:0), djpeg's default (fancy) upsampling.
Kodak24/kodim01.png    10 24d89d3dbe86186548e96a4ea08247a0 d919d2cecb4201e064cd76c678fc3509
Kodak24/kodim01.png    40 4c27fe3bfe6378658f443f3275b675cc feec4c2a52e23e57206467de6e5d419d
Set5/HR/butterfly.png  10 69f8b1d3696d76f75386c49ce1c35136 a9bdc8fb9a6627cc6c392fa67fdad18d
Set5/HR/butterfly.png  40 0eda443e63aaec96116e4cc16f7f65d5 53aad77f7bdbd7f5ae1ee29819fe666e
"""


def _reference_rows() -> list[tuple[str, int, str, str]]:
    rows = [line.split() for line in CJPEG_REFERENCE.splitlines() if line and not line.startswith("#")]
    return [(path, int(quality), file_hash, pixels_hash) for path, quality, file_hash, pixels_hash in rows]


def _sha256_prefix(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


@pytest.mark.parametrize(("relative_path", "quality", "file_sha256", "pixels_sha256"), _reference_rows())
def test_jpeg_is_byte_identical_to_cjpeg_and_decodes_like_djpeg(
    relative_path: str, quality: int, file_sha256: str, pixels_sha256: str
) -> None:
    """Encoded bytes equal libjpeg-turbo's ``cjpeg -baseline`` output; decoded pixels equal ``djpeg``'s."""
    img = read_image(data_root() / relative_path)
    assert _sha256_prefix(jpeg_encode(img, quality)) == file_sha256
    decoded = jpeg_compress(img, quality)
    assert decoded.shape == img.shape
    assert decoded.dtype == np.uint8
    assert _sha256_prefix(np.ascontiguousarray(decoded).tobytes()) == pixels_sha256


@pytest.mark.parametrize("quality", [-1, 101])
def test_jpeg_quality_outside_0_to_100_is_refused(quality: int) -> None:
    with pytest.raises(ValueError, match="quality"):
        jpeg_encode(np.zeros((8, 8), np.uint8), quality)


def test_rgb_to_y_matches_rgb2ycbcr_constants() -> None:
    """Black, white and the primaries give 16, 235, 16 + 65.481, 16 + 128.553, 16 + 24.966."""
    colours = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.uint8)
    expected = np.array([[16.0, 235.0, 81.481, 144.553, 40.966]])
    y = rgb_to_y(colours, rounded=False)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(rgb_to_y(colours.astype(np.float32) / 255, rounded=False), expected, atol=1e-5)
    rounded = rgb_to_y(colours, rounded=True)
    assert rounded.dtype == np.uint8
    np.testing.assert_array_equal(rounded, [[16, 235, 81, 145, 41]])


def test_rgb_to_y_on_random_pixels_matches_a_per_pixel_formula() -> None:
    """Vectorised Y against the textbook per-pixel expression, on uint8 and float input."""
    img = np.random.default_rng(1).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    expected = np.array(
        [[16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255 for r, g, b in row.tolist()] for row in img]
    )
    np.testing.assert_allclose(rgb_to_y(img, rounded=False), expected, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(rgb_to_y(img, rounded=True), np.floor(expected + 0.5).astype(np.uint8))
    with pytest.raises(ValueError, match="HxWx3"):
        rgb_to_y(img[:, :, 0], rounded=False)


def test_test_noise_equals_the_published_global_seed_protocol() -> None:
    """Same values as KAIR's ``np.random.seed(0); img += np.random.normal(0, s/255, shape)`` on float32."""
    img = read_image(data_root() / "Set5" / "HR" / "bird.png")
    saved_state = np.random.get_state()
    try:
        np.random.seed(0)
        reference = img.astype(np.float32) / 255
        reference += np.random.normal(0, 25 / 255.0, reference.shape)
    finally:
        np.random.set_state(saved_state)
    noisy = add_test_noise(img, 25)
    assert noisy.dtype == np.float32
    np.testing.assert_array_equal(noisy, reference)
    np.testing.assert_array_equal(add_test_noise(img.astype(np.float32) / 255, 25), reference)


def test_test_noise_is_reset_per_image_unclipped_and_leaves_global_rng_alone() -> None:
    np.random.seed(123)
    expected_next = np.random.random()
    np.random.seed(123)
    flat = np.full((64, 64), 255, np.uint8)
    first, second = add_test_noise(flat, 50), add_test_noise(flat, 50)
    assert np.random.random() == expected_next
    np.testing.assert_array_equal(first, second)
    assert first.max() > 1.0
    np.testing.assert_allclose(np.std(first - 1.0), 50 / 255, rtol=0.03)


def test_train_noise_draws_one_sigma_per_patch_within_the_range() -> None:
    """Per-patch noise std stays inside [low, high] / 255 and spreads uniformly over it (mean 37.5 / 255)."""
    rng = np.random.default_rng(7)
    patch = np.full((48, 48, 3), 0.5, np.float32)
    stds = []
    for _ in range(300):
        noisy = add_train_noise(patch, (0, 75), rng)
        assert noisy.dtype == np.float32
        stds.append(float(np.std(noisy - patch)))
    stds = np.array(stds) * 255
    assert stds.min() >= 0 and stds.max() <= 75 * 1.05
    assert stds.min() < 5 and stds.max() > 70
    assert abs(stds.mean() - 37.5) < 3
    fixed = add_train_noise(np.zeros((256, 256), np.float32), (25, 25), rng)
    np.testing.assert_allclose(np.std(fixed), 25 / 255, rtol=0.02)
    assert fixed.min() < 0
