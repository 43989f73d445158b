"""The pixel conventions every layer shares: uint8 <-> float on [0, 1], and arrays <-> NCHW tensors.

One rounding rule (``to_uint8``) decides every score the project reports, so it has exactly one home,
below the networks (the bicubic baseline rounds with it) and the file formats alike.
"""

from __future__ import annotations

import numpy as np
import torch


def to_float(img: np.ndarray) -> np.ndarray:
    """uint8 image to float32 in [0, 1] (``x / 255``)."""
    if img.dtype != np.uint8:
        raise TypeError(f"to_float expects a uint8 image, got {img.dtype}")
    return img.astype(np.float32) / np.float32(255)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] to uint8: clip, ``x * 255``, round half to even (``np.round``).

    This is the BasicSR/KAIR convention (``(x * 255).round()``) that the published scores were computed
    with; the arithmetic stays in the input's precision (float32 stays float32), as theirs does.
    """
    if not np.issubdtype(img.dtype, np.floating):
        raise TypeError(f"to_uint8 expects a float image in [0, 1], got {img.dtype}")
    scaled = np.clip(img, 0, 1) * img.dtype.type(255)
    return np.round(scaled).astype(np.uint8)


def image_to_tensor(img: np.ndarray) -> torch.Tensor:
    """``HxW`` or ``HxWxC`` image to a float32 ``(1, C, H, W)`` tensor; uint8 is scaled to [0, 1] first."""
    floats = to_float(img) if img.dtype == np.uint8 else img.astype(np.float32)
    if floats.ndim == 2:
        floats = floats[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(floats.transpose(2, 0, 1))).unsqueeze(0)


def tensor_to_image(tensor: torch.Tensor) -> np.ndarray:
    """A ``(1, C, H, W)`` or ``(C, H, W)`` tensor to float32 ``HxW`` (C = 1) or ``HxWxC``, unclipped."""
    if tensor.dim() == 4:
        if tensor.shape[0] != 1:
            raise ValueError(f"expected a batch of one image, got shape {tuple(tensor.shape)}")
        tensor = tensor[0]
    if tensor.dim() != 3:
        raise ValueError(f"expected a (1, C, H, W) or (C, H, W) tensor, got shape {tuple(tensor.shape)}")
    array = tensor.detach().to("cpu", torch.float32).numpy().transpose(1, 2, 0)
    return np.ascontiguousarray(array[:, :, 0] if array.shape[2] == 1 else array)
