"""Face restoration with DFDNet: part boxes from 68 landmarks, and the whole-photo pipeline around it.

DFDNet restores an aligned 512x512 face given the boxes of its eyes, nose and mouth. Those come from the
face's 68 landmarks (iBUG 300-W numbering, one ``x y`` line each, as DFDNet's release and dlib write them),
one box per part, as DFDNet's own scripts compute it::

    points = landmarks[group]                     # left eye 17-21 + 36-41, right eye 22-26 + 42-47,
    half = max(max(points.ptp(0)) / 2, 16)        # nose 29-35, mouth 48-67
    box = int(points.mean(0) - half + 1), int(points.mean(0) + half)  # x0, y0, x1, y1 (truncated)

For a whole photo (``pip install 'bbcu[faces]'``: dlib and its model files) every detected face is
aligned by the least-squares similarity that takes its five dlib landmarks onto the FFHQ template, warped
to 512x512, given 68 landmarks, restored, warped back and pasted in under a feathered mask. The geometry
is plain NumPy / PyTorch here, so it is tested without dlib; dlib is only called in ``FaceDetector``.
dlib's 68-point model (``shape_predictor_68_face_landmarks.dat``, trained on iBUG 300-W) is licensed for
non-commercial use only.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from bbcu.archs.dfdnet import FACE_SIZE, MODEL_NAME, PARTS, DFDNet, check_part_boxes
from bbcu.core.errors import InvalidArgumentError, InvalidFileError, MissingExtraError
from bbcu.formats.dfdnet import load_dictionary
from bbcu.imaging.pixels import image_to_tensor, tensor_to_image, to_float, to_uint8
from bbcu.run import zoo
from bbcu.run.resolve import ResolvedModel, resolve_model

logger = logging.getLogger(__name__)

LANDMARKS = 68
LANDMARK_GROUPS = {
    "left_eye": (*range(17, 22), *range(36, 42)),
    "right_eye": (*range(22, 27), *range(42, 48)),
    "nose": tuple(range(29, 36)),
    "mouth": tuple(range(48, 68)),
}
"""Which of the 68 landmarks outline each part (brow and eye for the eyes, the nose below its bridge)."""
MIN_HALF_SIZE = 16
"""Smallest half side of a part box, in 512-pixel face coordinates."""
FFHQ_TEMPLATE_512 = np.array(
    [[343.386, 244.312], [293.386, 246.797], [168.955, 244.193], [218.975, 246.757], [256.792, 339.252]]
)
"""Where dlib's five landmarks (outer and inner corner of the face's left eye, of its right eye, and the
base of the nose) sit in an FFHQ-aligned 512x512 face: DFDNet's ``FFHQ_template.npy`` (at 1024) halved."""
FEATHER_FRACTION = 20
"""The paste-back's feather width is the pasted face's side (square root of its area) over this."""
FACES_EXTRA = "pip install 'bbcu[faces]'"


def read_landmarks(path: str | Path) -> np.ndarray:
    """68 landmarks ``(68, 2)`` as ``x y`` from a text file of 68 lines (blank lines ignored).

    Raises:
        InvalidFileError: If the file is missing or unreadable, or does not hold exactly 68 finite pairs.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise InvalidFileError(f"landmarks file not found: {path}") from err
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidFileError(f"cannot read the landmarks file {path}: {err}") from err
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if len(lines) != LANDMARKS:
        raise InvalidFileError(f"{path}: {len(lines)} landmark lines, expected {LANDMARKS} lines of 'x y'")
    try:
        points = np.array([[float(value) for value in line] for line in lines if len(line) == 2])
    except ValueError as err:
        raise InvalidFileError(f"{path}: a landmark line is not two numbers 'x y' ({err})") from err
    if points.shape != (LANDMARKS, 2) or not np.isfinite(points).all():
        raise InvalidFileError(f"{path}: every landmark line must be two finite numbers 'x y'")
    return points


def part_boxes(landmarks: np.ndarray) -> np.ndarray:
    """The four part boxes ``(4, 4)`` (``x0, y0, x1, y1``, in ``PARTS`` order) of 68 landmarks."""
    boxes = []
    for part in PARTS:
        points = landmarks[list(LANDMARK_GROUPS[part])]
        half = max(float((points.max(0) - points.min(0)).max()) / 2, MIN_HALF_SIZE)
        mean = points.mean(0)
        boxes.append(np.concatenate([mean - half + 1, mean + half]).astype(np.int64))  # truncates, as DFDNet
    return np.stack(boxes)


def restore_face(network: DFDNet, face: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Restore one aligned 512x512 RGB uint8 face with its part boxes; uint8 back."""
    device = next(network.parameters()).device
    with torch.no_grad():
        restored = network(image_to_tensor(face).to(device), boxes)
    return to_uint8(tensor_to_image(restored))


