"""The oneDNN int8 path of the packed engine equals the popcount path bit for bit, alone and in networks.

Truths: the popcount kernels' exact integer dot products and fused epilogue (themselves checked against
PyTorch in tests/test_kernels.py), and the simulated PyTorch model for whole networks. The per-machine
path cache is checked by round trip and with a damaged file.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from bbcu.cli.main import main
from bbcu.core.errors import InvalidArgumentError
from bbcu.engine import export_model, kernels, onednn
from bbcu.engine.runtime import CHOICE_SIZE, PackedModel, _BinaryUnit, pack_model
from bbcu.formats.image_io import write_image
from helpers import randomized

pytestmark = pytest.mark.usefixtures("one_thread")

LAYERS = [(1, 1, 64, 64), (2, 3, 64, 64), (7, 5, 64, 64), (13, 9, 40, 40), (6, 11, 130, 130), (5, 4, 3, 7)]
"""(H, W, C, O): a 1x1 image (every tap on the border), odd sizes, C = 64, below and above one word."""


def random_layer(height: int, width: int, channels: int, outputs: int, seed: int) -> dict:
    """Input, shift, weight bits and a full epilogue (bias included) of a random layer."""
    rng = np.random.default_rng(seed)

    def floats(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    return {
        "x": floats(height, width, channels),
        "shift": 0.3 * floats(channels),
        "bits": kernels.pack_weights(floats(outputs, channels, 3, 3)),
        "epilogue": {
            "scale": floats(outputs),
            "bias": floats(outputs),
            "rprelu": tuple(floats(outputs) for _ in "gbz"),
        },
    }


@pytest.mark.parametrize(("height", "width", "channels", "outputs"), LAYERS)
def test_int8_dot_products_are_the_popcount_integers(
    height: int, width: int, channels: int, outputs: int
) -> None:
    layer = random_layer(height, width, channels, outputs, seed=height * width + channels)
    packed = kernels.pack_activations(layer["x"], layer["shift"])
    dots = onednn.Int8Conv(layer["bits"], channels).dots(onednn.sign_bytes(packed, channels))
    got = dots[0].permute(1, 2, 0).numpy()
    assert got.shape == (height, width, outputs)
    assert np.array_equal(got, np.round(got))  # exact integers, not rounded floats
    assert np.array_equal(got, kernels.binary_conv3x3_raw(packed, layer["bits"], channels))


@pytest.mark.parametrize(("height", "width", "channels", "outputs"), [s for s in LAYERS if s[2] == s[3]])
def test_int8_unit_output_equals_the_fused_popcount_unit_bit_for_bit(
    height: int, width: int, channels: int, outputs: int
) -> None:
    layer = random_layer(height, width, channels, outputs, seed=7 + channels)
    packed = kernels.pack_activations(layer["x"], layer["shift"])
    expected, _ = kernels.binary_conv3x3(
        packed, layer["bits"], channels, residual=layer["x"], **layer["epilogue"]
    )
    got = layer["x"].copy()
    dots = onednn.Int8Conv(layer["bits"], channels).dots(onednn.sign_bytes(packed, channels))
    onednn.add_epilogue(dots, got, **layer["epilogue"])
    assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))


def assign(model: PackedModel, paths: list[str]) -> None:
    """Force each V4 unit of ``model`` onto the next of ``paths`` (cycled)."""
    units = [step for step in model.steps if isinstance(step, _BinaryUnit)]
    for index, unit in enumerate(units):
        unit.use(paths[index % len(paths)], onednn.PathChoices())


@pytest.mark.parametrize(
    ("name", "kwargs"), [("bbcu-m", {"scale": 2, "num_units": 5}), ("bbcu-l", {"scale": 2})]
)
def test_networks_give_the_same_output_on_every_path_assignment(name: str, kwargs: dict) -> None:
    model = randomized(name, **kwargs)
    x = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        simulated = model(x)
    reference = pack_model(model, "popcount")
    expected = reference(x)
    assert (expected - simulated).abs().max().item() <= 1e-4
    for assignment in (["onednn"], ["onednn", "popcount"], ["popcount", "popcount", "onednn"]):
        packed = pack_model(model, "popcount")
        assign(packed, assignment)
        assert torch.equal(packed(x), expected), assignment
    automatic = pack_model(model)
    assert torch.equal(automatic(x), expected)


def unit_paths(model: PackedModel) -> list[str]:
    return [path for name, path in model.layer_paths() if name.startswith("body.")]


def test_layer_paths_say_which_path_runs() -> None:
    model = randomized("bbcu-m", scale=2, num_units=2)
    assert set(unit_paths(pack_model(model, "onednn"))) == {onednn.path_label()}
    assert set(unit_paths(pack_model(model, "popcount"))) == {kernels.isa_label()}
    automatic = pack_model(model)
    assert all(path.startswith("auto (") for path in unit_paths(automatic))
    automatic(torch.rand(1, 3, 6, 7))
    assert set(unit_paths(automatic)) <= {onednn.path_label(), kernels.isa_label()}
    with pytest.raises(InvalidArgumentError, match="unknown engine paths"):
        pack_model(model, "fastest")


def test_the_choice_is_remembered_per_machine_and_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    model = randomized("bbcu-m", scale=2, num_units=2)
    x = torch.rand(1, 3, 6, 7)
    pack_model(model)(x)
    cache = tmp_path / "bbcu" / "engine_paths.json"
    choices = json.loads(cache.read_text())
    height, width = CHOICE_SIZE  # measured at this size whatever the input, so one key per layer shape
    (key,) = [k for k in choices if k.endswith(f"64->64 3x3 at {height}x{width}, threads 1/1")]
    assert key.startswith(onednn.machine()) and choices[key] in ("popcount", "onednn")
    # A remembered choice is taken as it is, not measured again: flip it and see it used.
    flipped = "popcount" if choices[key] == "onednn" else "onednn"
    cache.write_text(json.dumps({**choices, key: flipped}))
    again = pack_model(model)
    again(x)
    label = onednn.path_label() if flipped == "onednn" else kernels.isa_label()
    assert set(unit_paths(again)) == {label}


def test_a_damaged_cache_is_ignored_with_a_log_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cache = tmp_path / "bbcu" / "engine_paths.json"
    cache.parent.mkdir()
    model = randomized("dncnn-bbcu", depth=4)
    x = torch.rand(1, 3, 5, 6)
    expected = pack_model(model, "popcount")(x)
    for damage in (b'{"truncated', b"[1, 2]", b"\xff\xfe"):
        cache.write_bytes(damage)
        with caplog.at_level(logging.WARNING, logger="bbcu.engine.onednn"):
            assert torch.equal(pack_model(model)(x), expected)
        assert "ignoring the engine path cache" in caplog.text
        assert len(json.loads(cache.read_text())) == 1  # replaced by a valid file holding the new choice
        caplog.clear()


def test_restore_verbose_prints_each_layer_and_its_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = randomized("dncnn-bbcu", channels=16, depth=4)
    weights = export_model(model, tmp_path / "denoiser.bbcu")
    write_image(tmp_path / "in.png", np.random.default_rng(5).integers(0, 256, (9, 8, 3), dtype=np.uint8))
    argv = ["restore", str(tmp_path / "in.png"), "-o", str(tmp_path / "out"), "--weights", str(weights)]
    assert main([*argv, "--task", "denoise", "--engine", "packed", "--verbose"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("layer ")]
    names = [name for name, _ in pack_model(model).layer_paths()]
    assert [line.split(":")[0] for line in lines] == [f"layer {name}" for name in names]
    binary_paths = {line.split(": ", 1)[1] for line in lines[1:-1]}
    assert binary_paths <= {onednn.path_label(), kernels.isa_label()}


def test_a_choice_holds_only_for_the_kernels_it_was_measured_with() -> None:
    """The cache key names a digest of the compiled kernels: a rebuilt engine measures again."""
    with open(kernels._bitops.__file__, "rb") as built:
        digest = hashlib.sha256(built.read()).hexdigest()[:12]
    assert kernels.build_id() == digest
    assert f"| {kernels.get_isa()} {digest} |" in onednn.machine()
