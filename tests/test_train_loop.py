"""The trainer on tiny CPU runs: validation equals ``bbcu eval`` of the saved weights, EMA and the LR
schedule follow their closed forms, clipping acts, a non-finite loss stops cleanly, logs are written."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from bbcu.archs import create_model
from bbcu.cli.main import main
from bbcu.core.errors import InvalidFileError
from bbcu.data.root import data_root
from bbcu.formats import weights
from bbcu.run.evaluate import evaluate_set
from bbcu.train.checkpoint import list_checkpoints, load_latest_checkpoint
from bbcu.train.config import build_config, init_weights_path, load_config
from bbcu.train.logs import read_log
from bbcu.train.loop import build_state, initialise_from, train
from bbcu.train.run import plan_run
from bbcu.train.schema import TrainConfig


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with 6 Train400 images to train on and another one as the validation set ``Val``."""
    folder = tmp_path_factory.mktemp("data")
    for subset, numbers in (("train", range(1, 7)), ("Val", (7,))):
        (folder / subset).mkdir()
        for number in numbers:
            name = f"test_{number:03d}.png"
            (folder / subset / name).symlink_to(data_root() / "Train400" / name)
    return folder


def _recipe(run_dir: Path, **sections: dict) -> dict:
    """A tiny grey DnCNN-3-BBCU (8 channels, 4 layers) trained on 6 Train400 images for 4 steps."""
    recipe = {
        "task": "jpeg",
        "model": {"name": "dncnn3-bbcu", "kwargs": {"channels": 8, "depth": 4}},
        "data": {"train": [{"dir": "train"}], "patch": 16},
        "train": {"iterations": 4, "batch_size": 2, "seed": 1, "checkpoint_every": 2, "log_every": 1},
        "optim": {"lr": 1e-3},
        "val": {"every": 0},
        "runtime": {"device": "cpu", "threads": 1},
        "output": {"dir": str(run_dir), "tensorboard": False},
    }
    for name, values in sections.items():
        recipe[name] = {**recipe.get(name, {}), **values}
    return recipe


def _config(run_dir: Path, **sections: dict) -> TrainConfig:
    return build_config(_recipe(run_dir, **sections))


