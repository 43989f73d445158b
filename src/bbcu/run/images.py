"""The Python API of the main job: restore one image with a shipped, registered or user-given model.

``restore(image, model=...)`` hides everything between a picture and its restored version: finding the
model (a shipped name, a registry name, a weights file or a module), running it with bounded memory
(``bbcu.run.tiling.restore_array`` tiles large images) and handing back the same kind of object that came
in, so a caller working in PIL, NumPy or PyTorch never converts anything by hand::

    import bbcu
    sharp = bbcu.restore(pil_image, task="sr", scale=4)              # shipped bbcu-l-x4
    clean = bbcu.restore(noisy_uint8, model="dncnn-bbcu-blind")
    big = bbcu.restore(img, model="bicubic", scale=2)                # non-learned: no weights needed
    out = bbcu.restore(img, weights="runs/bbcu-l-x4/best.safetensors", engine="packed")

The model is resolved once by ``bbcu.run.resolve.resolve_model``; pass its result as ``model`` to
restore many images.
"""

from __future__ import annotations

import os
from typing import TypeVar

import numpy as np
import torch
from PIL import Image
from torch import nn

from bbcu.core.errors import InvalidArgumentError
from bbcu.imaging.imresize import imresize
from bbcu.imaging.pixels import to_uint8
from bbcu.run.resolve import ResolvedModel, resolve_model
from bbcu.run.tiling import restore_array

_KEPT_PIL_MODES = ("L", "LA", "RGB", "RGBA")
ALPHA_UPSAMPLERS = ("bicubic", "network")
"""How an SR output's alpha is made: MATLAB bicubic (the default), or the network on the alpha plane."""

ImageT = TypeVar("ImageT", np.ndarray, Image.Image, torch.Tensor)


def restore(
    image: ImageT,
    *,
    model: str | nn.Module | ResolvedModel | None = None,
    task: str | None = None,
    scale: int | None = None,
    weights: str | os.PathLike[str] | None = None,
    engine: str = "torch",
    tile: int | None = None,
    tile_overlap: int | None = None,
    device: str | torch.device = "cpu",
) -> ImageT:
    """Restore one image and return it in the type and layout it came in.

    Inputs and what comes back:

    - NumPy ``HxW``, ``HxWx1``, ``HxWx2`` (grey + alpha), ``HxWx3`` or ``HxWx4`` (RGBA), uint8 or float on
      [0, 1]: the same layout and dtype (float output is clipped to [0, 1]);
    - PIL images in modes L, LA, RGB, RGBA keep their mode; other modes are converted to RGB (RGBA when
      they carry transparency) and come back in that mode;
    - torch tensors ``CxHxW`` or ``NxCxHxW``, float on [0, 1] (C as for NumPy): same shape convention,
      dtype and device.

    Grey stays grey and colour stays colour whatever the model's channel count (see
    ``bbcu.run.tiling.restore_array``). Alpha is never fed to the network: it is carried through, and for
    super-resolution upscaled with the MATLAB bicubic, so transparency edges stay where they were.

    Args:
        image: The picture to restore.
        model: A shipped model name (``bbcu.zoo.list_shipped()``), a registry name that needs no weights
            (``"bicubic"``) or that ``weights`` fills, a path to a weights (``.safetensors``) or packed
            (``.bbcu``) file, a module, or a ``ResolvedModel``; None picks the shipped default of
            ``task``/``scale``.
        task: ``"sr"``, ``"denoise"`` or ``"jpeg"``; checked against the model (default ``"sr"`` when
            nothing else says).
        scale: SR factor; checked against the model (default 4 for SR when nothing else says).
        weights: A weights or packed file; the network is rebuilt from what the file records.
        engine: ``"torch"``, or ``"packed"`` for the 1-bit XNOR-popcount engine (binary BBCU models only).
        tile: Core tile size in input pixels; None tiles automatically once the image is large.
        tile_overlap: Context pixels around each tile; None uses the network's receptive radius, which
            makes tiled and whole-image outputs equal.
        device: Where the torch engine runs.

    Returns:
        The restored image, of the same type as ``image``.

    Raises:
        BbcuError: For a model that cannot be found or does not fit the task/scale asked for
            (see ``resolve_model``).
        TypeError: For an image type or layout that is not supported.
    """
    resolved = resolve_model(model, task=task, scale=scale, weights=weights, engine=engine)
    options = {"tile": tile, "tile_overlap": tile_overlap, "device": device}
    if isinstance(image, Image.Image):
        return _restore_pil(resolved, image, options)
    if isinstance(image, torch.Tensor):
        return _restore_tensor(resolved, image, options)
    if isinstance(image, np.ndarray):
        return restore_pixels(resolved, image, **options)
    raise TypeError(f"cannot restore a {type(image).__name__}: pass a NumPy array, a PIL image or a tensor")


