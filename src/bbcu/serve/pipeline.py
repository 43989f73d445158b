"""One restoration as the page asks for it: uploaded bytes in, PNGs, timing, cost and scores out.

The upload is decoded by the same ``read_image`` as ``bbcu restore`` (through a private temporary folder
that is removed at once), so the page and the command line give the same pixels for the same file.
With ``degrade`` the upload is taken as the clean original: it is degraded first with the published
protocol of the task (MATLAB bicubic down, seeded Gaussian noise, Pillow JPEG) and both the degraded
input and the restored result are scored against it with that task's metric. A face model takes the
upload as a whole photo: every face found is restored and pasted back (``bbcu.run.faces``); faces have no
degradation protocol, so they are not scored.
"""

from __future__ import annotations

import base64
import io
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bbcu.core.constants import RESTORE_TASKS
from bbcu.data.degradations import add_test_noise, jpeg_compress
from bbcu.formats.image_io import ImageReadError, read_image
from bbcu.imaging.imresize import bicubic_downsample, modcrop
from bbcu.imaging.pixels import to_uint8
from bbcu.metrics.quality import evaluate_pair
from bbcu.run.images import restore_pixels
from bbcu.run.resolve import ENGINES
from bbcu.serve.catalog import Catalog, ModelChoice
from bbcu.serve.limits import RequestError

SIGMA_RANGE = (0.0, 100.0)
QUALITY_RANGE = (1, 100)


@dataclass(frozen=True)
class Order:
    """What one request asks for.

    Attributes:
        filename: The client's name for the upload, only ever shown in messages and download names.
        task: ``"sr"``, ``"denoise"``, ``"jpeg"`` or ``"face"``.
        scale: SR factor (1 for the other tasks).
        model: A name from the catalogue.
        engine: ``"torch"`` or ``"packed"``.
        degrade: Treat the upload as clean and degrade it first, so the result can be scored.
        sigma: Noise level (0..255 scale) used when degrading for denoising.
        quality: JPEG quality used when degrading for JPEG.
    """

    filename: str
    task: str
    scale: int
    model: str
    engine: str
    degrade: bool = False
    sigma: float = 25.0
    quality: int = 10

    def __post_init__(self) -> None:
        if self.task not in RESTORE_TASKS:
            raise RequestError(f"unknown task {self.task!r}; choose one of {', '.join(RESTORE_TASKS)}")
        if self.engine not in ENGINES:
            raise RequestError(f"unknown engine {self.engine!r}; choose one of {', '.join(ENGINES)}")
        if self.task != "sr" and self.scale != 1:
            raise RequestError(f"{self.task} works at scale 1, not {self.scale}")
        if self.task == "face" and self.degrade:
            raise RequestError("face restoration has no degradation protocol: it cannot be scored")
        if not SIGMA_RANGE[0] <= self.sigma <= SIGMA_RANGE[1]:
            raise RequestError(f"sigma must lie within {SIGMA_RANGE[0]:g}..{SIGMA_RANGE[1]:g}")
        if not QUALITY_RANGE[0] <= self.quality <= QUALITY_RANGE[1]:
            raise RequestError(f"JPEG quality must lie within {QUALITY_RANGE[0]}..{QUALITY_RANGE[1]}")


def run_order(data: bytes, order: Order, choice: ModelChoice, catalog: Catalog) -> dict[str, object]:
    """Decode, (degrade,) restore and score one upload; the JSON answer of ``POST /api/restore``.

    Raises:
        RequestError: If the upload cannot be decoded completely, or the task's degradation does not
            apply to it (an image smaller than the SR factor).
    """
    image = decode_upload(data, order.filename)
    original = image[:, :, :3] if image.ndim == 3 and image.shape[2] == 4 else image  # alpha is not scored
    lq = degrade(original, order) if order.degrade else image
    restore = restorer(order, choice, catalog)
    start = time.perf_counter()
    restored = restore(lq)
    elapsed = time.perf_counter() - start
    output = restored if restored.dtype == np.uint8 else to_uint8(restored)
    shown_input = lq if lq.dtype == np.uint8 else to_uint8(lq)
    ops_g, params_k = choice.figures(shown_input.shape[1], shown_input.shape[0])
    answer: dict[str, object] = {
        "model": choice.name,
        "engine": order.engine,
        "elapsed_s": round(elapsed, 4),
        "input_size": [shown_input.shape[1], shown_input.shape[0]],
        "output_size": [output.shape[1], output.shape[0]],
        "ops_g": None if ops_g is None else round(ops_g, 4),
        "params_k": round(params_k, 2),
        "file_bytes": choice.file_bytes,
        "input_png": png_base64(shown_input),
        "output_png": png_base64(output),
    }
    if order.degrade:
        answer["psnr"] = scores(shown_input, output, original, order)
    return answer


def restorer(order: Order, choice: ModelChoice, catalog: Catalog) -> Callable[[np.ndarray], np.ndarray]:
    """What restores the image: the network, or for a face model its whole-photo pipeline (loaded now,
    so the timing counts only the restoration)."""
    if order.task == "face":
        faces = catalog.faces(choice)
        return lambda image: faces.restore(image, Path(order.filename))  # the name only shows in messages
    network = catalog.network(choice, order.engine)
    return lambda image: restore_pixels(network, image)


def decode_upload(data: bytes, filename: str) -> np.ndarray:
    """The uploaded image as ``bbcu restore`` reads a file (alpha kept), with the temporary file gone.

    Raises:
        RequestError: If the bytes do not decode into a complete image.
    """
    with tempfile.TemporaryDirectory(prefix="bbcu-serve-") as folder:
        path = Path(folder) / "upload"
        path.write_bytes(data)
        try:
            return read_image(path, keep_alpha=True)
        except ImageReadError as err:
            reason = str(err).removeprefix(f"cannot read image {path}: ")
            raise RequestError(f"{filename} is not a readable image: {reason}") from err


def degrade(clean: np.ndarray, order: Order) -> np.ndarray:
    """The task's published degradation of a clean uint8 image (float32 and unclipped for noise)."""
    if order.task == "denoise":
        return add_test_noise(clean, order.sigma)
    if order.task == "jpeg":
        return jpeg_compress(clean, order.quality)
    if min(clean.shape[:2]) < order.scale:
        raise RequestError(f"{order.filename} is too small to downscale by {order.scale}")
    return bicubic_downsample(clean, order.scale)


def scores(lq: np.ndarray, output: np.ndarray, original: np.ndarray, order: Order) -> dict[str, float | None]:
    """PSNR (dB, the task's protocol) of the result and, where sizes match, of the degraded input."""
    reference = modcrop(original, order.scale)
    psnr = {"output": _finite(evaluate_pair(output, reference, order.task, order.scale)["psnr"])}
    psnr["input"] = (
        _finite(evaluate_pair(lq, reference, order.task)["psnr"]) if lq.shape == reference.shape else None
    )
    return psnr


def _finite(value: float) -> float | None:
    """JSON has no infinity: identical images (PSNR = inf) are reported as None."""
    return round(value, 3) if np.isfinite(value) else None


def png_base64(image: np.ndarray) -> str:
    """A uint8 image as a base64 PNG, ready for a ``data:`` URL or a download."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
