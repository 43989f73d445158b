"""Checkpoint files: atomic replacement, pruning, and never resuming from a damaged or half-written file."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bbcu.core.atomic import atomic_write_bytes, remove_leftovers
from bbcu.core.errors import InvalidFileError
from bbcu.train.checkpoint import (
    CHECKPOINT_FORMAT,
    DamagedRunError,
    checkpoint_path,
    list_checkpoints,
    load_latest_checkpoint,
    save_checkpoint,
    set_aside_checkpoints,
)


def _state(iteration: int) -> dict:
    """A complete checkpoint state (every entry a resume reads), with one recognisable tensor."""
    return {
        "iteration": iteration,
        "sampler": {"epoch": 0, "step": iteration, "world_size": 1},
        "model": {"weight": torch.full((64, 64), float(iteration))},
        "ema": None,
        "optimizer": {"state": {}, "param_groups": []},
        "scheduler": {"last_epoch": iteration},
        "rng": [{"note": [1, "two", None]}],
        "best": {"score": None, "iteration": None},
        "config": {"task": "sr"},
    }


def _payload(path: Path) -> bytes:
    """The serialised state inside a checkpoint file (after the magic tag and the SHA-256)."""
    return path.read_bytes()[8 + 32 :]


def _rewrite(path: Path, state: dict) -> None:
    """Write ``state`` as a checkpoint of iteration-named ``path`` with a valid checksum (a
    well-formed file, as another bbcu version, or a buggy writer, would make)."""
    iteration = int(path.stem.split("_")[1])
    save_checkpoint(path.parent.parent, iteration, {}, keep=99)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path.write_bytes(path.read_bytes()[:8] + hashlib.sha256(buffer.getvalue()).digest() + buffer.getvalue())


def test_round_trip_loads_with_weights_only_and_returns_the_newest(tmp_path: Path) -> None:
    for iteration in (10, 20):
        save_checkpoint(tmp_path, iteration, _state(iteration), keep=5)
    state = load_latest_checkpoint(tmp_path)
    assert state is not None and state["iteration"] == 20
    assert torch.equal(state["model"]["weight"], torch.full((64, 64), 20.0))
    assert state["rng"] == [{"note": [1, "two", None]}]
    # The payload is loadable by the strictest loader, checksummed, and says which format it is.
    path = checkpoint_path(tmp_path, 20)
    assert path.read_bytes()[:8] == b"BBCUCKPT"
    assert path.read_bytes()[8:40] == hashlib.sha256(_payload(path)).digest()
    raw = torch.load(io.BytesIO(_payload(path)), weights_only=True)
    assert raw["iteration"] == 20 and raw["format"] == state["format"] == "bbcu-train-checkpoint/2"


def test_only_the_newest_keep_files_remain(tmp_path: Path) -> None:
    for iteration in (1, 2, 3, 4):
        save_checkpoint(tmp_path, iteration, _state(iteration), keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["iter_00000003.ckpt", "iter_00000004.ckpt"]


def test_truncated_newest_checkpoint_is_never_resumed_from(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for iteration in (1, 2):
        save_checkpoint(tmp_path, iteration, _state(iteration))
    newest = checkpoint_path(tmp_path, 2)
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    with caplog.at_level(logging.WARNING, logger="bbcu.train.checkpoint"):
        state = load_latest_checkpoint(tmp_path)
    assert state is not None and state["iteration"] == 1
    assert "skipping damaged checkpoint iter_00000002.ckpt" in caplog.text


def test_newest_checkpoint_of_another_format_is_refused_not_passed_over(tmp_path: Path) -> None:
    # Passing over it would resume from older training, or start afresh and prune the newer files.
    save_checkpoint(tmp_path, 1, _state(1))
    _rewrite(checkpoint_path(tmp_path, 2), {**_state(2), "format": "bbcu-train-checkpoint/3"})
    with pytest.raises(InvalidFileError) as err:
        load_latest_checkpoint(tmp_path)
    message = str(err.value)
    assert message.startswith(f"{checkpoint_path(tmp_path, 2)}: checkpoint format 'bbcu-train-checkpoint/3'")
    assert repr(CHECKPOINT_FORMAT) in message and "\n" not in message


def test_sixteen_flipped_bits_are_caught_by_the_checksum(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Bits flipped inside a stored weight still unpickle; only the checksum tells (issue 12)."""
    for iteration in (1, 2):
        save_checkpoint(tmp_path, iteration, _state(iteration))
    newest = checkpoint_path(tmp_path, 2)
    data = bytearray(newest.read_bytes())
    start = len(data) - 2000  # inside the tensor storage near the end of the zip
    for bit in range(16):
        data[start + bit * 7] ^= 1 << (bit % 8)
    newest.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="bbcu.train.checkpoint"):
        state = load_latest_checkpoint(tmp_path)
    assert state is not None and state["iteration"] == 1
    assert "iter_00000002.ckpt: checksum mismatch" in caplog.text


def test_a_malformed_newest_checkpoint_falls_back_to_the_previous(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    save_checkpoint(tmp_path, 1, _state(1))
    _rewrite(checkpoint_path(tmp_path, 2), {**_state(2), "format": CHECKPOINT_FORMAT, "sampler": [0, 2]})
    with caplog.at_level(logging.WARNING, logger="bbcu.train.checkpoint"):
        state = load_latest_checkpoint(tmp_path)
    assert state is not None and state["iteration"] == 1
    assert "iter_00000002.ckpt: missing or malformed entries sampler" in caplog.text


def test_a_run_whose_checkpoints_are_all_damaged_is_not_restarted_silently(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 1, _state(1))
    path = checkpoint_path(tmp_path, 1)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DamagedRunError, match=r"every checkpoint in .* is damaged \(1 files\).*--fresh"):
        load_latest_checkpoint(tmp_path)
    aside = set_aside_checkpoints(tmp_path)
    assert aside == tmp_path / "checkpoints.set-aside-1" and (aside / path.name).is_file()
    assert load_latest_checkpoint(tmp_path) is None


def test_leftover_tmp_file_is_ignored(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 1, _state(1))
    leftover = checkpoint_path(tmp_path, 2).with_name(".iter_00000002.ckpt.0123456789ab.tmp")
    leftover.write_bytes(b"half a checkpoint")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["iter_00000001.ckpt"]
    state = load_latest_checkpoint(tmp_path)
    assert state is not None and state["iteration"] == 1


def test_no_checkpoint_gives_none(tmp_path: Path) -> None:
    assert load_latest_checkpoint(tmp_path) is None


def test_sigkill_mid_write_leaves_the_old_file_intact(tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    target.write_bytes(b"old content")
    script = (
        "import sys; from pathlib import Path; from bbcu.core.atomic import atomic_write_bytes; "
        "from bbcu.train import faults; "
        "atomic_write_bytes(Path(sys.argv[1]), b'n' * 1000, on_progress=faults.kill_mid_write_if_armed)"
    )
    env = {**os.environ, "BBCU_TRAIN_FAULT": "kill_mid_write:0"}
    result = subprocess.run([sys.executable, "-c", script, str(target)], env=env, timeout=120)
    assert result.returncode == -9
    assert target.read_bytes() == b"old content"
    (leftover,) = tmp_path.glob(".file.bin.*.tmp")
    assert leftover.stat().st_size == 500
    atomic_write_bytes(target, b"new content")
    assert target.read_bytes() == b"new content"
    remove_leftovers(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]
