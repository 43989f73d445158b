"""Paired training datasets: HR images cut into patches and degraded on the fly (docs/method.md).

The training sets of the recipes here are small (T91, CBSD432, Train400), so HR images are decoded
once and kept in memory as uint8; each sample is a random patch, randomly flipped and rotated, with its
degraded counterpart: ``{"lq": CxHxW float32, "gt": CxHxW float32}`` on the [0, 1] scale.

Reproducibility contract: sample ``index`` of epoch ``epoch`` is a pure function of
``(seed, epoch, index)`` - its generator is ``np.random.default_rng([seed, epoch, index])`` and no
global or per-worker random state is read. The same seed therefore gives the same batches with any
number of DataLoader workers, and a run resumed at (epoch, step) draws exactly the samples the
uninterrupted run would have. Call ``set_epoch(epoch)`` before creating each epoch's DataLoader
iterator (workers copy the dataset when the iterator starts, so ``persistent_workers`` must stay off),
or call ``sample(index, epoch)`` directly.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from bbcu.core.errors import DataNotFoundError, InvalidArgumentError
from bbcu.data.degradations import add_train_noise, jpeg_compress
from bbcu.data.testsets import as_grey, as_rgb, image_files
from bbcu.formats.image_io import read_image
from bbcu.imaging.imresize import bicubic_downsample, modcrop
from bbcu.imaging.pixels import image_to_tensor, to_float

JPEG_BLOCK = 8
"""The JPEG recipe encodes a crop one 8x8 block larger than the patch, so the patch can sit on or off
the block grid."""

Sample = dict[str, torch.Tensor]


@dataclass(frozen=True)
class HRSource:
    """A folder of HR images, optionally restricted to the file names listed in a split file.

    Attributes:
        folder: Folder of images.
        names_file: Text file with one file name (relative to ``folder``) per line; blank lines and
            ``#`` comments are ignored. This is how the 200 BSD train images are picked out of CBSD432.
    """

    folder: Path
    names_file: Path | None = None

    def paths(self) -> list[Path]:
        """The image files this source selects, in a stable order.

        Raises:
            DataNotFoundError: Missing folder or names file, a listed file that is absent, or no image at all.
        """
        folder = Path(self.folder)
        if self.names_file is None:
            return image_files(folder)
        names_file = Path(self.names_file)
        if not names_file.is_file():
            raise DataNotFoundError(f"names file {names_file} not found")
        lines = (line.split("#", 1)[0].strip() for line in names_file.read_text().splitlines())
        paths = [folder / name for name in lines if name]
        if not paths:
            raise DataNotFoundError(f"names file {names_file} lists no image")
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise DataNotFoundError(
                f"{names_file} lists {len(missing)} file(s) absent from {folder}, e.g. {missing[0]}"
            )
        return paths


HRInput = HRSource | str | os.PathLike[str]


def load_hr_images(sources: Sequence[HRInput], min_size: int) -> list[np.ndarray]:
    """Decode every image of ``sources`` once, skipping (with one warning) those smaller than ``min_size``.

    Raises:
        DataNotFoundError: If a source is unusable or no image is large enough.
    """
    paths = [path for source in sources for path in _as_source(source).paths()]
    images: list[np.ndarray] = []
    too_small: list[str] = []
    for path in tqdm(paths, desc="reading training images", unit="img", leave=False):
        image = read_image(path)
        if min(image.shape[:2]) >= min_size:
            images.append(image)
        else:
            too_small.append(path.name)
    if too_small:
        warnings.warn(
            f"skipped {len(too_small)} training image(s) smaller than {min_size}x{min_size} pixels, "
            f"e.g. {too_small[0]}",
            stacklevel=3,
        )
    if not images:
        raise DataNotFoundError(f"no training image is at least {min_size}x{min_size} pixels")
    return images


def _as_source(source: HRInput) -> HRSource:
    return source if isinstance(source, HRSource) else HRSource(Path(source))


def augment(arrays: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Apply one of the 8 flips/90-degree rotations, drawn once, to every array (keeps pairs aligned)."""
    mode = int(rng.integers(8))
    turned = [np.rot90(a, mode % 4, axes=(0, 1)) for a in arrays]
    return [a[:, ::-1] for a in turned] if mode >= 4 else turned


