"""Metrics against closed forms, a loop-based second implementation, and published baseline scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch.nn.functional as F

from bbcu.core.errors import InvalidArgumentError
from bbcu.data.degradations import jpeg_compress, rgb_to_y
from bbcu.data.root import data_root
from bbcu.formats.image_io import read_image
from bbcu.imaging.imresize import imresize
from bbcu.imaging.pixels import image_to_tensor, tensor_to_image, to_uint8
from bbcu.metrics.quality import calculate_psnr, calculate_psnrb, calculate_ssim, evaluate_pair

C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def _loop_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM written the slow, literal way: a full 11x11 window at every valid position."""
    g = [math.exp(-((i - 5) ** 2) / (2 * 1.5**2)) for i in range(11)]
    total = sum(g) ** 2
    window = np.array([[gi * gj / total for gj in g] for gi in g])
    values = []
    for y in range(a.shape[0] - 10):
        for x in range(a.shape[1] - 10):
            pa, pb = a[y : y + 11, x : x + 11], b[y : y + 11, x : x + 11]
            mu_a, mu_b = np.sum(window * pa), np.sum(window * pb)
            var_a = np.sum(window * (pa - mu_a) ** 2)
            var_b = np.sum(window * (pb - mu_b) ** 2)
            cov = np.sum(window * (pa - mu_a) * (pb - mu_b))
            values.append(
                (2 * mu_a * mu_b + C1) * (2 * cov + C2) / ((mu_a**2 + mu_b**2 + C1) * (var_a + var_b + C2))
            )
    return float(np.mean(values))


