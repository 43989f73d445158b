"""What an upload may be, checked before any pixel is decoded, and the HTTP status of each refusal.

The pixel count is read from the image header alone, so a small file that would decode into a huge
image (a "decompression bomb") is refused before it costs memory, and the byte count before the body
is read (from ``Content-Length``) or while it streams in. Every refusal is a ``BbcuError`` carrying the
status the API answers with and a one-line message the page shows as it is.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from bbcu.core.errors import BbcuError, InvalidArgumentError

ACCEPTED_FORMATS = ("PNG", "JPEG", "MPO", "BMP", "TIFF", "WEBP")
"""Pillow's names; MPO is the JPEG with extra frames many phone cameras write (its first frame is read)."""
UPLOAD_MEDIA_TYPE = "application/octet-stream"
"""The one ``Content-Type`` an upload may have: the page's own. A cross-site form or ``no-cors`` fetch can
only send ``text/plain``, ``multipart/form-data`` or ``application/x-www-form-urlencoded`` without a CORS
preflight, which this server never grants, so requiring this type keeps other sites from posting."""
MEGABYTE = 1 << 20


class RequestError(InvalidArgumentError):
    """A request the server refuses: a bad option, or a file that is not an image.

    ``status`` is the HTTP status of the answer; each kind of refusal has its own.
    """

    status = 422


class TooLargeError(RequestError):
    """An upload over the byte or pixel limit."""

    status = 413


class MediaTypeError(RequestError):
    """An upload sent with another ``Content-Type`` than ``UPLOAD_MEDIA_TYPE``."""

    status = 415


class BusyError(BbcuError):
    """Every slot of the job queue is taken: the request itself is fine, and may be sent again shortly."""

    status = 503


@dataclass(frozen=True)
class Limits:
    """How much one request and the server as a whole may take on.

    Attributes:
        max_upload_bytes: Largest accepted upload.
        max_pixels: Largest accepted image, in input pixels (width x height). Output pixels follow from
            it: a x4 super-resolution writes 16 times as many.
        queue: Requests allowed to wait while one runs; more are answered busy (HTTP 503).
    """

    max_upload_bytes: int = 20 * MEGABYTE
    max_pixels: int = 1_000_000
    queue: int = 4

    def __post_init__(self) -> None:
        if self.max_upload_bytes < 1 or self.max_pixels < 1 or self.queue < 0:
            raise InvalidArgumentError(
                "limits must be positive (queue may be 0), got "
                f"{self.max_upload_bytes} bytes, {self.max_pixels} pixels, queue {self.queue}"
            )


def check_upload_size(size: int, limits: Limits) -> None:
    """Refuse an upload over the byte limit (``size`` may be a running count while it streams in).

    Raises:
        TooLargeError: If ``size`` exceeds ``limits.max_upload_bytes``.
    """
    if size > limits.max_upload_bytes:
        raise TooLargeError(
            f"the file is larger than the upload limit of {limits.max_upload_bytes / MEGABYTE:g} MB"
        )


def check_media_type(content_type: str | None) -> None:
    """Refuse an upload whose ``Content-Type`` is not the page's (parameters such as ``charset`` aside).

    Raises:
        MediaTypeError: For any other type, or none.
    """
    media_type = (content_type or "").partition(";")[0].strip().lower()
    if media_type != UPLOAD_MEDIA_TYPE:
        sent = f"not {media_type}" if media_type else "none was sent"
        raise MediaTypeError(f"an upload must be sent as Content-Type: {UPLOAD_MEDIA_TYPE} ({sent})")


def check_image_header(data: bytes, filename: str, limits: Limits) -> tuple[int, int]:
    """Read the width and height from the header of an uploaded image and check them against the limits.

    Returns:
        ``(width, height)``.

    Raises:
        RequestError: If the bytes are not an image in one of ``ACCEPTED_FORMATS``.
        TooLargeError: If the image has more than ``limits.max_pixels`` pixels.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format, (width, height) = image.format, image.size
    except Image.DecompressionBombError as err:  # Pillow's own ceiling, far above any sane --max-pixels
        raise TooLargeError(f"{filename} is over the limit of {limits.max_pixels:,} pixels ({err})") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        image_format, width, height = None, 0, 0
    if image_format not in ACCEPTED_FORMATS:
        raise RequestError(f"{filename} is not an image ({', '.join(ACCEPTED_FORMATS)} expected)")
    if width * height > limits.max_pixels:
        raise TooLargeError(
            f"{filename} is {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{limits.max_pixels:,} pixels"
        )
    return width, height