# --- alignment and paste-back ---------------------------------------------------------------------------


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 similarity (rotation, uniform scale, shift; no reflection) that takes ``source`` points
    nearest to ``target`` in least squares (Umeyama, 1991).

    Raises:
        InvalidArgumentError: If the point sets differ in shape or the source points all coincide.
    """
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 2:
        raise InvalidArgumentError(f"point sets of shapes {source.shape} and {target.shape} do not pair up")
    source_centred, target_centred = source - source.mean(0), target - target.mean(0)
    variance = (source_centred**2).sum() / len(source)
    if variance == 0:
        raise InvalidArgumentError("the source points coincide: no similarity transform fits them")
    u, singular, vt = np.linalg.svd(target_centred.T @ source_centred / len(source))
    signs = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ np.diag(signs) @ vt
    scale = (singular * signs).sum() / variance
    shift = target.mean(0) - scale * rotation @ source.mean(0)
    return np.hstack([scale * rotation, shift[:, None]])


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a 2x3 affine map."""
    linear = np.linalg.inv(matrix[:, :2])
    return np.hstack([linear, -linear @ matrix[:, 2:]])


def warp_affine(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` (float ``HxWxC``) moved by the 2x3 ``matrix`` (input pixel -> output pixel, pixel
    centres at integers) onto a ``size = (height, width)`` canvas: bilinear, zero outside the input.

    Each output pixel blends the four input pixels around where it comes from, by their distances; input
    pixels outside the image count as zero. A whole-pixel shift therefore moves pixels exactly.
    """
    height, width = size
    in_height, in_width = image.shape[:2]
    inverse = invert_affine(np.asarray(matrix, np.float64))
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    source_x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    source_y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    left, top = np.floor(source_x), np.floor(source_y)
    warped = np.zeros((height, width, image.shape[2]), np.float32)
    for row, row_weight in ((top, 1 - (source_y - top)), (top + 1, source_y - top)):
        for column, column_weight in ((left, 1 - (source_x - left)), (left + 1, source_x - left)):
            inside = (row >= 0) & (row < in_height) & (column >= 0) & (column < in_width)
            weight = (row_weight * column_weight * inside).astype(np.float32)
            rows = np.clip(row, 0, in_height - 1).astype(np.intp)
            columns = np.clip(column, 0, in_width - 1).astype(np.intp)
            warped += weight[..., None] * image[rows, columns]
    return warped


def feathered_mask(coverage: np.ndarray) -> np.ndarray:
    """A soft paste mask from how much of the warped face covers each pixel: the fully covered pixels,
    eroded by twice the feather width and blurred by a Gaussian of that width, so the pasted face fades
    out inside its own border (DFDNet's recipe; width = side / 20)."""
    inside = torch.from_numpy((coverage >= 1 - 1e-4).astype(np.float32))[None, None]
    edge = max(math.isqrt(int(inside.sum())) // FEATHER_FRACTION, 1)
    kernel = 2 * edge + 1
    core = 1 - F.max_pool2d(1 - inside, kernel, stride=1, padding=edge)
    sigma = 0.3 * (edge - 1) + 0.8  # OpenCV's default sigma for this kernel size
    taps = torch.exp(-((torch.arange(kernel) - edge) ** 2) / (2 * sigma**2))
    taps = taps / taps.sum()
    soft = F.conv2d(core, taps.view(1, 1, 1, -1), padding=(0, edge))
    soft = F.conv2d(soft, taps.view(1, 1, -1, 1), padding=(edge, 0))
    return soft[0, 0].numpy()


def paste_face(photo: np.ndarray, face: np.ndarray, face_to_photo: np.ndarray) -> np.ndarray:
    """``photo`` (float ``HxWx3``) with ``face`` (float, the aligned crop) warped back by ``face_to_photo``
    and blended in under a feathered mask; pixels the mask does not reach are ``photo``'s exactly."""
    size = photo.shape[:2]
    pasted = warp_affine(face, face_to_photo, size)
    mask = feathered_mask(warp_affine(np.ones((*face.shape[:2], 1), np.float32), face_to_photo, size)[..., 0])
    return mask[..., None] * pasted + (1 - mask[..., None]) * photo


def align_face(photo: np.ndarray, five_points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The aligned 512x512 crop of a face (uint8) and the 2x3 map from the crop back into ``photo``."""
    to_face = similarity_transform(five_points, FFHQ_TEMPLATE_512)
    face = to_uint8(warp_affine(to_float(photo), to_face, (FACE_SIZE, FACE_SIZE)))
    return face, invert_affine(to_face)


# --- dlib (the optional extra) ---------------------------------------------------------------------------


class FaceDetector:
    """dlib's CNN face detector and its 5- and 68-point shape predictors (files of face-recognition-models).

    Raises:
        MissingExtraError: If dlib or the model files are not installed (``bbcu[faces]``).
    """

    MODEL_FILES: ClassVar[dict[str, str]] = {
        "detector": "mmod_human_face_detector.dat",
        "five": "shape_predictor_5_face_landmarks.dat",
        "sixty_eight": "shape_predictor_68_face_landmarks.dat",  # non-commercial licence (iBUG 300-W)
    }

    def __init__(self) -> None:
        try:
            import dlib
        except ImportError as err:
            raise MissingExtraError(
                f"restoring faces in whole photos needs dlib: {FACES_EXTRA} (or give an aligned 512x512 face "
                "with --landmarks or --part-boxes)"
            ) from err
        spec = importlib.util.find_spec("face_recognition_models")
        folder = Path(spec.origin).parent / "models" if spec and spec.origin else None
        if folder is None or not all((folder / name).is_file() for name in self.MODEL_FILES.values()):
            raise MissingExtraError(
                f"dlib's face models are not installed (face-recognition-models): {FACES_EXTRA}"
            )
        self._detector = dlib.cnn_face_detection_model_v1(str(folder / self.MODEL_FILES["detector"]))
        self._five = dlib.shape_predictor(str(folder / self.MODEL_FILES["five"]))
        self._sixty_eight = dlib.shape_predictor(str(folder / self.MODEL_FILES["sixty_eight"]))

    def _faces(self, image: np.ndarray) -> list[object]:
        """Detected face rectangles, largest first (one upsampling pass finds smaller faces)."""
        rects = [detection.rect for detection in self._detector(np.ascontiguousarray(image), 1)]
        return sorted(rects, key=lambda rect: -rect.area())

    def five_points(self, photo: np.ndarray) -> list[np.ndarray]:
        """Five landmarks ``(5, 2)`` of every face in ``photo`` (uint8 RGB), largest face first."""
        return [_points(self._five(photo, rect)) for rect in self._faces(photo)]

    def landmarks(self, face: np.ndarray) -> np.ndarray | None:
        """68 landmarks ``(68, 2)`` of the largest face in an aligned crop, or None if none is found."""
        rects = self._faces(face)
        return _points(self._sixty_eight(face, rects[0])) if rects else None


def _points(shape: object) -> np.ndarray:
    return np.array([[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)], np.float64)


# --- the restore verb's face task ---------------------------------------------------------------------


@dataclass
class FaceRestorer:
    """How ``bbcu restore --task face`` treats each input.

    With ``boxes`` (one set of part boxes for every input), ``landmarks`` (a 68-point file for the one
    input, or a folder of ``<image file name>.txt``, the release's naming) the inputs are aligned 512x512
    faces; with neither, whole photos whose faces dlib finds, aligns and pastes back.

    Attributes:
        network: DFDNet with its dictionary attached.
        boxes: Part boxes for every input, or None.
        landmarks: A landmarks file or folder, or None.
    """

    network: DFDNet
    boxes: np.ndarray | None = None
    landmarks: Path | None = None
    detector: FaceDetector | None = field(default=None, init=False)

    def check(self, sources: list[Path], read: Callable[[Path], np.ndarray]) -> None:
        """Refuse, before anything is restored, inputs that cannot work: for aligned faces, a missing or
        malformed landmarks file or an image that is not 512x512; for photos, a missing faces extra.

        Args:
            sources: The input files.
            read: Reads an input into a uint8 array (``bbcu.formats.image_io.read_image``).

        Raises:
            InvalidFileError: For a bad landmarks file or a wrongly sized face.
            InvalidArgumentError: For one landmarks file given for several inputs.
            MissingExtraError: For whole photos without ``bbcu[faces]``.
        """
        if self.boxes is None and self.landmarks is None:
            self.detector = self.detector or FaceDetector()
            return
        if self.landmarks is not None and not self.landmarks.is_dir() and len(sources) > 1:
            raise InvalidArgumentError(
                f"one landmarks file for {len(sources)} inputs: give a folder of <image file name>.txt"
            )
        for source in sources:
            self.boxes_for(source)
            height, width = read(source).shape[:2]
            if (height, width) != (FACE_SIZE, FACE_SIZE):
                raise InvalidFileError(
                    f"{source} is {width}x{height}: with landmarks or part boxes the input must be an "
                    f"aligned {FACE_SIZE}x{FACE_SIZE} face (whole photos need neither, but {FACES_EXTRA})"
                )

    def boxes_for(self, source: Path) -> np.ndarray:
        """The part boxes of the aligned face in ``source``."""
        if self.boxes is not None:
            return self.boxes
        path = self.landmarks / f"{source.name}.txt" if self.landmarks.is_dir() else self.landmarks
        boxes = part_boxes(read_landmarks(path))
        try:
            check_part_boxes(boxes)
        except InvalidArgumentError as err:
            raise InvalidFileError(f"{path}: {err}") from err
        return boxes

    def restore(self, image: np.ndarray, source: Path) -> np.ndarray:
        """The restored face (aligned input) or photo (whole-photo input) of one uint8 image."""
        rgb = _rgb(image)
        if self.boxes is not None or self.landmarks is not None:
            return restore_face(self.network, rgb, self.boxes_for(source))
        self.detector = self.detector or FaceDetector()
        return self.restore_photo(rgb, source)

    def restore_photo(self, photo: np.ndarray, source: Path) -> np.ndarray:
        """Every face dlib finds in ``photo``, restored and pasted back.

        Raises:
            InvalidFileError: If no face is found.
        """
        faces = self.detector.five_points(photo)
        if not faces:
            raise InvalidFileError(f"{source}: no face found")
        result = to_float(photo)
        for index, five in enumerate(faces):
            face, to_photo = align_face(photo, five)
            landmarks = self.detector.landmarks(face)
            if landmarks is None:
                logger.info("%s: face %d has no 68 landmarks after alignment; left as it is", source, index)
                continue
            restored = restore_face(self.network, face, part_boxes(landmarks))
            result = paste_face(result, to_float(restored), to_photo)
        return to_uint8(result)


def _rgb(image: np.ndarray) -> np.ndarray:
    """Grey becomes three equal channels; an alpha channel is dropped (DFDNet sees RGB only)."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] in (1, 2):
        return np.repeat(image[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def face_restorer(
    weights: str | os.PathLike[str] | None,
    dictionary: str | os.PathLike[str] | None,
    *,
    model: str | None = None,
    boxes: list[int] | np.ndarray | None = None,
    landmarks: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    engine: str = "torch",
) -> tuple[ResolvedModel, FaceRestorer]:
    """DFDNet from its weights (the official ``.pth`` or a converted ``.safetensors``) and dictionary, and
    the ``FaceRestorer`` for the part boxes (16 numbers, or ``(4, 4)``), landmarks, or whole photos.

    Raises:
        InvalidArgumentError: If weights or dictionary are missing, boxes and landmarks are both given,
            the boxes are bad, or another engine than torch is asked for.
        InvalidFileError: If the weights or the dictionary cannot be used.
    """
    if weights is None and model is not None and _folder_checkpoint(model).is_file():
        weights, dictionary, model = *_folder_face_model(model, dictionary), None
    if weights is None or dictionary is None:
        raise InvalidArgumentError(
            "face restoration needs DFDNet's weights (--weights: its .pth or a converted .safetensors) and "
            "its component dictionary (--dictionary: the .pth, or the folder of .npy files)"
        )
    if engine != "torch":
        raise InvalidArgumentError(f"DFDNet runs on the torch engine only, not {engine}")
    if boxes is not None and landmarks is not None:
        raise InvalidArgumentError("give the part boxes or the landmarks, not both")
    resolved = resolve_model(model or MODEL_NAME, task="face", weights=weights)
    network = resolved.network
    network.set_dictionary(load_dictionary(dictionary, channels=network.channels))
    checked = None if boxes is None else check_part_boxes(np.reshape(boxes, (len(PARTS), 4))).numpy()
    restorer = FaceRestorer(network.to(device), checked, None if landmarks is None else Path(landmarks))
    return resolved, restorer


def _folder_checkpoint(name: str) -> Path:
    return zoo.models_dir() / f"{name}{zoo.OFFICIAL_SUFFIX}"


def _folder_face_model(
    name: str, dictionary: str | os.PathLike[str] | None
) -> tuple[Path, str | os.PathLike[str] | Path]:
    """A DFDNet checkpoint the user put in the models folder (``$BBCU_MODELS``), named by its file stem as
    ``bbcu compare`` and ``bbcu serve`` list it, and its dictionary: the one given, else the one beside it.

    Raises:
        InvalidFileError: If the file is unusable or has no dictionary beside it (and none was given).
        InvalidArgumentError: If it is not a face model.
    """
    path = _folder_checkpoint(name)
    if dictionary is not None:
        return path, dictionary
    entry = zoo.describe_checkpoint(path)
    if entry.task != "face" or entry.dictionary is None:
        raise InvalidArgumentError(f"{name} in {zoo.models_dir()} is a {entry.task} model, not a face model")
    return path, entry.dictionary
