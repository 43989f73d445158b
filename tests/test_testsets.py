"""Named test sets: image counts against the data README, and each task's degradation against an
independent rebuild (the official LR files, NumPy's legacy global RNG, Pillow's JPEG, MATLAB's Y formula).
"""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bbcu.core.errors import DataNotFoundError, InvalidArgumentError
from bbcu.data.root import data_root
from bbcu.data.testsets import BUNDLED_TEST_SETS, available_test_sets, load_test_set

SETTING = {"sr": {"scale": 4}, "denoise": {"sigma": 25}, "jpeg": {"quality": 10}}


def _readme_counts() -> dict[str, int]:
    """``| set | images | ...`` rows of the data README."""
    text = (data_root() / "README.md").read_text()
    return {
        name: int(count) for name, count in re.findall(r"^\| (\w+) \| (\d+) \|", text, flags=re.MULTILINE)
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BUNDLED_TEST_SETS))
def test_image_count_matches_data_readme(name: str) -> None:
    task = BUNDLED_TEST_SETS[name]
    pairs = load_test_set(name, task, **SETTING[task])
    assert len(pairs) == _readme_counts()[name]
    assert len({p.name for p in pairs}) == len(pairs)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "scale"), [(n, s) for n in ("Set5", "Set14") for s in (2, 3, 4)] + [("B100", 3)]
)
def test_sr_pairs_have_gt_scale_times_lq(name: str, scale: int) -> None:
    for pair in load_test_set(name, "sr", scale=scale):
        assert pair.gt.shape == (pair.lq.shape[0] * scale, pair.lq.shape[1] * scale, 3)
        assert pair.lq.dtype == pair.gt.dtype == np.uint8


def test_sr_uses_the_official_lr_files_and_rgb_for_grey_images() -> None:
    root = data_root() / "Set14"
    pairs = {p.name: p for p in load_test_set("Set14", "sr", scale=3)}
    official = np.asarray(Image.open(root / "LR_bicubic" / "X3" / "zebrax3.png").convert("RGB"))
    np.testing.assert_array_equal(pairs["zebra"].lq, official)
    bridge = np.asarray(Image.open(root / "HR" / "bridge.png"))
    assert bridge.ndim == 2
    assert pairs["bridge"].gt.shape[2] == 3
    for channel in range(3):  # grey stacked to RGB, mod-cropped to a multiple of 3
        np.testing.assert_array_equal(pairs["bridge"].gt[:, :, channel], bridge[:510, :510])


@pytest.mark.parametrize("scale", [2, 4])
def test_sr_without_official_lr_reproduces_the_official_files(tmp_path: Path, scale: int) -> None:
    # Set5 with its LR folder removed must be downsampled to exactly the official MATLAB LR files.
    shutil.copytree(data_root() / "Set5" / "HR", tmp_path / "Set5" / "HR")
    for pair in load_test_set("Set5", "sr", root=tmp_path, scale=scale):
        official = data_root() / "Set5" / "LR_bicubic" / f"X{scale}" / f"{pair.name}x{scale}.png"
        np.testing.assert_array_equal(pair.lq, np.asarray(Image.open(official).convert("RGB")))


def test_denoise_noise_is_numpy_seed_0_per_image_unclipped() -> None:
    pairs = load_test_set("Set12", "denoise", sigma=50)
    for pair in pairs[:3]:
        np.random.seed(0)  # the published protocol, verbatim
        expected = pair.gt.astype(np.float32) / 255 + np.random.normal(0, 50 / 255, pair.gt.shape)
        np.testing.assert_allclose(pair.lq, expected, atol=1e-6)
    assert min(p.lq.min() for p in pairs) < 0 and max(p.lq.max() for p in pairs) > 1


@pytest.mark.slow
def test_jpeg_gt_is_rounded_matlab_y_and_lq_is_pillow_jpeg() -> None:
    pair = load_test_set("LIVE1", "jpeg", quality=20)[0]
    rgb = np.asarray(Image.open(data_root() / "LIVE1" / f"{pair.name}.png").convert("RGB")) / 255.0
    y = 16 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]
    np.testing.assert_array_equal(pair.gt, np.floor(y + 0.5).astype(np.uint8))
    buffer = io.BytesIO()
    Image.fromarray(pair.gt).save(buffer, format="JPEG", quality=20)
    np.testing.assert_array_equal(pair.lq, np.asarray(Image.open(buffer)))


def test_grey_jpeg_set_is_used_as_it_is() -> None:
    pair = load_test_set("Classic5", "jpeg", quality=10)[0]
    np.testing.assert_array_equal(pair.gt, np.asarray(Image.open(data_root() / "Classic5" / "baboon.png")))


def test_any_folder_under_the_root_is_a_test_set(tmp_path: Path) -> None:
    (tmp_path / "Urban100" / "HR").mkdir(parents=True)
    (tmp_path / "Flat").mkdir()
    image = np.random.default_rng(0).integers(0, 256, (50, 43, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "Urban100" / "HR" / "img_001.png")
    Image.fromarray(image).save(tmp_path / "Flat" / "a.png")
    sr = load_test_set("Urban100", "sr", root=tmp_path, scale=4)
    assert sr[0].gt.shape == (48, 40, 3) and sr[0].lq.shape == (12, 10, 3)
    assert load_test_set("Urban100", "denoise", root=tmp_path, sigma=15)[0].gt.shape == (50, 43, 3)
    assert load_test_set("Flat", "jpeg", root=tmp_path, quality=30)[0].gt.shape == (50, 43)
    assert available_test_sets("sr", root=tmp_path) == ["Urban100"]


def test_published_sets_present_in_the_shared_data() -> None:
    assert available_test_sets("sr") == ["Set5", "Set14", "B100"]
    assert available_test_sets("denoise") == ["CBSD68", "Kodak24"]
    assert available_test_sets("jpeg") == ["LIVE1", "Classic5"]


def test_user_errors(tmp_path: Path) -> None:
    with pytest.raises(
        DataNotFoundError, match=r"'Urban100' not found: looked for .*Urban100/HR and .*Urban100"
    ):
        load_test_set("Urban100", "sr", scale=2)
    with pytest.raises(InvalidArgumentError, match="unknown task"):
        load_test_set("Set5", "deblur", scale=2)
    with pytest.raises(InvalidArgumentError, match="needs a sigma"):
        load_test_set("CBSD68", "denoise")
    (tmp_path / "Empty").mkdir()
    with pytest.raises(DataNotFoundError, match="no images"):
        load_test_set("Empty", "jpeg", root=tmp_path, quality=10)
    with pytest.raises(DataNotFoundError, match="none of the published"):
        available_test_sets("sr", root=tmp_path)