def _loop_psnrb(img: np.ndarray, ref: np.ndarray) -> float:
    """PSNR-B of one grey image from Yim & Bovik's definition, pair by pair (KAIR's boundary counts)."""
    img, ref = img.astype(np.float64), ref.astype(np.float64)
    height, width = img.shape
    boundary, other = [], []
    for y in range(height):
        for x in range(width - 1):
            (boundary if x % 8 == 7 else other).append((img[y, x] - img[y, x + 1]) ** 2)
    for y in range(height - 1):
        for x in range(width):
            (boundary if y % 8 == 7 else other).append((img[y, x] - img[y + 1, x]) ** 2)
    n_boundary = height * (width // 8 - 1) + width * (height // 8 - 1)
    mean_boundary = sum(boundary) / n_boundary
    mean_other = sum(other) / (len(boundary) + len(other) - n_boundary)
    bef = max(0.0, math.log2(8) / math.log2(min(height, width)) * (mean_boundary - mean_other))
    mse = float(np.mean((img - ref) ** 2))
    return 10 * math.log10(255**2 / (mse + bef))


def test_psnr_closed_form_and_identical_images() -> None:
    """A uniform error of 10 grey levels is MSE 100, i.e. 10 log10(255^2 / 100) = 28.1308 dB."""
    ref = np.zeros((20, 30, 3), np.uint8)
    assert calculate_psnr(ref + 10, ref) == pytest.approx(10 * math.log10(65025 / 100), abs=1e-12)
    assert calculate_psnr(ref, ref) == float("inf")
    framed = ref.copy()
    framed[:2] = 200
    assert calculate_psnr(framed, ref, crop_border=2) == float("inf")
    assert calculate_psnr(framed, ref, crop_border=1) < 30


def test_psnr_on_y_channel_uses_unrounded_rgb2ycbcr() -> None:
    rng = np.random.default_rng(3)
    img, ref = (rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(2))
    mse = np.mean((rgb_to_y(img, rounded=False) - rgb_to_y(ref, rounded=False)) ** 2)
    assert calculate_psnr(img, ref, y_channel=True) == pytest.approx(10 * math.log10(65025 / mse), abs=1e-10)
    assert calculate_psnr(img[:, :, 0], ref[:, :, 0], y_channel=True) == calculate_psnr(
        img[:, :, 0], ref[:, :, 0]
    )


@pytest.mark.parametrize("shape", [(14, 19), (13, 12, 3)])
def test_ssim_matches_a_literal_windowed_implementation(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(4)
    ref = rng.integers(0, 256, shape, dtype=np.uint8)
    img = np.clip(ref + rng.normal(0, 30, shape), 0, 255).astype(np.uint8)
    channels = [(img, ref)] if img.ndim == 2 else [(img[:, :, c], ref[:, :, c]) for c in range(3)]
    expected = np.mean([_loop_ssim(a.astype(np.float64), b.astype(np.float64)) for a, b in channels])
    assert calculate_ssim(img, ref) == pytest.approx(expected, abs=1e-12)


def test_ssim_of_flat_images_is_the_luminance_term() -> None:
    """With no variance SSIM reduces to (2ab + C1) / (a^2 + b^2 + C1); identical images score 1."""
    a, b = np.full((16, 16), 100, np.uint8), np.full((16, 16), 140, np.uint8)
    assert calculate_ssim(a, b) == pytest.approx((2 * 100 * 140 + C1) / (100**2 + 140**2 + C1), abs=1e-12)
    assert calculate_ssim(b, b) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(InvalidArgumentError, match="at least 11x11"):
        calculate_ssim(a[:10], b[:10])


def test_psnrb_of_a_pure_block_edge_image() -> None:
    """Steps of 10 only across the column-7/8 edge of a 16x16 image: BEF = (3 / 4) * 16 * 100 / 32."""
    img = np.repeat(np.where(np.arange(16) < 8, 50, 60)[None, :], 16, axis=0).astype(np.uint8)
    bef = math.log2(8) / math.log2(16) * (16 * 100) / 32
    assert calculate_psnrb(img, img) == pytest.approx(10 * math.log10(65025 / bef), abs=1e-12)
    assert calculate_psnrb(img.T.copy(), img.T.copy()) == pytest.approx(
        10 * math.log10(65025 / bef), abs=1e-12
    )


@pytest.mark.parametrize("shape", [(24, 32), (21, 27)])
def test_psnrb_matches_a_pair_by_pair_implementation(shape: tuple[int, int]) -> None:
    ref = read_image(data_root() / "Classic5" / "boats.png")[100 : 100 + shape[0], 200 : 200 + shape[1]]
    img = jpeg_compress(np.ascontiguousarray(ref), 10)
    assert calculate_psnrb(img, ref) == pytest.approx(_loop_psnrb(img, ref), abs=1e-10)
    assert calculate_psnrb(img, ref) < calculate_psnr(img, ref)


def _mean_sr_scores(set_name: str, scale: int, upscale) -> tuple[float, float]:
    """Mean Y PSNR / SSIM of ``upscale(official LR, scale)`` against HR cropped to its size, crop = scale."""
    folder = data_root() / set_name
    scores = []
    for hr_file in sorted((folder / "HR").glob("*.png")):
        hr, lr = (
            read_image(hr_file),
            read_image(folder / "LR_bicubic" / f"X{scale}" / f"{hr_file.stem}x{scale}.png"),
        )
        if hr.ndim == 2:
            hr, lr = np.dstack([hr] * 3), np.dstack([lr] * 3)
        upscaled = upscale(lr, scale)
        scores.append(evaluate_pair(upscaled, hr[: upscaled.shape[0], : upscaled.shape[1]], "sr", scale))
    return float(np.mean([s["psnr"] for s in scores])), float(np.mean([s["ssim"] for s in scores]))


@pytest.mark.parametrize(("scale", "psnr", "ssim"), [(2, 33.67, 0.9303), (4, 28.43, 0.8111)])
def test_bicubic_baseline_on_set5(scale: int, psnr: float, ssim: float) -> None:
    """Official LR files upscaled MATLAB-exactly, Y channel, crop = scale: the widely quoted bicubic row.

    The published BBCU tables' bicubic row (33.97 / 28.63) uses another upscaler; see the next test.
    """
    mean_psnr, mean_ssim = _mean_sr_scores("Set5", scale, imresize)
    assert mean_psnr == pytest.approx(psnr, abs=0.01)
    assert mean_ssim == pytest.approx(ssim, abs=0.0005)


def _torch_bicubic(lr: np.ndarray, scale: int) -> np.ndarray:
    upscaled = F.interpolate(image_to_tensor(lr), scale_factor=scale, mode="bicubic", align_corners=False)
    return to_uint8(tensor_to_image(upscaled))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("set_name", "scale", "psnr", "ssim"),
    [("Set5", 2, 33.97, 0.9330), ("Set14", 2, 30.55, 0.8750), ("Set14", 4, 26.21, 0.7087)],
)
def test_published_bicubic_row_is_pytorch_bicubic_upscaling(
    set_name: str, scale: int, psnr: float, ssim: float
) -> None:
    """The BBCU tables' bicubic row is reproduced by PyTorch's bicubic (a = -0.75) from the same LR files.

    This documents why that row is about 0.3 dB above the MATLAB-bicubic baseline; it is not the protocol.
    """
    mean_psnr, mean_ssim = _mean_sr_scores(set_name, scale, _torch_bicubic)
    assert mean_psnr == pytest.approx(psnr, abs=0.01)
    assert mean_ssim == pytest.approx(ssim, abs=0.0005)


def test_unrestored_jpeg_on_classic5_at_quality_10() -> None:
    """Grey Classic5 through Pillow's JPEG at q10: about 27.82 dB PSNR and 25.21 dB PSNR-B."""
    scores = []
    for path in sorted((data_root() / "Classic5").glob("*.png")):
        gt = read_image(path)
        scores.append(evaluate_pair(jpeg_compress(gt, 10), gt, "jpeg"))
    assert len(scores) == 5
    assert set(scores[0]) == {"psnr", "ssim", "psnrb"}
    assert np.mean([s["psnr"] for s in scores]) == pytest.approx(27.82, abs=0.01)
    assert np.mean([s["psnrb"] for s in scores]) == pytest.approx(25.21, abs=0.01)


@pytest.mark.slow
def test_unrestored_jpeg_on_live1_y_at_quality_10() -> None:
    """LIVE1's rounded MATLAB Y at q10: 27.77 dB / 0.773 / PSNR-B 25.33, the JPEG row of QGAC/FBCNN tables."""
    scores = []
    for path in sorted((data_root() / "LIVE1").glob("*.png")):
        gt = rgb_to_y(read_image(path), rounded=True)
        scores.append(evaluate_pair(jpeg_compress(gt, 10), gt, "jpeg"))
    assert len(scores) == 29
    assert np.mean([s["psnr"] for s in scores]) == pytest.approx(27.77, abs=0.01)
    assert np.mean([s["ssim"] for s in scores]) == pytest.approx(0.773, abs=0.0005)
    assert np.mean([s["psnrb"] for s in scores]) == pytest.approx(25.33, abs=0.01)


def test_evaluate_pair_protocols_and_errors() -> None:
    """Denoising scores all RGB channels without a crop; SR scores Y with a crop; bad input is refused."""
    rng = np.random.default_rng(5)
    gt = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    out = gt.copy()
    out[0, 0] = 255 - out[0, 0]
    denoise = evaluate_pair(out, gt, "denoise")
    assert set(denoise) == {"psnr", "ssim"}
    assert denoise["psnr"] == pytest.approx(calculate_psnr(out, gt), abs=1e-12)
    assert evaluate_pair(out, gt, "sr", scale=2) == {"psnr": float("inf"), "ssim": pytest.approx(1.0)}
    with pytest.raises(InvalidArgumentError, match="unknown task"):
        evaluate_pair(out, gt, "deblur")
    with pytest.raises(InvalidArgumentError, match="differ in size"):
        evaluate_pair(out[1:], gt, "denoise")
    with pytest.raises(TypeError, match="uint8"):
        evaluate_pair(out / 255, gt, "denoise")
