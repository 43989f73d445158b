"""Benchmark test sets by name, degraded exactly as the published protocols require (docs/protocols.md).

A set is a folder under the data root: ``<root>/<name>/HR/*`` (the SR layout, e.g. Set5, B100,
Urban100) or a flat folder of images (CBSD68, Classic5, ...). Any folder in either layout works, so
Urban100 or Manga109 dropped under the root are found like the bundled sets. The degradation is decided
by the task, never by the set: the same Urban100 folder serves SR and denoising.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bbcu.core.constants import SETTING_NAMES, TASKS
from bbcu.core.errors import DataNotFoundError, InvalidArgumentError, InvalidFileError
from bbcu.data.degradations import add_test_noise, jpeg_compress, rgb_to_y
from bbcu.data.published import PUBLISHED_DATASETS
from bbcu.data.root import data_root
from bbcu.formats.image_io import IMAGE_EXTENSIONS, read_image
from bbcu.imaging.imresize import bicubic_downsample, modcrop

JPEG_MAX_QUALITY = 100
BUNDLED_TEST_SETS: dict[str, str] = {
    "Set5": "sr",
    "Set14": "sr",
    "B100": "sr",
    "CBSD68": "denoise",
    "Kodak24": "denoise",
    "McMaster": "denoise",
    "BSD68": "denoise",
    "Set12": "denoise",
    "Classic5": "jpeg",
    "LIVE1": "jpeg",
}
"""The named sets shipped in the shared data folder and the task each is meant for."""


@dataclass(frozen=True)
class TestPair:
    """One test image: degraded input and ground truth.

    Attributes:
        name: File stem, e.g. ``"baby"``; names the per-image CSV row and the saved output.
        lq: Degraded input: uint8 (SR, JPEG) or float32 on [0, 1], unclipped (denoising).
        gt: uint8 ground truth.
    """

    __test__ = False  # not a pytest test class despite the name

    name: str
    lq: np.ndarray
    gt: np.ndarray


def load_test_set(
    name: str,
    task: str,
    *,
    root: str | os.PathLike[str] | None = None,
    scale: int | None = None,
    sigma: float | None = None,
    quality: int | None = None,
) -> list[TestPair]:
    """Load a test set and degrade it by the task's published protocol.

    - ``sr``: gt = HR (grey converted to RGB) mod-cropped to ``scale``; lq = the official MATLAB-bicubic
      ``LR_bicubic/X{s}/<name>x{s}.png`` when the set has it, else our MATLAB-exact ``bicubic_downsample``.
    - ``denoise``: gt = the image as stored; lq = ``add_test_noise(gt, sigma)`` (seed 0 per image).
    - ``jpeg``: gt = the rounded MATLAB Y of a colour image, or the grey image itself;
      lq = ``jpeg_compress(gt, quality)``.

    Args:
        name: Folder name under the data root, e.g. ``"Set5"``.
        task: ``"sr"``, ``"denoise"`` or ``"jpeg"``.
        root: Data root (default: ``bbcu.data.root.data_root()``).
        scale: SR scale (required for ``sr``).
        sigma: Noise level on the 0..255 scale (required for ``denoise``).
        quality: JPEG quality (required for ``jpeg``).

    Returns:
        The pairs in file-name order.

    Raises:
        InvalidArgumentError: Unknown task, or a missing or impossible setting.
        DataNotFoundError: A missing or empty set.
        InvalidFileError: An official LR file whose size does not match its HR image.
    """
    setting = _required_setting(task, scale=scale, sigma=sigma, quality=quality)
    folder = locate_test_set(name, root)
    paths = image_files(folder)
    if task == "sr":
        return [_sr_pair(path, int(setting)) for path in paths]
    if task == "denoise":
        return [_denoise_pair(path, float(setting)) for path in paths]
    return [_jpeg_pair(path, int(setting)) for path in paths]


def locate_test_set(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding a set's clean images: ``<root>/<name>/HR`` if present, else ``<root>/<name>``."""
    base = data_root(root) / name
    for folder in (base / "HR", base):
        if folder.is_dir():
            return folder
    raise DataNotFoundError(f"test set {name!r} not found: looked for {base / 'HR'} and {base}")


def available_test_sets(task: str, root: str | os.PathLike[str] | None = None) -> list[str]:
    """The task's published sets that exist under the root, in the paper's column order.

    Raises:
        DataNotFoundError: If none of them is present (naming the ones looked for).
    """
    wanted = PUBLISHED_DATASETS[_checked_task(task)]
    base = data_root(root)
    present = [name for name in wanted if (base / name).is_dir()]
    if not present:
        raise DataNotFoundError(
            f"none of the published {task} test sets ({', '.join(wanted)}) is under {base}"
        )
    return present


def image_files(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name.

    Raises:
        DataNotFoundError: If the folder is missing or holds no image.
    """
    if not folder.is_dir():
        raise DataNotFoundError(f"image folder {folder} not found")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise DataNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    return paths


def _checked_task(task: str) -> str:
    if task not in TASKS:
        raise InvalidArgumentError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return task


def _required_setting(task: str, **settings: float | None) -> float:
    """The one setting the task needs (scale, sigma or quality); the others are ignored."""
    setting_name = SETTING_NAMES[_checked_task(task)]
    value = settings[setting_name]
    if value is None:
        raise InvalidArgumentError(f"the {task} protocol needs a {setting_name}")
    if value <= 0:
        raise InvalidArgumentError(f"{setting_name} must be positive, got {value}")
    if task == "jpeg" and value > JPEG_MAX_QUALITY:
        raise InvalidArgumentError(f"JPEG quality must be within 1..{JPEG_MAX_QUALITY}, got {value}")
    return value


def as_rgb(img: np.ndarray) -> np.ndarray:
    """Colour layout for SR and colour denoising: grey files (Set14's bridge) are stacked to RGB."""
    return np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else img


def as_grey(img: np.ndarray) -> np.ndarray:
    """Grey layout of the JPEG protocol: a colour image becomes its rounded MATLAB Y."""
    return rgb_to_y(img, rounded=True) if img.ndim == 3 else img


def _sr_pair(hr_path: Path, scale: int) -> TestPair:
    """HR mod-cropped to the scale, with the official LR when the set ships it."""
    gt = modcrop(as_rgb(read_image(hr_path)), scale)
    official = hr_path.parent.parent / "LR_bicubic" / f"X{scale}" / f"{hr_path.stem}x{scale}.png"
    if hr_path.parent.name == "HR" and official.is_file():
        lq = as_rgb(read_image(official))
        expected = (gt.shape[0] // scale, gt.shape[1] // scale)
        if lq.shape[:2] != expected:
            raise InvalidFileError(
                f"{official} is {lq.shape[1]}x{lq.shape[0]}, expected {expected[1]}x{expected[0]}"
            )
    else:
        lq = bicubic_downsample(gt, scale)
    return TestPair(hr_path.stem, lq, gt)


def _denoise_pair(path: Path, sigma: float) -> TestPair:
    gt = read_image(path)
    return TestPair(path.stem, add_test_noise(gt, sigma), gt)


def _jpeg_pair(path: Path, quality: int) -> TestPair:
    gt = as_grey(read_image(path))
    return TestPair(path.stem, jpeg_compress(gt, quality), gt)
