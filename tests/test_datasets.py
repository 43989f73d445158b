"""Training datasets: shapes, worker-independent determinism, lq/gt alignment under augmentation, and
the JPEG recipe re-derived sample by sample with Pillow's encoder."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from bbcu.core.errors import DataNotFoundError
from bbcu.data.datasets import DenoiseTrainSet, HRSource, JPEGTrainSet, SRTrainSet
from bbcu.data.root import data_root
from bbcu.imaging.imresize import bicubic_downsample

T91_NAMES = ["t1.png", "t10.png", "t11.png", "t12.png"]  # t12 is 114x119: too small for x4 patches


@pytest.fixture(scope="module")
def t91_subset(tmp_path_factory: pytest.TempPathFactory) -> HRSource:
    names_file = tmp_path_factory.mktemp("split") / "subset.txt"
    names_file.write_text("# four T91 images\n" + "\n".join(T91_NAMES) + "\n")
    return HRSource(data_root() / "T91", names_file)


def _to_uint8(t: torch.Tensor) -> np.ndarray:
    """CxHxW float tensor made from uint8 back to HxWxC uint8 (exact for x / 255 values)."""
    return np.round(t.permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def test_shapes_and_ranges(t91_subset: HRSource) -> None:
    sr = SRTrainSet([t91_subset], scale=2, lr_patch=16)
    sample = sr[0]
    assert sample["lq"].shape == (3, 16, 16) and sample["gt"].shape == (3, 32, 32)
    assert sample["lq"].dtype == sample["gt"].dtype == torch.float32
    denoise = DenoiseTrainSet([t91_subset], patch=48, grey=True)
    assert denoise[1]["lq"].shape == denoise[1]["gt"].shape == (1, 48, 48)
    assert DenoiseTrainSet([t91_subset], patch=48)[1]["gt"].shape == (3, 48, 48)
    jpeg = JPEGTrainSet([t91_subset], patch=64)
    assert jpeg[2]["lq"].shape == jpeg[2]["gt"].shape == (1, 64, 64)
    assert len(SRTrainSet([t91_subset], scale=2, lr_patch=16, repeat=3)) == 12


def test_images_smaller_than_the_patch_are_skipped_with_a_warning(t91_subset: HRSource) -> None:
    with pytest.warns(
        UserWarning, match=r"skipped 1 training image\(s\) smaller than 128x128 pixels, e.g. t12.png"
    ):
        dataset = SRTrainSet([t91_subset], scale=4, lr_patch=32)
    assert len(dataset) == 3


@pytest.mark.parametrize("kind", ["sr", "denoise", "jpeg"])
def test_same_seed_gives_same_batches_with_any_number_of_workers(t91_subset: HRSource, kind: str) -> None:
    build = {
        "sr": lambda: SRTrainSet([t91_subset], scale=2, lr_patch=16, seed=7, repeat=2),
        "denoise": lambda: DenoiseTrainSet([t91_subset], patch=32, seed=7, repeat=2),
        "jpeg": lambda: JPEGTrainSet([t91_subset], patch=32, seed=7, repeat=2),
    }[kind]
    dataset = build()
    dataset.set_epoch(3)
    serial = list(DataLoader(dataset, batch_size=3, num_workers=0))
    parallel = list(DataLoader(dataset, batch_size=3, num_workers=2))
    for a, b in zip(serial, parallel, strict=True):
        assert torch.equal(a["lq"], b["lq"]) and torch.equal(a["gt"], b["gt"])
    assert torch.equal(build().sample(4, 3)["lq"], dataset[4]["lq"])  # a fresh copy (a resumed run)
    dataset.set_epoch(4)
    assert not torch.equal(dataset[4]["lq"], serial[1]["lq"][1])


def _lr_error(gt: np.ndarray, lq: np.ndarray, inner: tuple[slice, slice]) -> int:
    """Largest grey-level gap between ``lq`` and the bicubic LR of ``gt``, over the inner window.

    MATLAB rounds after each 1-D pass and a 90-degree rotation swaps which pass runs first, so the LR is
    redone both ways (rows first, and columns first via a transpose) and the closer one counts.
    """
    transposed = np.swapaxes(bicubic_downsample(np.swapaxes(gt, 0, 1), 2), 0, 1)
    redone = (bicubic_downsample(gt, 2), transposed)
    return min(int(np.abs(r.astype(int) - lq)[inner].max()) for r in redone)


@pytest.mark.parametrize("cache_lr", [True, False])
def test_augmented_lq_is_the_bicubic_lr_of_the_augmented_gt(t91_subset: HRSource, cache_lr: bool) -> None:
    dataset = SRTrainSet([t91_subset], scale=2, lr_patch=24, cache_lr=cache_lr, repeat=4)
    border = 2 if cache_lr else 0  # a cached LR patch saw real neighbours where a re-degraded one mirrors
    inner = (slice(border, 24 - border), slice(border, 24 - border))
    misaligned = 0
    for index in range(len(dataset)):
        sample = dataset[index]
        lq, gt = _to_uint8(sample["lq"]), _to_uint8(sample["gt"])
        assert _lr_error(gt, lq, inner) <= 1  # 1 level: a float tie may round either way
        misaligned += _lr_error(gt[:, ::-1], lq, inner) > 1
    assert misaligned >= 14  # the check has teeth: a flipped gt does not match


def test_denoise_noise_is_per_patch_gaussian_and_unclipped(t91_subset: HRSource) -> None:
    dataset = DenoiseTrainSet([t91_subset], patch=64, sigma_range=(30, 30))
    residuals = [dataset[i]["lq"] - dataset[i]["gt"] for i in range(4)]
    for residual in residuals:
        assert residual.std().item() == pytest.approx(30 / 255, rel=0.05)
    blind = DenoiseTrainSet([t91_subset], patch=64, sigma_range=(0, 75), repeat=4)
    stds = [(blind[i]["lq"] - blind[i]["gt"]).std().item() * 255 for i in range(len(blind))]
    assert 0 <= min(stds) < 30 < max(stds) <= 76 and len(set(np.round(stds, 3))) == len(stds)
    assert min(blind[i]["lq"].min().item() for i in range(len(blind))) < 0


def _augmentations(image: np.ndarray) -> list[np.ndarray]:
    """The 8 flips / 90-degree rotations of an image."""
    rotations = [np.rot90(image, k) for k in range(4)]
    return rotations + [r[:, ::-1] for r in rotations]


def _pillow_jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer))


@pytest.mark.slow
def test_jpeg_samples_follow_the_published_recipe(tmp_path: Path) -> None:
    # One 72x72 noise image: the 72x72 crop is the whole image, so each sample can be re-derived.
    image = np.random.default_rng(0).integers(0, 256, (72, 72), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "noise.png")
    dataset = JPEGTrainSet([tmp_path], patch=64, quality_range=(0, 50), repeat=60)
    on_grid, qualities = 0, []
    for index in range(len(dataset)):
        sample = dataset[index]
        lq, gt = _to_uint8(sample["lq"])[:, :, 0], _to_uint8(sample["gt"])[:, :, 0]
        crop, dy, dx = next(
            (aug, dy, dx)
            for aug, dy, dx in itertools.product(_augmentations(image), range(9), range(9))
            if np.array_equal(aug[dy : dy + 64, dx : dx + 64], gt)
        )
        # quality 0 is encoded at libjpeg's minimum, 1
        quality = next(
            q for q in range(1, 51) if np.array_equal(_pillow_jpeg(crop, q)[dy : dy + 64, dx : dx + 64], lq)
        )
        on_grid += (dy, dx) == (0, 0)
        qualities.append(quality)
    assert 0.35 < on_grid / len(dataset) < 0.7  # half at (0, 0), half at a uniform offset in 0..8
    assert min(qualities) <= 5 and max(qualities) >= 45


def test_names_file_selects_the_bsd200_split() -> None:
    root = data_root()
    paths = HRSource(root / "CBSD432", root / "splits" / "BSD200.txt").paths()
    assert len(paths) == 200 and all(p.parent == root / "CBSD432" and p.is_file() for p in paths)


def test_user_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match=f"no images .* in {tmp_path / 'empty'}"):
        DenoiseTrainSet([tmp_path / "empty"])
    with pytest.raises(DataNotFoundError, match="not found"):
        SRTrainSet([tmp_path / "missing"], scale=2)
    (tmp_path / "names.txt").write_text("t1.png\nnot_there.png\n")
    with pytest.raises(DataNotFoundError, match=r"lists 1 file\(s\) absent from .*T91, e.g. not_there.png"):
        JPEGTrainSet([HRSource(data_root() / "T91", tmp_path / "names.txt")])
