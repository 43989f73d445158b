"""The one way bbcu writes a file: readers see the old file or the complete new one, never half of it.

Every output (images, weights, packed models, CSV scores, charts, training checkpoints and logs) goes
through here, with one guarantee: the data goes to a temporary file in the destination folder, is
fsynced, renamed onto the destination (``os.replace`` is atomic within one file system), and the
folder is fsynced so the rename itself survives a power cut. A kill at any instant leaves either the
old file or the new one, plus at worst a hidden ``.<name>.<random>.tmp`` leftover.

Temporary names are random, so two writers of the same destination never clobber each other's
half-written file, and are created with ``open(..., "xb")`` rather than ``tempfile.mkstemp``, which
makes owner-only files: outputs get the usual ``0o666 & ~umask``. A failure while cleaning up never
hides the error that caused it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bbcu.core.errors import OutputError

ProgressHook = Callable[[int, int], None]
"""Called as ``hook(bytes_written, total)`` after each chunk; the kill-mid-write tests die inside it."""

TEMP_SUFFIX = ".tmp"
_CHUNK = 1 << 20


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, make_parents: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary path next to ``path`` that becomes ``path`` when the block succeeds.

    The block writes the temporary file however it likes (a path suits writers that want a file name,
    such as Pillow or matplotlib); on success it is made durable and renamed onto ``path``; on any
    failure it is removed and the old ``path``, if any, is left untouched.

    Args:
        path: The destination file.
        make_parents: Create missing parent folders first (otherwise a missing folder is an error).

    Yields:
        The temporary path; it does not exist yet.

    Raises:
        OutputError: If the folder, the temporary file or the rename fails with an ``OSError``, inside
            or outside the block; other exceptions from the block propagate unchanged.
    """
    path = Path(path)
    temp_path = path.parent / f".{path.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}"
    try:
        if make_parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        yield temp_path
        _fsync(temp_path)
        os.replace(temp_path, path)
        _fsync_folder(path.parent)
    except BaseException as err:
        with contextlib.suppress(OSError):  # a read-only or missing folder: nothing to clean
            temp_path.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise OutputError(f"cannot write {path}: {err.strerror or err}") from err
        raise


def atomic_write_bytes(
    path: str | os.PathLike[str],
    data: bytes | memoryview,
    *,
    make_parents: bool = False,
    on_progress: ProgressHook | None = None,
) -> None:
    """Write ``data`` to ``path`` atomically (see ``atomic_path``), in chunks.

    Args:
        path: The destination file.
        data: Its whole new content.
        make_parents: Create missing parent folders first.
        on_progress: Called after every chunk reaches the file (tests inject crashes here).

    Raises:
        OutputError: If the file cannot be written (missing folder, no permission, disk full).
    """
    total = len(data)
    chunk = _CHUNK if on_progress is None else min(_CHUNK, max(1, (total + 1) // 2))
    with atomic_path(path, make_parents=make_parents) as temp_path, open(temp_path, "xb") as stream:
        for start in range(0, total, chunk):
            stream.write(data[start : start + chunk])
            if on_progress is not None:
                stream.flush()
                on_progress(min(start + chunk, total), total)


def remove_leftovers(folder: Path) -> None:
    """Delete the temporary files killed writers left in ``folder``; only for folders with one writer.

    A training run owns its checkpoint folder, so whatever temporary file is there when it writes is
    the remains of a killed process, never a write in flight.
    """
    for leftover in folder.glob(f".*.*{TEMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            leftover.unlink()


def _fsync(path: Path) -> None:
    """Push the file's data to the disk so the rename never exposes a file whose blocks are not there."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); skipped where a folder cannot be opened or synced."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
