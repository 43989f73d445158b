"""The degradations of the published protocols: Y channel, Gaussian noise, JPEG compression.

Each function reproduces one step of the protocol the published numbers were measured with (see
``docs/protocols.md``); bicubic downsampling lives in ``bbcu.imaging.imresize``.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from bbcu.imaging.pixels import to_float

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])
_Y_OFFSET = 16.0
TEST_NOISE_SEED = 0
_JPEG_QUALITY_MIN = 1


def rgb_to_y(img: np.ndarray, *, rounded: bool) -> np.ndarray:
    """Luma of MATLAB's ``rgb2ycbcr``: ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` with RGB in [0, 1].

    Args:
        img: ``HxWx3`` RGB, uint8 or float in [0, 1].
        rounded: Return uint8 rounded half away from zero (MATLAB's uint8 cast; used to make the JPEG
            protocol's grey images), else float64 on the 0..255 scale (used by the SR metrics).

    Returns:
        ``HxW`` Y channel.
    """
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"rgb_to_y expects an HxWx3 image, got shape {img.shape}")
    rgb = img.astype(np.float64) / 255 if img.dtype == np.uint8 else img.astype(np.float64)
    y = rgb @ _Y_WEIGHTS + _Y_OFFSET
    if rounded:
        return np.clip(np.floor(y + 0.5), 0, 255).astype(np.uint8)
    return y


def _as_float32(img: np.ndarray) -> np.ndarray:
    """uint8 to float32 in [0, 1]; a float image is only cast to float32."""
    return to_float(img) if img.dtype == np.uint8 else img.astype(np.float32)


def add_test_noise(img: np.ndarray, sigma: float) -> np.ndarray:
    """Denoising test protocol: Gaussian noise of std ``sigma / 255`` from a generator seeded with 0.

    The published protocol calls ``np.random.seed(0)`` before every image and adds
    ``np.random.normal(0, sigma / 255, shape)`` in place to the float32 image. A fresh
    ``RandomState(0)`` draws the same stream without touching NumPy's global generator. The sum is formed
    in float64 and stored as float32 (what an in-place ``+=`` on a float32 array does) and is not clipped.

    Args:
        img: uint8 or float image in [0, 1], any shape.
        sigma: Noise level on the 0..255 scale (15, 25, 50 in the published tables).

    Returns:
        Noisy float32 image, same shape.
    """
    clean = _as_float32(img)
    noise = np.random.RandomState(TEST_NOISE_SEED).normal(0, sigma / 255, clean.shape)
    return (clean + noise).astype(np.float32)


def add_train_noise(
    img_float: np.ndarray, sigma_range: tuple[float, float], rng: np.random.Generator
) -> np.ndarray:
    """Blind-denoising training noise: one ``sigma ~ U(sigma_range) / 255`` per patch, Gaussian, unclipped.

    Args:
        img_float: Float patch in [0, 1].
        sigma_range: ``(low, high)`` noise levels on the 0..255 scale, e.g. ``(0, 75)``.
        rng: The caller's generator, so that data-loading workers stay reproducible.

    Returns:
        Noisy patch with the dtype of ``img_float``.
    """
    sigma = rng.uniform(*sigma_range) / 255
    return (img_float + rng.normal(0.0, sigma, img_float.shape)).astype(img_float.dtype)


def jpeg_encode(img_uint8: np.ndarray, quality: int) -> bytes:
    """Baseline JPEG bytes from Pillow's libjpeg: grey stays one-channel, colour is 4:2:0, no optimisation.

    Quality 0 (the training protocol draws 0..50) is encoded as 1, the minimum libjpeg uses for any
    quality <= 0, so the clamp changes nothing but makes the effective setting explicit.

    Args:
        img_uint8: uint8 ``HxW`` or ``HxWx3``.
        quality: 0..100.

    Returns:
        The JPEG file's bytes.
    """
    if img_uint8.dtype != np.uint8:
        raise TypeError(f"JPEG input must be uint8, got {img_uint8.dtype}")
    if not 0 <= quality <= 100:
        raise ValueError(f"JPEG quality must be within 0..100, got {quality}")
    buffer = io.BytesIO()
    Image.fromarray(img_uint8).save(buffer, format="JPEG", quality=max(int(quality), _JPEG_QUALITY_MIN))
    return buffer.getvalue()


def jpeg_compress(img_uint8: np.ndarray, quality: int) -> np.ndarray:
    """Encode to JPEG at ``quality`` in memory and decode again (see ``jpeg_encode``)."""
    with Image.open(io.BytesIO(jpeg_encode(img_uint8, quality))) as decoded:
        return np.asarray(decoded).copy()
