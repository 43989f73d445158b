"""Checkpoint files: atomic replacement, pruning, and never resuming from a damaged or half-written file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bbcu.core.atomic import atomic_write_bytes, remove_leftovers
from bbcu.train.checkpoint import (
    checkpoint_path,
    list_checkpoints,
    load_latest_checkpoint,
    save_checkpoint,
)


def _state(iteration: int) -> dict:
    return {
        "iteration": iteration,
        "weights": torch.full((64, 64), float(iteration)),
        "note": [1, "two", None],
    }


def test_round_trip_loads_with_weights_only_and_returns_the_newest(tmp_path: Path) -> None:
    for iteration in (10, 20):
        save_checkpoint(tmp_path, iteration, _state(iteration), keep=5)
    state = load_latest_checkpoint(tmp_path)
    assert state is not None and state["iteration"] == 20
    assert torch.equal(state["weights"], torch.full((64, 64), 20.0))
    assert state["note"] == [1, "two", None]
    # The file itself is loadable by the strictest loader.
    assert torch.load(checkpoint_path(tmp_path, 20), weights_only=True)["iteration"] == 20


def test_only_the_newest_keep_files_remain(tmp_path: Path) -> None:
    for iteration in (1, 2, 3, 4):
        save_checkpoint(tmp_path, iteration, _state(iteration), keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["iter_00000003.ckpt", "iter_00000004.ckpt"]


def test_truncated_newest_checkpoint_is_never_resumed_from(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    for iteration in (1, 2):
        save_checkpoint(tmp_path, iteration, _state(iteration))
    newest = checkpoint_path(tmp_path, 2)
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    state = load_latest_checkpoint(tmp_path)
    assert state is not None and state["iteration"] == 1
    assert "skipping damaged checkpoint iter_00000002.ckpt" in capsys.readouterr().err


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
