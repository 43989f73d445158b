"""The standard sets as they should be: image count, sizes and pixel checksums (``standard_sets.json``).

A score is only the published protocol's score on the published images: a set with a missing image, a
resized copy or a re-encoded lossy file gives a different number without any error. ``check_set``
compares a folder with the committed manifest and logs ONE warning line naming what differs; it never
fails, since a user's own variant of a set (e.g. Urban100 as BMP files) can be intended.

The bundled sets carry every image (file stem, width, height, channels, sha256 of the decoded uint8 array
``read_image`` returns), generated from the shared data folder's ``MANIFEST.tsv`` by
``scripts/make_standard_sets.py``; the sets that are not bundled (Urban100, Manga109, DIV2K) carry their
published image counts only. Images are matched by file stem, so a PNG copy of a BMP original passes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bbcu.core.errors import DataNotFoundError, InvalidFileError
from bbcu.data.root import data_root
from bbcu.data.testsets import image_files, locate_test_set
from bbcu.formats.image_io import read_image

logger = logging.getLogger(__name__)

MANIFEST_PATH = Path(__file__).with_name("standard_sets.json")
MANIFEST_FORMAT = "bbcu-standard-sets/1"
_SHOWN = 3
"""Names listed per kind of difference before the warning says 'and N more'."""


@functools.cache
def standard_sets() -> dict[str, dict[str, Any]]:
    """The manifest: set name -> {"count", "source"(, "images": {stem: [w, h, c, sha256]})}."""
    document = json.loads(MANIFEST_PATH.read_text(encoding="utf-8"))
    if document.get("format") != MANIFEST_FORMAT:
        raise InvalidFileError(f"{MANIFEST_PATH}: not a {MANIFEST_FORMAT} file")
    return document["sets"]


def pixel_checksum(image: np.ndarray) -> str:
    """sha256 of a decoded uint8 array's bytes (row-major), the manifest's ``pixels_sha256``."""
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


def set_differences(name: str, folder: Path, *, checksums: bool = True) -> list[str]:
    """What differs between a folder of images and the manifest's entry for set ``name``.

    Sizes are read from the file headers; pixels are decoded only for checksums (``checksums=False``
    skips that). A set the manifest does not know has no differences.

    Returns:
        Short phrases such as ``"4 images, expected 5"`` or ``"size of baby: 256x256, expected 512x512"``;
        empty when the folder matches.
    """
    entry = standard_sets().get(name)
    if entry is None:
        return []
    paths = {path.stem: path for path in image_files(folder)}
    problems = [] if len(paths) == entry["count"] else [f"{len(paths)} images, expected {entry['count']}"]
    expected: dict[str, list[Any]] = entry.get("images", {})
    if not expected:
        return problems
    problems += _listed("missing", sorted(set(expected) - set(paths)))
    problems += _listed("not in the standard set", sorted(set(paths) - set(expected)))
    common = sorted(set(paths) & set(expected))
    wrong_size = [stem for stem in common if _size(paths[stem]) != tuple(expected[stem][:2])]
    problems += [
        f"size of {stem}: {_size_text(_size(paths[stem]))}, expected {_size_text(expected[stem])}"
        for stem in wrong_size[:_SHOWN]
    ]
    if checksums:
        same_size = [stem for stem in common if stem not in wrong_size]
        changed = [s for s in same_size if pixel_checksum(read_image(paths[s])) != expected[s][3]]
        problems += _listed("different pixels", changed)
    return problems


@functools.cache
def _check_once(name: str, folder: Path, checksums: bool) -> bool:
    """Compare and warn, once per folder and process (``bbcu reproduce`` scores one set many times)."""
    problems = set_differences(name, folder, checksums=checksums)
    if problems:
        logger.warning(
            "%s at %s differs from the standard set (%s); scores are not comparable with published ones",
            name,
            folder,
            "; ".join(problems),
        )
    return not problems


def check_set(name: str, root: str | os.PathLike[str] | None = None, *, checksums: bool = True) -> bool:
    """Compare set ``name`` under the data root with the manifest; warn in one line when it differs.

    A missing set is not this function's concern (the loader says so) and counts as matching.

    Returns:
        Whether the set matches (or is unknown to the manifest).
    """
    try:
        folder = locate_test_set(name, root).resolve()
    except DataNotFoundError:
        return True
    return _check_once(name, folder, checksums)


def check_training_folder(folder: str, root: str | os.PathLike[str] | None = None) -> bool:
    """``check_set`` for a recipe's training folder (``DIV2K/HR`` is the set ``DIV2K``), sizes only."""
    return check_set(Path(folder).parts[0], data_root(root), checksums=False)


def _size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            return image.size
    except OSError as err:
        raise InvalidFileError(f"cannot read image {path}: {err}") from err


def _size_text(size: Sequence[Any]) -> str:
    return f"{size[0]}x{size[1]}"


def _listed(what: str, names: list[str]) -> list[str]:
    if not names:
        return []
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return [f"{what}: {', '.join(names[:_SHOWN])}{more}"]