def _max_change(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> float:
    return max((after[k] - before[k]).abs().max().item() for k in before if before[k].is_floating_point())


@pytest.mark.slow
def test_validation_scores_are_bbcu_eval_scores_of_the_best_weights(root: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, val={"every": 2, "sets": ["Val"], "quality": 30})
    state = train(config, tmp_path, root)
    logged = dict(read_log(tmp_path / "log.csv")["val/Val/psnr"])
    assert sorted(logged) == [0, 2, 4]  # at the start, every 2 iterations, and the end
    assert state.best_score == pytest.approx(max(logged.values()), abs=1e-5)
    assert logged[state.best_iteration] == pytest.approx(state.best_score, abs=1e-5)
    best = weights.load(tmp_path / "weights" / "best.safetensors")
    again = evaluate_set(best, "jpeg", "Val", 30, root=root).mean()
    assert again["psnr"] == pytest.approx(state.best_score, abs=1e-5)
    last = weights.load(tmp_path / "weights" / "last.safetensors")
    assert evaluate_set(last, "jpeg", "Val", 30, root=root).mean()["psnr"] == pytest.approx(
        logged[4], abs=1e-5
    )
    png = (tmp_path / "curves.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_ema_is_the_closed_form_average_and_is_what_gets_shipped(root: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, train={"iterations": 1, "ema_decay": 0.75})
    initial = build_state(config, torch.device("cpu")).model.state_dict()
    state = train(config, tmp_path, root)
    assert state.ema is not None
    trained, averaged = state.model.state_dict(), state.ema.model.state_dict()
    assert _max_change(initial, trained) > 1e-4
    for key, start in initial.items():
        torch.testing.assert_close(averaged[key], 0.75 * start + 0.25 * trained[key], rtol=0, atol=1e-7)
    shipped = weights.load(tmp_path / "weights" / "last.safetensors").state_dict()
    assert all(torch.equal(shipped[k], averaged[k]) for k in averaged)


def test_learning_rate_follows_the_milestones(root: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, train={"iterations": 5}, scheduler={"milestones": [2, 4], "gamma": 0.1})
    train(config, tmp_path, root)
    lr = [value for _, value in read_log(tmp_path / "log.csv")["train/lr"]]
    assert lr == pytest.approx([1e-3, 1e-4, 1e-4, 1e-5, 1e-5])


def test_resume_with_a_new_schedule_follows_it(root: Path, tmp_path: Path) -> None:
    """``--resume RUN --set scheduler...`` must change the rest of the run, not be overridden by the
    checkpoint: the rates after resuming equal a fresh run's with the new schedule."""
    train(_config(tmp_path, train={"iterations": 2}), tmp_path, root)
    overrides = ["train.iterations=5", "scheduler.milestones=[2, 4]", "scheduler.gamma=0.1"]
    plan = plan_run(None, str(tmp_path), overrides)
    train(plan.config, plan.run_dir, root, plan.checkpoint)
    lr = [value for _, value in read_log(tmp_path / "log.csv")["train/lr"]]
    assert lr == pytest.approx([1e-3, 1e-3, 1e-4, 1e-5, 1e-5])


def test_init_copies_every_tensor_that_fits_and_keeps_the_rest_fresh(tmp_path: Path) -> None:
    source = create_model("bbcu-l", scale=2, channels=8, num_units=2)
    weights.save(source, tmp_path / "x2.safetensors", binary_as_bits=True)
    target = create_model("bbcu-l", scale=3, channels=8, num_units=2)
    fresh = {k: v.clone() for k, v in target.state_dict().items()}
    kept = initialise_from(target, tmp_path / "x2.safetensors")
    assert kept == ["upsampler.0.conv.bias", "upsampler.0.conv.weight"]  # x3 has one conv + shuffle(3)
    expected = weights.load(tmp_path / "x2.safetensors").state_dict()
    for key, tensor in target.state_dict().items():
        assert torch.equal(tensor, fresh[key] if key in kept else expected[key]), key


def test_init_from_a_file_that_does_not_fit_is_an_invalid_file_error(tmp_path: Path) -> None:
    weights.save(create_model("dncnn-lite"), tmp_path / "other.safetensors")
    with pytest.raises(InvalidFileError, match=r"nothing in .* fits bbcu-l"):
        initialise_from(create_model("bbcu-l", scale=3), tmp_path / "other.safetensors")


def test_init_from_the_shipped_x2_model_fits_all_but_the_x3_upsampler() -> None:
    kept = initialise_from(create_model("bbcu-l", scale=3), init_weights_path("bbcu-l-x2"))
    assert kept == ["upsampler.0.conv.bias", "upsampler.0.conv.weight"]


def test_a_run_with_init_starts_from_the_file_next_to_its_recipe(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = build_state(_config(tmp_path), torch.device("cpu")).model
    with torch.no_grad():
        for parameter in source.parameters():
            parameter.add_(0.5)
    (tmp_path / "recipe").mkdir()
    weights.save(source, tmp_path / "recipe" / "start.safetensors")
    recipe = _recipe(tmp_path / "run", model={"init": "start.safetensors"}, optim={"lr": 1e-12})
    (tmp_path / "recipe" / "r.yml").write_text(yaml.safe_dump(recipe))
    monkeypatch.chdir(tmp_path)  # not the recipe's folder: the path is read relative to the recipe
    train(load_config("recipe/r.yml"), tmp_path / "run", root)
    trained = weights.load(tmp_path / "run" / "weights" / "last.safetensors").state_dict()
    for key, tensor in source.state_dict().items():  # a negligible learning rate: still the start
        torch.testing.assert_close(trained[key], tensor, rtol=0, atol=1e-9)


def test_gradient_clipping_shrinks_the_first_adam_step(root: Path, tmp_path: Path) -> None:
    # Adam's first step moves each weight by about lr whatever the gradient's size, unless the gradient
    # is far below eps (1e-8): clipping the norm to 1e-12 must leave the weights nearly where they were.
    free = _config(tmp_path / "free", train={"iterations": 1})
    clipped = _config(tmp_path / "clipped", train={"iterations": 1, "grad_clip": 1e-12})
    initial = build_state(free, torch.device("cpu")).model.state_dict()
    moved = _max_change(initial, train(free, tmp_path / "free", root).model.state_dict())
    held = _max_change(initial, train(clipped, tmp_path / "clipped", root).model.state_dict())
    assert moved == pytest.approx(1e-3, rel=0.01)
    assert held < 1e-6


def test_channels_last_does_not_change_what_is_learned(root: Path, tmp_path: Path) -> None:
    plain = train(_config(tmp_path / "a"), tmp_path / "a", root).model.state_dict()
    nhwc = _config(tmp_path / "b", runtime={"channels_last": True})
    fast = train(nhwc, tmp_path / "b", root).model.state_dict()
    for key, value in plain.items():
        torch.testing.assert_close(fast[key], value, rtol=0, atol=1e-5)


def _conv_output_dtypes(config: TrainConfig, run_dir: Path, root: Path) -> set[torch.dtype]:
    """Train ``config`` and return the dtypes of every convolution output of its forward passes."""
    dtypes: set[torch.dtype] = set()

    def record(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):  # binary convolutions included
            dtypes.add(output.dtype)

    handle = nn.modules.module.register_module_forward_hook(record)
    try:
        train(config, run_dir, root)
    finally:
        handle.remove()
    return dtypes


def test_bf16_autocast_runs_the_training_convolutions_in_bfloat16(root: Path, tmp_path: Path) -> None:
    # Validation is off, so every forward pass seen is a training step's.
    plain = _conv_output_dtypes(_config(tmp_path / "fp32", train={"iterations": 2}), tmp_path / "fp32", root)
    bf16_config = _config(tmp_path / "bf16", train={"iterations": 2}, runtime={"bf16": True})
    assert plain == {torch.float32}
    assert _conv_output_dtypes(bf16_config, tmp_path / "bf16", root) == {torch.bfloat16}
    losses = [value for _, value in read_log(tmp_path / "bf16" / "log.csv")["train/loss"]]
    assert len(losses) == 2 and all(0 < v < 1 for v in losses)


def test_non_finite_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    recipe = tmp_path / "diverge.yml"
    recipe.write_text(
        "task: denoise\n"
        "model: {name: dncnn-lite, kwargs: {channels: 8, depth: 3}}\n"
        "data: {train: [{dir: train}], patch: 16}\n"
        "train: {iterations: 50, batch_size: 2, checkpoint_every: 1, log_every: 1}\n"
        "optim: {lr: 1.0e+30}\n"  # the first update overflows the next forward pass
        f"runtime: {{device: cpu, threads: 1}}\noutput: {{dir: {tmp_path / 'run'}, tensorboard: false}}\n"
    )
    status = main(["train", str(recipe), "--data-root", str(root)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert status == 2
    assert err.startswith("bbcu train: error: loss became ") and "the last good checkpoint is" in err
    checkpoint = load_latest_checkpoint(tmp_path / "run")
    assert checkpoint is not None and checkpoint["iteration"] < 50
    assert list_checkpoints(tmp_path / "run")[-1].name == f"iter_{checkpoint['iteration']:08d}.ckpt"
    assert f"iteration {checkpoint['iteration'] + 1}" in err


def test_tensorboard_events_are_written_when_asked(root: Path, tmp_path: Path) -> None:
    train(_config(tmp_path, output={"tensorboard": True}), tmp_path, root)
    assert any((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_a_damaged_run_is_refused_until_fresh_sets_it_aside(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    recipe = tmp_path / "tiny.yml"
    recipe.write_text(
        "task: denoise\n"
        "model: {name: dncnn-lite, kwargs: {channels: 8, depth: 3}}\n"
        "data: {train: [{dir: train}], patch: 16}\n"
        "train: {iterations: 2, batch_size: 2, checkpoint_every: 1, log_every: 1}\n"
        "optim: {lr: 1.0e-3}\n"
        f"runtime: {{device: cpu, threads: 1}}\noutput: {{dir: {tmp_path / 'run'}, tensorboard: false}}\n"
    )
    assert main(["train", str(recipe), "--data-root", str(root)]) == 0
    for path in list_checkpoints(tmp_path / "run"):
        path.write_bytes(path.read_bytes()[:-10])  # every checkpoint damaged
    capsys.readouterr()
    assert main(["train", str(recipe), "--data-root", str(root)]) == 2
    assert "is damaged (2 files)" in capsys.readouterr().err
    assert main(["train", str(recipe), "--data-root", str(root), "--fresh"]) == 0
    assert len(list((tmp_path / "run" / "checkpoints.set-aside-1").glob("*.ckpt"))) == 2
    assert load_latest_checkpoint(tmp_path / "run")["iteration"] == 2
