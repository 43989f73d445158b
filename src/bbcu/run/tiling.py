"""Running any restoration model on one image: no-grad, channels_last, tiled when the image is large.

Tiling keeps the centre of each tile instead of blending overlaps: every tile is run with
``tile_overlap`` extra LQ pixels of real context on each side, and only its core is kept. When that
margin covers the network's receptive radius, each kept pixel sees exactly the input it would see in a
whole-image run, so tiled and whole outputs agree to float rounding (averaging overlaps, as KAIR and
SwinIR do, only approximates it). ``receptive_radius`` gives a safe margin for the networks here, and
is the default.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from bbcu.archs.registry import create_model, without_initialisation
from bbcu.core.errors import InvalidArgumentError, NonFiniteError
from bbcu.imaging.pixels import image_to_tensor, tensor_to_image

logger = logging.getLogger(__name__)

DEFAULT_PIXEL_BUDGET = 1 << 20
"""Output pixels run in one piece before tiling starts on its own (a 64-channel float feature map of
this size is 256 MiB, so a whole-image pass stays around 1 GiB at most)."""
INTERPOLATION_REACH = 2
"""LQ pixels an interpolated skip reads beyond its centre (bilinear 1, MATLAB bicubic 2)."""
_MIN_AUTO_TILE = 32


def receptive_radius(model: nn.Module) -> int:
    """An upper bound, in LQ pixels, on how far an output pixel's input reaches from its own position.

    Sums the half-widths of every convolution as if all ran at LQ resolution (convolutions after an
    upsampler reach less far in LQ pixels, so this over-counts, which is the safe side) and adds the
    reach of interpolated skips. SRResNet x4 gives 39, DnCNN 22. A model holding no ``nn.Conv2d`` of
    its own but built by name (the packed engine's ``PackedModel``) is measured through the registry
    network it stands for, built on the meta device: only its shapes are read, so arguments naming an
    enormous network cost no memory.
    """
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs and hasattr(model, "model_name"):
        with without_initialisation(shapes_only=True):
            reference = create_model(model.model_name, **getattr(model, "model_kwargs", {}))
        convs = [m for m in reference.modules() if isinstance(m, nn.Conv2d)]
    reach = sum(max(d * (k - 1) // 2 for k, d in zip(m.kernel_size, m.dilation, strict=True)) for m in convs)
    return (reach + INTERPOLATION_REACH) * input_stride(model)


def input_stride(model: nn.Module) -> int:
    """LQ pixels per trunk pixel: a network that pixel-unshuffles its input (RRDBNet x1 and x2, attribute
    ``unshuffle``) runs every conv at that stride, so its reach and its tile grid scale with it."""
    return int(getattr(model, "unshuffle", 1))


def restore_array(
    model: nn.Module,
    lq: np.ndarray,
    *,
    tile: int | None = None,
    tile_overlap: int | None = None,
    device: str | torch.device = "cpu",
    pixel_budget: int = DEFAULT_PIXEL_BUDGET,
) -> np.ndarray:
    """Run ``model`` on one image and return its output as a float array on the [0, 1] scale.

    Grey and colour are matched to the model's ``in_channels``: a grey image on a colour model is
    replicated to three channels and the output averaged back to one (a model that sees equal channels
    should return equal channels; averaging absorbs any small disagreement); a colour image on a grey
    model is restored channel by channel, each channel as its own grey image. The output keeps the
    input's layout (HxW stays HxW). The model is switched to eval mode and channels_last in place.

    Args:
        model: A restoration network with ``in_channels`` and ``scale`` (1 when absent) attributes,
            taking (N, C, H, W) float tensors on the [0, 1] scale.
        lq: HxW or HxWx3 image, uint8 (0..255) or float (0..1, may lie outside it, e.g. noisy input).
        tile: Core tile size in LQ pixels; None runs whole unless the output would exceed
            ``pixel_budget`` pixels, in which case a tile size that fits the budget is picked.
        tile_overlap: LQ pixels of context around each tile's core; None means
            ``receptive_radius(model)``, which makes the tiled output equal the whole-image one.
        device: Where to run.
        pixel_budget: Output pixels allowed in one forward pass when ``tile`` is None.

    Returns:
        float32 array, HxW or HxWx3 (scaled by the model's ``scale``), not clamped.

    Raises:
        NonFiniteError: If the network's output holds NaN or infinity (it is no picture).
        InvalidArgumentError: If the image is empty, holds NaN or infinity, or has a channel count other
            than 1 or 3, ``tile`` is not positive or ``tile_overlap`` is negative.
    """
    scale = int(getattr(model, "scale", 1))
    margin = receptive_radius(model) if tile_overlap is None else tile_overlap
    x = _to_model_input(lq, int(model.in_channels))
    if tile is None:
        if tile_overlap is None:
            margin = _affordable_margin(margin, scale, pixel_budget)
        tile = _auto_tile(x.shape[-2:], scale, margin, pixel_budget)
    elif tile <= 0:
        raise InvalidArgumentError(f"tile size must be positive, got {tile}")
    if margin < 0:
        raise InvalidArgumentError(f"tile overlap must not be negative, got {margin}")
    # Tiles of an unshuffling network start on its stride grid, as the whole image's pixels do.
    stride = input_stride(model)
    tile, margin = -(-tile // stride) * stride, -(-margin // stride) * stride
    model.eval().to(device, memory_format=torch.channels_last)
    with torch.inference_mode():
        y = _run_tiled(model, x.to(device), tile, margin, scale)
    return _from_model_output(y.cpu(), lq.ndim, int(model.in_channels))


def _to_model_input(lq: np.ndarray, in_channels: int) -> torch.Tensor:
    """(N, C, H, W) float32 tensor: grey is replicated for colour models, colour is batched for grey ones."""
    if lq.ndim == 3 and lq.shape[2] == 1:
        lq = lq[:, :, 0]
    if lq.ndim not in (2, 3) or (lq.ndim == 3 and lq.shape[2] != 3):
        raise InvalidArgumentError(f"cannot restore an image of shape {lq.shape}: expected HxW or HxWx3")
    if 0 in lq.shape[:2]:
        raise InvalidArgumentError(f"cannot restore an empty image (shape {lq.shape}): it has no pixel")
    if lq.dtype != np.uint8 and not np.isfinite(lq).all():
        raise InvalidArgumentError("cannot restore an image holding NaN or infinite values")
    x = image_to_tensor(lq)
    if x.shape[1] == in_channels:
        return x
    if in_channels == 1:
        return x.permute(1, 0, 2, 3)
    return x.expand(1, in_channels, *x.shape[2:])


def _from_model_output(y: torch.Tensor, ndim: int, in_channels: int) -> np.ndarray:
    """Undo ``_to_model_input``'s channel mapping: back to HxW or HxWx3 float32."""
    if y.shape[0] > 1:
        y = y.permute(1, 0, 2, 3)
    elif ndim == 2 and in_channels > 1:
        y = y.mean(dim=1, keepdim=True)
    return tensor_to_image(y)


def _affordable_margin(radius: int, scale: int, pixel_budget: int) -> int:
    """The automatic overlap: the receptive radius while it leaves each tile's core at least half its
    side, else that quarter of the side, so a very deep network (RRDBNet's 23 blocks reach 353 pixels)
    does not compute each small core inside hundreds of pixels of context. A capped overlap is logged:
    tile seams may then differ from a whole-image run by the little the far context contributes."""
    cap = math.isqrt(pixel_budget) // scale // 4
    if radius <= cap:
        return radius
    logger.info("tiles overlap by %d input pixels, less than the receptive radius %d", cap, radius)
    return cap


def _auto_tile(size: torch.Size, scale: int, margin: int, pixel_budget: int) -> int:
    """Largest core tile whose padded output fits ``pixel_budget``, or the whole image if it fits."""
    height, width = size
    if height * width * scale * scale <= pixel_budget:
        return max(height, width)
    return max(_MIN_AUTO_TILE, math.isqrt(pixel_budget) // scale - 2 * margin)


def _run_tiled(model: nn.Module, x: torch.Tensor, tile: int, margin: int, scale: int) -> torch.Tensor:
    """Run tile by tile, each with ``margin`` pixels of context, keeping only each tile's core output."""
    height, width = x.shape[-2:]
    output: torch.Tensor | None = None
    for core, padded in _tile_boxes(height, width, tile, margin):
        piece = model(
            x[..., padded[0] : padded[1], padded[2] : padded[3]].contiguous(memory_format=torch.channels_last)
        )
        if not torch.isfinite(piece).all():  # tile by tile: no full-size temporary
            name = getattr(model, "model_name", type(model).__name__)
            raise NonFiniteError(f"{name} produced NaN or infinite values: its weights are damaged")
        if output is None:
            output = piece.new_empty(x.shape[0], piece.shape[1], height * scale, width * scale)
        top, left = (core[0] - padded[0]) * scale, (core[2] - padded[2]) * scale
        rows, cols = (core[1] - core[0]) * scale, (core[3] - core[2]) * scale
        output[..., core[0] * scale : core[1] * scale, core[2] * scale : core[3] * scale] = piece[
            ..., top : top + rows, left : left + cols
        ]
    assert output is not None
    return output


Box = tuple[int, int, int, int]


def _tile_boxes(height: int, width: int, tile: int, margin: int) -> Iterator[tuple[Box, Box]]:
    """(core, padded) boxes as (top, bottom, left, right): cores cover the image once, padded adds context."""
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            padded = (
                max(0, top - margin),
                min(height, bottom + margin),
                max(0, left - margin),
                min(width, right + margin),
            )
            yield (top, bottom, left, right), padded
