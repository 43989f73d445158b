"""Atomic writes: normal permissions, the old file kept whole on failure, and no temporary left behind."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pytest
from PIL import Image

from bbcu.core.atomic import atomic_path, atomic_write_bytes
from bbcu.core.errors import OutputError
from bbcu.formats.image_io import read_image, write_image


@pytest.fixture(params=[0o022, 0o027, 0o077])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test under a known umask (process-wide, so it is restored afterwards)."""
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def _write_bytes(path: Path) -> None:
    atomic_write_bytes(path, b"payload")


def _write_png(path: Path) -> None:
    write_image(path.with_suffix(".png"), np.zeros((4, 4), np.uint8))


@pytest.mark.parametrize("writer", [_write_bytes, _write_png], ids=["bytes", "image"])
def test_new_files_get_the_umask_permissions(
    tmp_path: Path, umask: int, writer: Callable[[Path], None]
) -> None:
    writer(tmp_path / "out")
    (written,) = tmp_path.iterdir()
    assert stat.S_IMODE(written.stat().st_mode) == 0o666 & ~umask


def test_write_bytes_round_trips_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    atomic_write_bytes(target, b"first")
    atomic_write_bytes(target, b"second, longer")
    assert target.read_bytes() == b"second, longer"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_temporary_path_is_fresh_and_beside_the_target(tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    with atomic_path(target) as temp_path:
        assert temp_path.parent == tmp_path  # same file system, so os.replace is atomic
        assert temp_path != target and not temp_path.exists()
        temp_path.write_bytes(b"data")
    assert target.read_bytes() == b"data"
    assert not temp_path.exists()


def test_old_file_survives_a_write_that_fails_midway(tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    target.write_bytes(b"old contents")
    with (
        pytest.raises(OutputError, match=r"cannot write .*file\.bin: No space left") as caught,
        atomic_path(target) as temp_path,
        open(temp_path, "xb") as stream,
    ):
        stream.write(b"half of the new")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert "\n" not in str(caught.value)
    assert target.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_other_errors_propagate_unchanged_and_leave_nothing(tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    with pytest.raises(ZeroDivisionError), atomic_path(target) as temp_path:
        temp_path.write_bytes(b"partial")
        _ = 1 / 0
    assert list(tmp_path.iterdir()) == []


def test_failed_rename_is_a_user_error_and_removes_the_temporary(tmp_path: Path) -> None:
    occupied = tmp_path / "folder"
    (occupied / "inside").mkdir(parents=True)
    with pytest.raises(OutputError, match=r"cannot write .*folder"):
        atomic_write_bytes(occupied, b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


def test_missing_folder_is_an_error_unless_parents_are_made(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "file.bin"
    with pytest.raises(OutputError, match=r"cannot write .*file\.bin"):
        atomic_write_bytes(target, b"data")
    assert list(tmp_path.iterdir()) == []
    atomic_write_bytes(target, b"data", make_parents=True)
    assert target.read_bytes() == b"data"


def test_image_writer_keeps_the_old_image_when_encoding_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "image.png"
    original = np.full((5, 6), 200, np.uint8)
    write_image(target, original)

    def disk_fills_up(image: Image.Image, stream: BinaryIO, **options: object) -> None:
        stream.write(b"\x89PNG half an image")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Image.Image, "save", disk_fills_up)
    with pytest.raises(OutputError, match="No space left"):
        write_image(target, np.zeros((5, 6), np.uint8))
    monkeypatch.undo()
    np.testing.assert_array_equal(read_image(target), original)
    assert [p.name for p in tmp_path.iterdir()] == ["image.png"]
