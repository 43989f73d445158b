"""DDP: two CPU processes under torchrun train like one process with their combined batch, and the
batch order they share is the single-process order split by rank."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest
import torch
import yaml

from bbcu.core.errors import InvalidArgumentError
from bbcu.data.root import data_root
from bbcu.train.checkpoint import load_latest_checkpoint
from bbcu.train.config import build_config
from bbcu.train.loop import train
from bbcu.train.sampler import BatchOrder


def _recipe(run_dir: Path, batch_size: int) -> dict:
    return {
        "task": "denoise",
        "model": {"name": "dncnn-bbcu", "kwargs": {"channels": 8, "depth": 4}},
        "data": {"train": [{"dir": "train"}], "patch": 16},
        "train": {
            "iterations": 1,
            "batch_size": batch_size,
            "seed": 3,
            "checkpoint_every": 1,
            "log_every": 1,
        },
        "optim": {"lr": 1e-4},
        "val": {"every": 0},
        "runtime": {"device": "cpu", "threads": 1},
        "output": {"dir": str(run_dir), "tensorboard": False},
    }


@pytest.mark.ddp
@pytest.mark.slow
def test_two_process_step_equals_one_process_with_combined_batch(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "train").mkdir(parents=True)
    for index in range(1, 9):
        (root / "train" / f"t{index}.png").symlink_to(data_root() / "T91" / f"t{index}.png")
    recipe = tmp_path / "ddp.yml"
    recipe.write_text(yaml.safe_dump(_recipe(tmp_path / "ddp", batch_size=2)))
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "bbcu.cli.main", "train", str(recipe), "--data-root", str(root),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ddp = load_latest_checkpoint(tmp_path / "ddp")
    assert ddp is not None and ddp["iteration"] == 1
    assert ddp["sampler"]["world_size"] == 2
    assert (tmp_path / "ddp" / "weights" / "last.safetensors").is_file()
    rank_states = [state["torch"] for state in ddp["rng"]]
    assert len(rank_states) == 2 and not torch.equal(*rank_states)  # each rank has its own seed

    single = train(build_config(_recipe(tmp_path / "single", batch_size=4)), tmp_path / "single", root)
    assert single.iteration == 1
    for name, tensor in single.model.state_dict().items():
        torch.testing.assert_close(ddp["model"][name], tensor, rtol=0, atol=1e-6, msg=name)
    # The comparison can tell batches apart: rank 0's half-batch alone gives other weights.
    half = train(build_config(_recipe(tmp_path / "half", batch_size=2)), tmp_path / "half", root)
    gaps = [(ddp["model"][n] - t).abs().max().item() for n, t in half.model.state_dict().items()]
    assert max(gaps) > 1e-5


def _flat(batches: Iterable[list[int]]) -> list[int]:
    return [index for batch in batches for index in batch]


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_ranks_split_the_single_process_batches(world_size: int) -> None:
    single = BatchOrder(num_items=50, batch_size=2 * world_size, seed=5)
    ranks = [BatchOrder(50, 2, 5, rank, world_size) for rank in range(world_size)]
    assert all(r.steps_per_epoch == single.steps_per_epoch for r in ranks)
    for epoch in (0, 1):
        shards = [list(r.epoch_batches(epoch)) for r in ranks]
        combined = [[i for shard in shards for i in shard[step]] for step in range(single.steps_per_epoch)]
        assert combined == list(single.epoch_batches(epoch))


def test_batch_order_is_a_fresh_permutation_each_epoch_and_resumes_mid_epoch() -> None:
    order = BatchOrder(num_items=12, batch_size=3, seed=0)
    epochs = [_flat(order.epoch_batches(epoch)) for epoch in range(3)]
    assert all(sorted(e) == list(range(12)) for e in epochs)
    assert epochs[0] != epochs[1] != epochs[2]
    assert list(order.epoch_batches(1, start_step=2)) == list(order.epoch_batches(1))[2:]
    assert order.position(9) == (2, 1)
    assert _flat(BatchOrder(12, 3, seed=0).epoch_batches(0)) == epochs[0]  # same seed, same order


def test_too_few_samples_for_one_global_batch_is_an_invalid_argument() -> None:
    with pytest.raises(InvalidArgumentError, match="one step needs 8"):
        BatchOrder(num_items=7, batch_size=4, seed=0, rank=0, world_size=2)
