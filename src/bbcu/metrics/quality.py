"""PSNR, SSIM and PSNR-B with the exact conventions of the published tables (docs/protocols.md).

Scores from different codebases are only comparable when every convention matches: uint8 inputs,
float64 arithmetic, MATLAB's Y channel (unrounded), the crop, SSIM's Gaussian window and its 'valid'
region. ``evaluate_pair`` bundles them per task so that callers cannot mix them up.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from bbcu.core.constants import TASKS
from bbcu.core.errors import InvalidArgumentError
from bbcu.data.degradations import rgb_to_y

PEAK = 255.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = (0.01 * PEAK) ** 2
SSIM_C2 = (0.03 * PEAK) ** 2
JPEG_BLOCK = 8


def _prepare(
    img: np.ndarray, ref: np.ndarray, crop_border: int, y_channel: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Check the pair, take the Y channel of colour images if asked, crop, and return float64 ``HxWxC``.

    Only uint8 is accepted: the protocol rounds to uint8 before scoring, and a float image in [0, 1]
    would otherwise be scored as nearly black without any error.
    """
    if img.dtype != np.uint8 or ref.dtype != np.uint8:
        raise TypeError(f"metrics take uint8 images (see to_uint8), got {img.dtype} and {ref.dtype}")
    if img.shape != ref.shape:
        raise InvalidArgumentError(f"images differ in size: {img.shape} vs {ref.shape}")
    pair = []
    for array in (img, ref):
        if y_channel and array.ndim == 3 and array.shape[2] == 3:
            array = rgb_to_y(array, rounded=False)
        array = array.astype(np.float64)
        if array.ndim == 2:
            array = array[:, :, None]
        if crop_border:
            array = array[crop_border:-crop_border, crop_border:-crop_border]
        pair.append(array)
    return pair[0], pair[1]


def calculate_psnr(
    img: np.ndarray, ref: np.ndarray, *, crop_border: int = 0, y_channel: bool = False
) -> float:
    """``10 log10(255^2 / MSE)`` over all pixels and channels; ``inf`` for identical images.

    Args:
        img: Image to score, uint8 ``HxW`` or ``HxWxC``.
        ref: Ground truth of the same shape.
        crop_border: Pixels removed from every side first (the SR scale in the SR protocol).
        y_channel: Score the unrounded MATLAB Y channel of RGB images (grey images are used as they are).
    """
    a, b = _prepare(img, ref, crop_border, y_channel)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(PEAK**2 / mse)


def gaussian_window_1d(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian; SSIM's 2-D window is its outer product with itself."""
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2
    weights = np.exp(-(offsets**2) / (2 * sigma**2))
    return weights / weights.sum()


def _valid_filter(img: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of a 2-D image with ``outer(window, window)``: columns, then rows."""
    columns = sliding_window_view(img, window.size, axis=0) @ window
    return sliding_window_view(columns, window.size, axis=1) @ window


def _ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM map of two float64 2-D images over the 'valid' region of the 11x11 Gaussian window."""
    window = gaussian_window_1d()
    mu_a, mu_b = _valid_filter(a, window), _valid_filter(b, window)
    var_a = _valid_filter(a * a, window) - mu_a**2
    var_b = _valid_filter(b * b, window) - mu_b**2
    covariance = _valid_filter(a * b, window) - mu_a * mu_b
    numerator = (2 * mu_a * mu_b + SSIM_C1) * (2 * covariance + SSIM_C2)
    denominator = (mu_a**2 + mu_b**2 + SSIM_C1) * (var_a + var_b + SSIM_C2)
    return numerator / denominator


def calculate_ssim(
    img: np.ndarray, ref: np.ndarray, *, crop_border: int = 0, y_channel: bool = False
) -> float:
    """Mean SSIM (Wang et al. 2004, 11x11 Gaussian window, sigma 1.5), per channel then averaged.

    Arguments as in ``calculate_psnr``. Images smaller than the window after
    cropping raise ``InvalidArgumentError``.
    """
    a, b = _prepare(img, ref, crop_border, y_channel)
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise InvalidArgumentError(
            f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {a.shape[:2]}"
        )
    return float(np.mean([_ssim_map(a[:, :, c], b[:, :, c]).mean() for c in range(a.shape[2])]))


def blocking_effect_factor(img: np.ndarray) -> float:
    """Yim & Bovik's BEF of a 2-D image on the 0..255 scale: excess squared steps across 8x8 block edges.

    The pair counts follow the KAIR implementation that published PSNR-B values come from
    (``H * (W // 8 - 1)`` boundary pairs per direction), which is exact when the sides are multiples of 8.
    """
    height, width = img.shape
    cols = np.arange(JPEG_BLOCK - 1, width - 1, JPEG_BLOCK)
    rows = np.arange(JPEG_BLOCK - 1, height - 1, JPEG_BLOCK)
    step_h = (img[:, 1:] - img[:, :-1]) ** 2
    step_v = (img[1:, :] - img[:-1, :]) ** 2
    boundary_sum = step_h[:, cols].sum() + step_v[rows, :].sum()
    other_sum = step_h.sum() + step_v.sum() - boundary_sum
    n_boundary = height * (width // JPEG_BLOCK - 1) + width * (height // JPEG_BLOCK - 1)
    n_other = height * (width - 1) + width * (height - 1) - n_boundary
    boundary, other = boundary_sum / n_boundary, other_sum / n_other
    if boundary <= other:
        return 0.0
    return float(math.log2(JPEG_BLOCK) / math.log2(min(height, width)) * (boundary - other))


def calculate_psnrb(
    img: np.ndarray, ref: np.ndarray, *, crop_border: int = 0, y_channel: bool = False
) -> float:
    """PSNR-B (Yim & Bovik 2011): ``10 log10(255^2 / (MSE + BEF(img)))``, per channel then averaged.

    The blocking effect factor is measured on ``img``, the image being judged. Arguments as in
    ``calculate_psnr``; the JPEG protocol uses it on grey / Y images.
    """
    a, b = _prepare(img, ref, crop_border, y_channel)
    scores = []
    for c in range(a.shape[2]):
        denominator = float(np.mean((a[:, :, c] - b[:, :, c]) ** 2)) + blocking_effect_factor(a[:, :, c])
        scores.append(float("inf") if denominator == 0 else 10 * math.log10(PEAK**2 / denominator))
    return float(np.mean(scores))


def evaluate_pair(
    output_uint8: np.ndarray, gt_uint8: np.ndarray, task: str, scale: int = 1
) -> dict[str, float]:
    """Score one restored image with its task's published protocol.

    - ``sr``: Y channel (unrounded), ``scale`` pixels cropped from every side; the caller crops the HR
      image to the LR size times ``scale``.
    - ``denoise``: all channels (RGB, or grey for grey sets), no crop.
    - ``jpeg``: Y channel of colour images, grey as it is, no crop; adds ``psnrb``.

    Identical images score ``psnr = inf`` (and ``psnrb = inf``).

    Returns:
        ``{"psnr", "ssim"}``, plus ``"psnrb"`` for ``jpeg``.
    """
    if task not in TASKS:
        raise InvalidArgumentError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    options = {"crop_border": scale if task == "sr" else 0, "y_channel": task != "denoise"}
    scores = {
        "psnr": calculate_psnr(output_uint8, gt_uint8, **options),
        "ssim": calculate_ssim(output_uint8, gt_uint8, **options),
    }
    if task == "jpeg":
        scores["psnrb"] = calculate_psnrb(output_uint8, gt_uint8, **options)
    return scores