def random_corner(shape: tuple[int, ...], size: int, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner of a uniformly placed ``size`` x ``size`` window inside an image of ``shape``."""
    return int(rng.integers(shape[0] - size + 1)), int(rng.integers(shape[1] - size + 1))


class PairedPatchDataset(Dataset):
    """Shared machinery of the training sets: in-memory images, per-sample generators, tensor output.

    Subclasses implement ``make_pair(image_index, rng)``, returning the (lq, gt) arrays of one sample.
    """

    def __init__(self, images: list[np.ndarray], *, seed: int, repeat: int) -> None:
        """Keep the decoded images; the per-sample generators are derived later from ``seed``.

        Args:
            images: Decoded HR images, already in the colour layout the task trains on.
            seed: Base seed of every sample's generator.
            repeat: Times each image is visited per epoch (small sets give short epochs otherwise).
        """
        if repeat < 1:
            raise InvalidArgumentError(f"repeat must be at least 1, got {repeat}")
        self.images = images
        self.seed = int(seed)
        self.repeat = int(repeat)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose samples ``__getitem__`` returns (see the module's contract)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.images) * self.repeat

    def __getitem__(self, index: int) -> Sample:
        return self.sample(index, self.epoch)

    def sample(self, index: int, epoch: int) -> Sample:
        """Sample ``index`` of ``epoch``: a pure function of (seed, epoch, index)."""
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range for {len(self)} samples")
        rng = np.random.default_rng([self.seed, epoch, index])
        lq, gt = self.make_pair(index % len(self.images), rng)
        return {"lq": _to_tensor(lq), "gt": _to_tensor(gt)}

    def make_pair(self, image_index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The (lq, gt) arrays of one sample drawn from image ``image_index`` with ``rng``."""
        raise NotImplementedError


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    """HxW(xC) uint8 or float array to a CxHxW float32 tensor on [0, 1] (uint8 / 255)."""
    return image_to_tensor(np.ascontiguousarray(array))[0]


class SRTrainSet(PairedPatchDataset):
    """Super-resolution patches: a random LR patch and the HR patch it came from.

    LR is the MATLAB-exact ``bicubic_downsample`` of the whole (mod-cropped) HR image, computed once per
    image when ``cache_lr`` (as the official recipe's pre-made LR folders are); without the cache the HR
    patch alone is downsampled per sample, which saves memory but reads mirrored borders at the patch
    edge instead of the neighbouring pixels.
    """

    def __init__(
        self,
        hr_dirs: Sequence[HRInput],
        scale: int,
        lr_patch: int = 32,
        cache_lr: bool = True,
        *,
        seed: int = 0,
        repeat: int = 1,
    ) -> None:
        images = [modcrop(as_rgb(img), scale) for img in load_hr_images(hr_dirs, lr_patch * scale)]
        super().__init__(images, seed=seed, repeat=repeat)
        self.scale = int(scale)
        self.lr_patch = int(lr_patch)
        self.lr_images: list[np.ndarray] | None = None
        if cache_lr:
            progress = tqdm(images, desc=f"bicubic x{scale} LR", unit="img", leave=False)
            self.lr_images = [bicubic_downsample(img, scale) for img in progress]

    def make_pair(self, image_index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        image = self.images[image_index]
        scale, size = self.scale, self.lr_patch
        top, left = random_corner((image.shape[0] // scale, image.shape[1] // scale), size, rng)
        gt = image[top * scale : (top + size) * scale, left * scale : (left + size) * scale]
        if self.lr_images is None:
            lq = bicubic_downsample(gt, scale)
        else:
            lq = self.lr_images[image_index][top : top + size, left : left + size]
        lq, gt = augment((lq, gt), rng)
        return lq, gt


class DenoiseTrainSet(PairedPatchDataset):
    """Blind denoising patches: a clean patch and the same patch with Gaussian noise, not clipped.

    Noise of one ``sigma ~ U(sigma_range)`` (0..255 scale) per patch, added in float. ``grey`` trains
    on one channel: colour images become their rounded MATLAB Y, as in the JPEG protocol; otherwise grey
    images are replicated to RGB.
    """

    def __init__(
        self,
        hr_dirs: Sequence[HRInput],
        patch: int = 64,
        sigma_range: tuple[float, float] = (0, 75),
        grey: bool = False,
        *,
        seed: int = 0,
        repeat: int = 1,
    ) -> None:
        to_layout = as_grey if grey else as_rgb
        super().__init__([to_layout(img) for img in load_hr_images(hr_dirs, patch)], seed=seed, repeat=repeat)
        self.patch = int(patch)
        self.sigma_range = (float(sigma_range[0]), float(sigma_range[1]))

    def make_pair(self, image_index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        image = self.images[image_index]
        top, left = random_corner(image.shape, self.patch, rng)
        (clean,) = augment((image[top : top + self.patch, left : left + self.patch],), rng)
        gt = to_float(np.ascontiguousarray(clean))
        return add_train_noise(gt, self.sigma_range, rng), gt


class JPEGTrainSet(PairedPatchDataset):
    """Blind JPEG patches on grey/Y images, following the published recipe step by step.

    A crop one JPEG block larger than the patch (72x72 for 64) is flipped/rotated and encoded at a
    quality drawn from ``U{quality_range}`` (0 is encoded as libjpeg's minimum, 1); the patch is then
    taken at (0, 0) half the time - aligned with the 8x8 block grid - and at a uniform offset otherwise.
    """

    def __init__(
        self,
        hr_dirs: Sequence[HRInput],
        patch: int = 64,
        quality_range: tuple[int, int] = (0, 50),
        *,
        seed: int = 0,
        repeat: int = 1,
    ) -> None:
        images = [as_grey(img) for img in load_hr_images(hr_dirs, patch + JPEG_BLOCK)]
        super().__init__(images, seed=seed, repeat=repeat)
        self.patch = int(patch)
        self.quality_range = (int(quality_range[0]), int(quality_range[1]))

    def make_pair(self, image_index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        image = self.images[image_index]
        size = self.patch + JPEG_BLOCK
        top, left = random_corner(image.shape, size, rng)
        (crop,) = augment((image[top : top + size, left : left + size],), rng)
        crop = np.ascontiguousarray(crop)
        quality = int(rng.integers(self.quality_range[0], self.quality_range[1] + 1))
        decoded = jpeg_compress(crop, quality)
        dy, dx = (0, 0) if rng.random() < 0.5 else random_corner(crop.shape, self.patch, rng)
        window = (slice(dy, dy + self.patch), slice(dx, dx + self.patch))
        return decoded[window], crop[window]
