"""Reading and writing images as NumPy arrays, and the conversions every other module relies on.

One array convention everywhere: uint8, ``HxW`` for grey and ``HxWx3`` (RGB order) for colour, so a
metric, a degradation or a network never has to guess what a file held. Decoding quirks (palettes,
alpha, 16-bit samples, EXIF rotation) are settled here, once, and reading never returns a partial image:
a damaged file is an error naming the file, because a silently truncated test image would shift a
published score without anyone noticing.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

from bbcu.core.atomic import atomic_path
from bbcu.core.errors import InvalidArgumentError, InvalidFileError

IMAGE_EXTENSIONS: tuple[str, ...] = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")

_FORMAT_BY_EXTENSION = {
    ".bmp": "BMP",
    ".jpeg": "JPEG",
    ".jpg": "JPEG",
    ".png": "PNG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_LOW_BYTE_RAWMODES = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L"}
_FORMATS_WITHOUT_ALPHA = {"JPEG", "BMP"}
_GREY_MODES = {"1", "L", "LA", "La"}
_WIDE_SAMPLES = {"I": "32-bit integer", "F": "floating-point"}
"""Modes whose samples have no agreed 8-bit scale (``I`` from a PNG is 16-bit grey in older Pillow)."""


class ImageReadError(InvalidFileError):
    """A file that is missing, empty, truncated, corrupt or not an image."""


def read_image(path: str | os.PathLike[str], *, keep_alpha: bool = False) -> np.ndarray:
    """Decode an image file into a uint8 array, with the EXIF orientation applied.

    Conversions, chosen so that an array's channel count describes its content:

    - bilevel (``1``) and 8-bit grey (``L``) give ``HxW``;
    - a palette image whose colours are all grey gives ``HxW`` (a palette is only a way of storing
      pixels, and grey test sets must stay grey), any other palette gives ``HxWx3``;
    - 16-bit samples (grey, and RGB/RGBA PNG) are scaled to 8 bits as ``round(v * 255 / 65535)``, with a
      warning, since precision is lost (other 16-bit colour files get Pillow's high byte);
    - an alpha channel (``LA``, ``RGBA``, a palette's transparency) is dropped with a warning, or kept
      when ``keep_alpha`` is set: grey + alpha as ``HxWx2``, colour + alpha as ``HxWx4`` RGBA;
    - an image of more pixels than Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``,
      89.5 million by default; a program may raise it) is refused before it is decoded, where Pillow
      alone would only warn below twice the limit and decode it;
    - 32-bit samples (integer or floating-point TIFFs) are refused: they carry no agreed mapping to
      0..255 (a float file may mean 0..1 or 0..255, an integer one 0..65535 or the full 32-bit range),
      and guessing would hand a network a silently wrong picture;
    - every other mode (CMYK, YCbCr, ...) is converted to RGB.

    Args:
        path: Image file (PNG, JPEG, BMP, TIFF or WebP).
        keep_alpha: Keep the alpha channel the file has (``HxWx2`` or ``HxWx4``) instead of dropping it.

    Returns:
        A C-contiguous uint8 array.

    Raises:
        ImageReadError: If the file cannot be decoded completely, is too large, or holds 32-bit samples.
    """
    path = Path(path)
    image, reduced_from_16_bits = _decode(path)
    if reduced_from_16_bits:
        warnings.warn(f"{path}: 16-bit samples rounded to 8 bits", stacklevel=2)
    has_alpha = "A" in image.getbands() or "transparency" in image.info
    if has_alpha and not keep_alpha:
        warnings.warn(f"{path}: alpha channel dropped", stacklevel=2)
    grey = image.mode in _GREY_MODES or (image.mode in {"P", "PA"} and _palette_is_grey(image))
    if has_alpha and keep_alpha:
        return np.ascontiguousarray(image.convert("LA" if grey else "RGBA"))
    return np.ascontiguousarray(image.convert("L" if grey else "RGB"))


def _decode(path: Path) -> tuple[Image.Image, bool]:
    """Fully decode ``path`` (so truncation is detected now), with 16-bit samples rounded to 8 bits.

    Returns:
        The EXIF-oriented image and whether it had 16-bit samples.
    """
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set: truncated images would read silently")
    if not path.is_file():
        raise ImageReadError(f"cannot read image {path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, not warned
            return _decode_file(path)
    # Pillow's plugins are documented to raise OSError, ValueError or SyntaxError, but on hostile bytes
    # some raise TypeError, IndexError, struct.error... (fuzz/fuzz_loaders.py found a TIFF whose strip
    # offset is a fraction): whatever decoding a file raises, the file is not a readable image.
    except Exception as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ImageReadError(f"cannot read image {path}: {reason}") from err


def _decode_file(path: Path) -> tuple[Image.Image, bool]:
    with Image.open(path) as image:
        _refuse_bombs(image)
        low_byte_rawmode = _LOW_BYTE_RAWMODES.get(_png_rawmode(image))
        image.load()
        _refuse_wide_samples(image)
        samples = _sixteen_bit_samples(path, image, low_byte_rawmode)
        if samples is not None:
            image = _replace_pixels(image, _sixteen_to_eight_bits(samples))
        return ImageOps.exif_transpose(image), samples is not None


def _refuse_bombs(image: Image.Image) -> None:
    """Raise ValueError for more pixels than Pillow's limit (Pillow itself only warns up to twice it)."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and image.width * image.height > limit:
        raise ValueError(
            f"{image.width}x{image.height} is more than {limit} pixels, the decompression-bomb limit "
            "(PIL.Image.MAX_IMAGE_PIXELS)"
        )


def _refuse_wide_samples(image: Image.Image) -> None:
    """Raise ValueError (reported by ``_decode``) for samples that would be mangled into 8 bits."""
    kind = _WIDE_SAMPLES.get(image.mode)
    if kind is not None and not (image.mode == "I" and image.format == "PNG"):
        raise ValueError(
            f"{kind} samples have no agreed 0..255 scale (save it with 8- or 16-bit unsigned samples)"
        )


def _sixteen_bit_samples(path: Path, image: Image.Image, low_byte_rawmode: str | None) -> np.ndarray | None:
    """The full 16-bit samples of a decoded image that has them, else None."""
    if image.mode in _SIXTEEN_BIT_MODES:
        return np.asarray(image)
    if low_byte_rawmode is not None:
        return np.asarray(image).astype(np.int64) * 256 + _decode_low_bytes(path, low_byte_rawmode)
    return None


def _png_rawmode(image: Image.Image) -> str | None:
    """How a PNG's samples are stored (e.g. ``RGB;16B``), or None for other formats."""
    if image.format != "PNG" or len(image.tile) != 1:
        return None
    return image.tile[0].args


def _decode_low_bytes(path: Path, low_byte_rawmode: str) -> np.ndarray:
    """Decode a 16-bit colour PNG again, keeping each sample's low byte instead of its high byte.

    Pillow has no 16-bit colour mode and keeps only the high byte; reading the big-endian samples as
    little-endian (same bit depth, so the same PNG unfiltering) yields the low bytes.
    """
    with Image.open(path) as image:
        image.tile = [image.tile[0]._replace(args=low_byte_rawmode)]
        image.load()
        return np.asarray(image)


def _replace_pixels(image: Image.Image, pixels: np.ndarray) -> Image.Image:
    """A new image holding ``pixels`` with the metadata (EXIF, transparency) of ``image``."""
    replaced = Image.fromarray(pixels)
    replaced.info = dict(image.info)
    return replaced


def _palette_is_grey(image: Image.Image) -> bool:
    """Whether every colour of a palette image's palette has R == G == B."""
    colours = np.array(image.getpalette("RGB") or [], dtype=np.uint8).reshape(-1, 3)
    return bool(np.all(colours == colours[:, :1]))


def _sixteen_to_eight_bits(samples: np.ndarray) -> np.ndarray:
    """Map 0..65535 to 0..255 by rounding ``v / 257``; ``v / 257`` is never exactly half-way."""
    wide = np.clip(samples.astype(np.int64), 0, 65535)
    return ((wide + 128) // 257).astype(np.uint8)


def write_image(path: str | os.PathLike[str], array: np.ndarray, *, jpeg_quality: int = 95) -> None:
    """Write a uint8 image atomically; the format follows the file extension.

    The image is written to a temporary file in the destination folder, flushed to disk and renamed
    over ``path``, so an interrupted run never leaves a half-written image that a later evaluation
    would read. WebP is written lossless (keeping colours under transparent pixels), but it has no grey
    mode: a grey image comes back from a ``.webp`` file as three equal channels. JPEG uses ``jpeg_quality``.

    Args:
        path: Destination; its extension must be one of ``IMAGE_EXTENSIONS``. Missing folders are created.
        array: uint8 ``HxW``, ``HxWx2`` (grey + alpha), ``HxWx3`` or ``HxWx4``.
        jpeg_quality: Quality of a JPEG output (1..100).

    Raises:
        InvalidArgumentError: For an unknown extension or alpha in a format without alpha.
        OutputError: For an unwritable path.
        ValueError: If ``array`` is not a uint8 image array.
    """
    path = Path(path)
    image_format = _FORMAT_BY_EXTENSION.get(path.suffix.lower())
    if image_format is None:
        known = ", ".join(IMAGE_EXTENSIONS)
        raise InvalidArgumentError(
            f"cannot write {path}: unknown image extension {path.suffix!r} (use one of {known})"
        )
    _check_image_array(array)
    if array.ndim == 3 and array.shape[2] in (2, 4) and image_format in _FORMATS_WITHOUT_ALPHA:
        raise InvalidArgumentError(f"cannot write {path}: {image_format} has no alpha channel")
    options = {"JPEG": {"quality": jpeg_quality}, "WEBP": {"lossless": True, "exact": True}}.get(
        image_format, {}
    )
    image = Image.fromarray(np.ascontiguousarray(array))
    with atomic_path(path, make_parents=True) as temp_path, open(temp_path, "xb") as stream:
        image.save(stream, format=image_format, **options)


def _check_image_array(array: np.ndarray) -> None:
    """Reject arrays that are not uint8 ``HxW``, ``HxWx2``, ``HxWx3`` or ``HxWx4``."""
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8:
        raise ValueError(f"expected a uint8 numpy array, got {getattr(array, 'dtype', type(array))}")
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (2, 3, 4))):
        raise ValueError(f"expected an HxW, HxWx2, HxWx3 or HxWx4 image, got shape {array.shape}")
