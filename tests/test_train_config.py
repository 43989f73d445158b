"""Recipes: every published row has a config with the published hyper-parameters (docs/method.md),
and every mistake in a recipe or an override is a one-line error naming the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from bbcu.archs.registry import list_models
from bbcu.archs.rrdbnet import RRDB_MODELS
from bbcu.cli.main import main
from bbcu.core.constants import TASKS
from bbcu.core.errors import (
    ConfigError,
    DataNotFoundError,
    InvalidArgumentError,
    InvalidFileError,
    ModelNotFoundError,
)
from bbcu.data.root import data_root
from bbcu.run.zoo import shipped_path
from bbcu.train.checkpoint import save_checkpoint
from bbcu.train.config import build_config, config_to_dict, init_weights_path, load_config, read_recipe
from bbcu.train.data import build_train_set
from bbcu.train.run import first_difference, plan_run

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RECIPES = sorted(p for task in TASKS for p in (CONFIGS / task).glob("[!_]*.yml"))
PUBLISHED = [p for p in RECIPES if p.suffixes == [".yml"]]  # configs/<task>/<model>[_x<scale>].yml
CPU_SIZED = [p for p in RECIPES if p.suffixes == [".cpu", ".yml"]]  # ... .cpu.yml beside it
GPU_SIZED = [p for p in RECIPES if p.suffixes == [".gpu", ".yml"]]

# docs/method.md, training recipes (and the official BBCU-SR yml / KAIR json options).
PUBLISHED_SETTINGS = {
    "sr": {
        "data.patch": 32,
        "train.batch_size": 16,
        "train.iterations": 300_000,
        "optim.lr": 1e-4,
        "optim.betas": [0.9, 0.99],
        "scheduler.milestones": [200_000],
        "scheduler.gamma": 0.5,
        "val.every": 5000,
        "val.sets": ["Set5", "Set14"],
        "train.loss": "l1",
    },
    "denoise": {
        "data.patch": 64,
        "data.sigma_range": [0.0, 75.0],
        "train.batch_size": 32,
        "optim.lr": 1e-4,
        "scheduler.milestones": [200_000, 300_000, 400_000],
        "scheduler.gamma": 0.5,
        "train.loss": "l1",
    },
    "jpeg": {
        "data.patch": 64,
        "data.quality_range": [0, 50],
        "train.batch_size": 32,
        "optim.lr": 1e-4,
        "scheduler.milestones": [200_000, 300_000, 400_000],
        "scheduler.gamma": 0.5,
        "train.loss": "l1",
    },
}


def _get(recipe: dict, dotted: str) -> object:
    for part in dotted.split("."):
        recipe = recipe[part]
    return recipe


@pytest.mark.parametrize("path", PUBLISHED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_published_config_has_the_published_hyper_parameters(path: Path) -> None:
    config = load_config(path)
    plain = config_to_dict(config)
    for key, expected in PUBLISHED_SETTINGS[config.task].items():
        assert _get(plain, key) == expected, key
    assert config.description.startswith("published recipe")
    assert config.model.kwargs == {}  # the registry defaults are the published networks (k = 130, 64 ch)
    assert config.data.train[0].dir == "DIV2K/HR"
    if config.task == "sr":
        assert path.stem.endswith(f"_x{config.model.scale}")


@pytest.mark.parametrize("task", ["sr", "denoise", "jpeg"])
def test_every_registered_model_has_its_published_configs(task: str) -> None:
    assert len(RECIPES) == len(PUBLISHED) + len(CPU_SIZED) + len(GPU_SIZED)  # no third kind of name
    names = {load_config(p).model.name for p in PUBLISHED if p.parent.name == task}
    # Not trained here: the non-learned baselines, and the reference restorers run from official weights.
    assert names == set(list_models(task)) - {"bicubic", "identity", *RRDB_MODELS}
    if task == "sr":
        scales = {
            (load_config(p).model.name, load_config(p).model.scale)
            for p in PUBLISHED
            if p.parent.name == "sr"
        }
        assert scales == {(n, s) for n in names for s in (2, 4)}


@pytest.mark.parametrize("path", CPU_SIZED + GPU_SIZED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_sized_configs_are_labelled_and_use_shipped_data(path: Path) -> None:
    config = load_config(path)
    base = path.parent / yaml.safe_load(path.read_text())["inherit"]
    assert config.task == path.parent.name and base.suffixes == [".yml"] and base.is_file()
    twin = path.with_name(path.name.split(".")[0] + ".yml")
    assert base == twin or not twin.is_file()  # a variant builds on its own published row where there is one
    label = f"{path.suffixes[0][1:].upper()}-sized, not the published recipe"
    assert label in path.read_text().splitlines()[0]
    assert label in config.description
    for folder in config.data.train:
        assert (data_root() / folder.dir).is_dir()
        assert folder.names is None or (data_root() / folder.names).is_file()
    assert config.val.every > 0 and all((data_root() / s).is_dir() for s in config.val.sets)


@pytest.mark.parametrize("sized", [CPU_SIZED, GPU_SIZED], ids=["cpu", "gpu"])
def test_sized_tasks_are_all_covered(sized: list[Path]) -> None:
    assert {load_config(p).task for p in sized} == {"denoise", "jpeg", "sr"}


def test_overrides_are_typed_by_the_schema() -> None:
    config = load_config(
        CONFIGS / "sr" / "bbcu-l_x4.yml",
        [
            "train.batch_size=8",
            "model.scale=2",
            "optim.lr=2e-4",
            "optim.betas=[0.5, 0.9]",
            "model.kwargs.channels=16",
            "val.sets=[Set14]",
            "output.dir=123",
            "train.grad_clip=0.5",
            "data.train=[{dir: T91}, {dir: CBSD432, names: splits/BSD200.txt}]",
        ],
    )
    assert config.train.batch_size == 8 and config.model.scale == 2
    assert config.optim.lr == pytest.approx(2e-4) and config.optim.betas == (0.5, 0.9)
    assert isinstance(config.optim.lr, float) and isinstance(config.train.batch_size, int)
    assert config.model.kwargs == {"channels": 16}
    assert config.val.sets == ["Set14"]
    assert config.output.dir == "123"  # text stays text
    assert config.train.grad_clip == 0.5
    assert [(f.dir, f.names) for f in config.data.train] == [("T91", None), ("CBSD432", "splits/BSD200.txt")]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.batchsize=3", "train.batchsize: unknown key (known here: iterations, batch_size, seed,"),
        ("nonsense=1", "nonsense: unknown key (known here: task, model, data,"),
        ("data.train=[{dir: T91, nam: x}]", "data.train[0].nam: unknown key (known here: dir, names)"),
        ("train.batch_size=eight", "train.batch_size: Input should be a valid integer (got 'eight')"),
        ("train.batch_size=true", "train.batch_size: Input should be a valid integer (got True)"),
        ("train.batch_size=8.0", "train.batch_size: Input should be a valid integer (got 8.0)"),
        ("optim.lr=abc", "optim.lr: Input should be a valid number (got 'abc')"),
        ("optim.betas=[0.9]", "optim.betas[1]: Field required"),
        ("optim.betas=[0.9, '0.99']", "optim.betas[1]: Input should be a valid number (got '0.99')"),
        ("train.ema_decay=yes", "train.ema_decay: Input should be a valid number (got True)"),
        ("train.ema_decay=1.0", "train.ema_decay: Input should be less than 1 (got 1.0)"),
        ("model.name=nope", "model.name: unknown model 'nope'"),
        ("model.name=dncnn", "bbcu-l_x4.yml: model 'dncnn' is a 'denoise' model but task is 'sr'"),
        ("task=deblur", "task: Input should be 'sr', 'denoise' or 'jpeg' (got 'deblur')"),
        ("train.iterations=0", "train.iterations: Input should be greater than 0 (got 0)"),
        ("val.sets=[]", "val: sets is empty"),
        ("data.train=[]", "data.train: List should have at least 1 item"),
    ],
)
def test_bad_overrides_are_one_line_config_errors_naming_file_and_key(override: str, message: str) -> None:
    path = CONFIGS / "sr" / "bbcu-l_x4.yml"
    with pytest.raises(ConfigError) as err:
        load_config(path, [override])
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.batch_size", "--set 'train.batch_size': expected KEY=VALUE"),
        ("optim.lr=[1", "--set optim.lr line 1: not valid YAML"),
    ],
)
def test_malformed_overrides_are_refused_before_validation(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(CONFIGS / "sr" / "bbcu-l_x4.yml", [override])


def test_run_needs_exactly_one_of_config_and_resume(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="give either a CONFIG"):
        plan_run(None, None, [])
    with pytest.raises(InvalidFileError, match="no usable checkpoint"):
        plan_run(None, str(tmp_path), [])


def test_missing_required_key_is_named_with_its_file(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yml"
    recipe.write_text("task: sr\nmodel: {name: bbcu-l}\ndata: {train: [{dir: T91}]}\n")
    with pytest.raises(ConfigError, match=rf"^{recipe}: data\.patch: Field required"):
        load_config(recipe)


def test_a_wrong_type_in_a_file_names_the_file_and_key(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yml"
    recipe.write_text(f"inherit: {CONFIGS / 'sr' / 'bbcu-l_x4.yml'}\noptim: {{lr: fast}}\n")
    with pytest.raises(ConfigError) as err:
        load_config(recipe)
    assert str(err.value) == f"{recipe}: optim.lr: Input should be a valid number (got 'fast')"


def test_model_init_names_a_shipped_model_from_any_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(CONFIGS / "sr" / "bbcu-l_x3.cpu.yml")
    assert config.model.init == "bbcu-l-x2"  # a name stays a name in the stored recipe
    path = init_weights_path(config.model.init)
    assert path == shipped_path("bbcu-l-x2") and path.is_file() and path.is_absolute()


def test_model_init_path_is_relative_to_the_file_that_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "recipes" / "base").mkdir(parents=True)
    (tmp_path / "recipes" / "base" / "x3.yml").write_text(
        f"inherit: {CONFIGS / 'sr' / 'bbcu-l_x4.yml'}\nmodel: {{scale: 3, init: weights/x2.safetensors}}\n"
    )
    (tmp_path / "recipes" / "child.yml").write_text("inherit: base/x3.yml\ntrain: {iterations: 10}\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    expected = tmp_path / "recipes" / "base" / "weights" / "x2.safetensors"
    config = load_config(Path("..") / "recipes" / "child.yml")
    assert init_weights_path(config.model.init) == expected
    assert config.model.init == str(expected)  # stored absolute: the run dir's recipe means the same file
    absolute = tmp_path / "w.safetensors"
    overridden = load_config(tmp_path / "recipes" / "child.yml", [f"model.init={absolute}"])
    assert init_weights_path(overridden.model.init) == absolute
    on_command_line = load_config(tmp_path / "recipes" / "child.yml", ["model.init=w.safetensors"])
    assert init_weights_path(on_command_line.model.init) == Path("w.safetensors")  # the shell's cwd


def test_model_init_with_an_unknown_shipped_name_says_what_is_shipped() -> None:
    with pytest.raises(ModelNotFoundError, match=r"no shipped model 'bbcu-l-x9'.*bbcu-l-x2"):
        init_weights_path("bbcu-l-x9")


def test_inherit_merges_mappings_and_replaces_lists(tmp_path: Path) -> None:
    (tmp_path / "base.yml").write_text("a: {b: 1, c: [1, 2]}\nd: 5\n")
    (tmp_path / "child.yml").write_text("inherit: base.yml\na: {c: [3]}\ne: 6\n")
    assert read_recipe(tmp_path / "child.yml") == {"a": {"b": 1, "c": [3]}, "d": 5, "e": 6}


def test_inheritance_cycle_is_reported(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text("inherit: b.yml\n")
    (tmp_path / "b.yml").write_text("inherit: a.yml\n")
    with pytest.raises(ConfigError, match="inherits from itself"):
        read_recipe(tmp_path / "a.yml")


def test_cli_reports_a_bad_key_on_one_line_with_status_2(capsys: pytest.CaptureFixture) -> None:
    status = main(["train", str(CONFIGS / "sr" / "bbcu-l_x4.yml"), "--set", "train.batchsiz=3"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1
    assert err.startswith(
        f"bbcu train: error: {CONFIGS / 'sr' / 'bbcu-l_x4.yml'}: train.batchsiz: unknown key"
    )


def test_missing_div2k_folder_says_how_to_point_elsewhere() -> None:
    with pytest.raises(DataNotFoundError, match=r"no folder 'DIV2K/HR'.*--set 'data.train=\[\{dir: T91\}\]'"):
        build_train_set(load_config(CONFIGS / "sr" / "bbcu-l_x4.yml"), data_root())


def test_auto_resume_refuses_a_changed_recipe(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yml"
    recipe.write_text(f"inherit: {CONFIGS / 'sr' / 'bbcu-l_x2.yml'}\noutput: {{dir: {tmp_path / 'run'}}}\n")
    stored = config_to_dict(load_config(recipe))
    state = {"iteration": 5, "sampler": {}, "model": {}, "ema": None, "optimizer": {}, "scheduler": {}}
    save_checkpoint(tmp_path / "run", 5, {**state, "rng": [], "best": {}, "config": stored})
    plan = plan_run(str(recipe), None, [])
    assert plan.checkpoint is not None and plan.checkpoint["iteration"] == 5
    with pytest.raises(ConfigError, match=r"differs at 'train\.batch_size'"):
        plan_run(str(recipe), None, ["train.batch_size=4"])
    resumed = plan_run(None, str(tmp_path / "run"), ["train.iterations=400000"])  # deliberate change
    assert resumed.config.train.iterations == 400_000


def test_first_difference_names_the_dotted_key() -> None:
    assert first_difference({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}}) == "a.c"
    assert first_difference({"a": 1}, {"a": 1}) is None
    assert build_config(config_to_dict(load_config(CONFIGS / "jpeg" / "dncnn3.yml"))).task == "jpeg"
