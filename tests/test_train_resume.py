"""A run killed with SIGKILL (between steps, or halfway through writing a checkpoint) and resumed ends
bit-identical to the same run left alone: weights, EMA, optimizer moments, log and best score."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from bbcu.data.root import data_root
from bbcu.train.checkpoint import list_checkpoints, load_latest_checkpoint
from bbcu.train.loop import train
from bbcu.train.run import plan_run

pytestmark = pytest.mark.slow  # every test trains for real, in a subprocess that is then killed

ITERATIONS = 6


def _recipe(run_dir: Path) -> dict:
    """A tiny BBCU-L x2 (8 channels, 2 units) over 4 real images: 2 steps per epoch, so runs cross
    epochs; EMA and validation on, so their state must survive the kill too."""
    return {
        "task": "sr",
        "model": {"name": "bbcu-l", "scale": 2, "kwargs": {"channels": 8, "num_units": 2}},
        "data": {"train": [{"dir": "train"}], "patch": 8},
        "train": {
            "iterations": ITERATIONS,
            "batch_size": 2,
            "seed": 7,
            "ema_decay": 0.9,
            "checkpoint_every": 2,
            "log_every": 1,
        },
        "optim": {"lr": 2e-3},
        "val": {"every": 3, "sets": ["Set5"]},
        "runtime": {"device": "cpu", "threads": 1},
        "output": {"dir": str(run_dir), "tensorboard": False},
    }


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with 4 T91 images as the training folder and the real Set5 for validation."""
    shared = data_root()
    folder = tmp_path_factory.mktemp("data")
    (folder / "train").mkdir()
    for name in ("t1.png", "t2.png", "t3.png", "t4.png"):
        (folder / "train" / name).symlink_to(shared / "T91" / name)
    (folder / "Set5").symlink_to(shared / "Set5")
    return folder


def _write_recipe(tmp_path: Path, name: str) -> tuple[Path, Path]:
    run_dir = tmp_path / name
    recipe = tmp_path / f"{name}.yml"
    recipe.write_text(yaml.safe_dump(_recipe(run_dir)))
    return recipe, run_dir


def _train_in_process(recipe: Path, root: Path) -> Path:
    plan = plan_run(str(recipe), None, [])
    train(plan.config, plan.run_dir, root, plan.checkpoint)
    return plan.run_dir


def _killed_run(recipe: Path, root: Path, fault: str) -> None:
    env = {**os.environ, "BBCU_TRAIN_FAULT": fault}
    command = [sys.executable, "-m", "bbcu.cli.main", "train", str(recipe), "--data-root", str(root)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == -9, result.stderr[-2000:]


@pytest.fixture(scope="module")
def reference(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run."""
    recipe, _ = _write_recipe(tmp_path_factory.mktemp("reference"), "run")
    return _train_in_process(recipe, root)


def _assert_same_run(resumed: Path, reference: Path) -> None:
    got, want = load_latest_checkpoint(resumed), load_latest_checkpoint(reference)
    assert got is not None and want is not None
    assert got["iteration"] == want["iteration"] == ITERATIONS
    for part in ("model", "ema"):
        assert got[part].keys() == want[part].keys()
        for key in want[part]:
            assert torch.equal(got[part][key], want[part][key]), f"{part}.{key} differs"
    for index, moments in want["optimizer"]["state"].items():
        for name, tensor in moments.items():
            assert torch.equal(got["optimizer"]["state"][index][name], tensor), f"optimizer {index}.{name}"
    assert got["best"] == want["best"]
    assert got["sampler"] == want["sampler"]
    for weights_file in ("best.safetensors", "last.safetensors"):
        got_tensors, want_tensors = (
            load_file(run / "weights" / weights_file) for run in (resumed, reference)
        )
        assert got_tensors.keys() == want_tensors.keys()
        assert all(torch.equal(got_tensors[k], want_tensors[k]) for k in want_tensors), weights_file
    assert (resumed / "log.csv").read_text() == (reference / "log.csv").read_text()


def test_sigkill_between_steps_then_resume_is_bit_identical(
    root: Path, reference: Path, tmp_path: Path
) -> None:
    recipe, run_dir = _write_recipe(tmp_path, "run")
    _killed_run(recipe, root, "kill_after_step:5")
    assert [p.name for p in list_checkpoints(run_dir)] == ["iter_00000002.ckpt", "iter_00000004.ckpt"]
    _train_in_process(recipe, root)  # the same command again resumes on its own
    _assert_same_run(run_dir, reference)


def test_sigkill_mid_checkpoint_write_resumes_from_previous(
    root: Path, reference: Path, tmp_path: Path
) -> None:
    recipe, run_dir = _write_recipe(tmp_path, "run")
    _killed_run(recipe, root, "kill_mid_write:4")
    (partial,) = (run_dir / "checkpoints").glob(".iter_00000004.ckpt.*.tmp")
    assert partial.stat().st_size > 0  # the half-written file is really there
    assert [p.name for p in list_checkpoints(run_dir)] == ["iter_00000002.ckpt"]
    checkpoint = load_latest_checkpoint(run_dir)
    assert checkpoint is not None and checkpoint["iteration"] == 2
    plan = plan_run(None, str(run_dir), [])  # explicit --resume RUN_DIR, recipe from the checkpoint
    train(plan.config, plan.run_dir, root, plan.checkpoint)
    _assert_same_run(run_dir, reference)