def restore_pixels(
    model: ResolvedModel,
    image: np.ndarray,
    *,
    tile: int | None = None,
    tile_overlap: int | None = None,
    device: str | torch.device = "cpu",
    alpha_upsampler: str = "bicubic",
) -> np.ndarray:
    """Restore a NumPy image (layouts as in ``restore``), carrying alpha through; same dtype back.

    ``alpha_upsampler`` (one of ``ALPHA_UPSAMPLERS``) says how an SR output gets its alpha: MATLAB
    bicubic, or the network run on the alpha plane as a grey image (Real-ESRGAN's default). At scale 1
    alpha needs no upsampling and is carried unchanged either way.
    """
    if alpha_upsampler not in ALPHA_UPSAMPLERS:
        raise InvalidArgumentError(
            f"unknown alpha upsampler {alpha_upsampler!r}; choose one of {', '.join(ALPHA_UPSAMPLERS)}"
        )
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 2, 3, 4)):
        raise TypeError(f"cannot restore an array of shape {image.shape}: expected HxW or HxWxC, C in 1..4")
    if not (image.dtype == np.uint8 or np.issubdtype(image.dtype, np.floating)):
        raise TypeError(f"cannot restore a {image.dtype} array: expected uint8 or float on [0, 1]")
    pixels, alpha = split_alpha(image)
    tiling = {"tile": tile, "tile_overlap": tile_overlap, "device": device}
    restored = _as_dtype(restore_array(model.network, pixels, **tiling), image.dtype)
    if alpha is not None and alpha_upsampler == "network" and model.scale > 1:
        alpha = _as_dtype(restore_array(model.network, alpha, **tiling), alpha.dtype)
        restored = np.dstack([restored, alpha])
    elif alpha is not None:
        restored = np.dstack([restored, resize_alpha(alpha, model.scale)])
    elif image.ndim == 3 and image.shape[2] == 1:
        restored = restored[:, :, None]
    return restored


def _as_dtype(restored: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A float network output in the input's dtype: rounded to uint8, or clipped to [0, 1]."""
    if dtype == np.uint8:
        return quantised(restored)
    return np.clip(restored, 0, 1, out=restored).astype(dtype, copy=False)


def rescale_output(restored: np.ndarray, input_size: tuple[int, int], outscale: float) -> np.ndarray:
    """A restored image resized to ``outscale`` times the input size, for an output scale other than the
    network's (an x4 network, an x3.5 picture), with MATLAB bicubic; same layout and dtype back.

    The size is ``int(side * outscale)`` (at least 1), as Real-ESRGAN's ``--outscale`` gives it; an output
    already that size is returned untouched.
    """
    if not outscale > 0:  # NaN included
        raise InvalidArgumentError(f"the output scale must be positive, got {outscale}")
    size = tuple(max(1, int(side * outscale)) for side in input_size)
    if size == restored.shape[:2]:
        return restored
    return _bicubic(restored, output_shape=size)


def quantised(image: np.ndarray, band_rows: int = 256) -> np.ndarray:
    """``to_uint8`` a band of rows at a time, so a large output needs no full-size float temporaries.

    An 8000x8000 colour output is 768 MB in float32; converting it whole would hold two or three more
    such arrays at once, which is what keeps a 2000x2000 x4 restoration from fitting in 4 GB.
    """
    out = np.empty(image.shape, np.uint8)
    for top in range(0, image.shape[0], band_rows):
        out[top : top + band_rows] = to_uint8(image[top : top + band_rows])
    return out


def split_alpha(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Colour or grey pixels (``HxW`` / ``HxWx3``) and the alpha plane (``HxW``) when there is one."""
    if image.ndim == 2:
        return image, None
    channels = image.shape[2]
    if channels in (2, 4):
        return image[:, :, : channels - 1].squeeze(axis=2) if channels == 2 else image[:, :, :3], image[
            :, :, -1
        ]
    return (image[:, :, 0] if channels == 1 else image), None


def resize_alpha(alpha: np.ndarray, scale: int) -> np.ndarray:
    """Alpha at the output size: MATLAB-bicubic upscaled for SR (uint8 stays uint8), unchanged otherwise."""
    return alpha if scale == 1 else _bicubic(alpha, scale=scale)


def _bicubic(image: np.ndarray, **size: object) -> np.ndarray:
    """MATLAB-bicubic ``imresize`` keeping the dtype: uint8 stays uint8, float is clipped to [0, 1]."""
    resized = imresize(image, **size)
    return resized if image.dtype == np.uint8 else np.clip(resized, 0, 1).astype(image.dtype)


def _restore_pil(model: ResolvedModel, image: Image.Image, options: dict[str, object]) -> Image.Image:
    if image.mode not in _KEPT_PIL_MODES:
        image = image.convert("RGBA" if image.has_transparency_data else "RGB")
    return Image.fromarray(restore_pixels(model, np.asarray(image), **options))


def _restore_tensor(model: ResolvedModel, image: torch.Tensor, options: dict[str, object]) -> torch.Tensor:
    if not image.is_floating_point() or image.dim() not in (3, 4):
        raise TypeError(
            f"expected a float CxHxW or NxCxHxW tensor on [0, 1], got {image.dtype} {tuple(image.shape)}"
        )
    batch = image if image.dim() == 4 else image.unsqueeze(0)
    restored = [
        torch.from_numpy(
            restore_pixels(model, chw.detach().to("cpu", torch.float32).permute(1, 2, 0).numpy(), **options)
        ).permute(2, 0, 1)
        for chw in batch
    ]
    stacked = torch.stack(restored).to(image.device, image.dtype)
    return stacked if image.dim() == 4 else stacked[0]
