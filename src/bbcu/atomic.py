"""Atomic file writes: readers see either the old file or the complete new one, never half of it.

Every output bbcu writes (images, weights, packed models, CSV scores, charts) goes through here so an
interrupted run, a full disk or a crash in the middle of a writer never leaves a truncated file behind.
The temporary file lives in the destination folder (``os.replace`` is only atomic within one file
system) and is opened with ``open(..., "xb")`` rather than ``tempfile.mkstemp``: ``mkstemp`` creates
files readable by their owner only, whereas outputs should get the usual ``0o666 & ~umask``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bbcu.errors import UserError


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, make_parents: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary path next to ``path`` that becomes ``path`` when the block succeeds.

    The block writes the temporary file however it likes (a path suits writers that want a file name);
    on success the file is fsynced and renamed onto ``path``; on any failure it is removed and the old
    ``path``, if any, is left untouched.

    Args:
        path: The destination file.
        make_parents: Create missing parent folders first (otherwise a missing folder is an error).

    Yields:
        The temporary path; it does not exist yet.

    Raises:
        UserError: If the folder, the temporary file or the rename fails with an ``OSError``, inside or
            outside the block; other exceptions from the block propagate unchanged.
    """
    path = Path(path)
    temp_path = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        if make_parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        yield temp_path
        _fsync(temp_path)
        os.replace(temp_path, path)
    except BaseException as err:
        temp_path.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise UserError(f"cannot write {path}: {err.strerror or err}") from None
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, make_parents: bool = False) -> None:
    """Write ``data`` to ``path`` atomically, with normal permissions (see ``atomic_path``).

    Raises:
        UserError: If the file cannot be written (missing folder, no permission, disk full).
    """
    with atomic_path(path, make_parents=make_parents) as temp_path, open(temp_path, "xb") as stream:
        stream.write(data)


def _fsync(path: Path) -> None:
    """Push the file's data to the disk so the rename never exposes a file whose blocks are not there yet."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
