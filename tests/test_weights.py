"""Weights files: a round trip for every registered model, and a clear error for every bad file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import safetensors.torch
import torch
from torch import nn

from bbcu.archs import create_model, model_entry
from bbcu.binary.conv import BinaryConv2d
from bbcu.cli.main import main
from bbcu.core.errors import InvalidArgumentError, InvalidFileError, OutputError
from bbcu.formats.weights import FORMAT, FORMAT_VERSION, load, read_metadata, save
from helpers import every_model, image_models

pytestmark = pytest.mark.usefixtures("one_thread")


def build(name: str) -> nn.Module:
    """SR models at x2 so the recorded kwargs differ from the factory default (x4)."""
    return create_model(name, scale=2) if model_entry(name).task == "sr" else create_model(name)


def randomize(model: nn.Module) -> None:
    """Move every float tensor off its initial value (zeros included), so a skipped load would show.

    The change is mostly relative, and the added part has zero mean, so that deep full-precision nets
    (SRResNet, the 23-block RRDBNet with its 345 dense convs) stay finite.
    """
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_floating_point():
                tensor.mul_(1 + 0.1 * torch.rand(tensor.shape, generator=generator))
                tensor.add_(0.01 * (torch.rand(tensor.shape, generator=generator) - 0.5))


def image(model: nn.Module) -> torch.Tensor:
    return torch.rand(1, model.in_channels, 12, 10, generator=torch.Generator().manual_seed(1))


@pytest.mark.slow
@pytest.mark.parametrize("name", image_models())
def test_round_trip_restores_the_model(name: str, tmp_path: Path) -> None:
    model = build(name)
    randomize(model)
    model.eval()
    path = tmp_path / f"{name}.safetensors"

    save(model, path, extra_metadata={"note": "test"})
    loaded = load(path)

    assert type(loaded) is type(model)
    assert (loaded.model_name, loaded.model_kwargs) == (model.model_name, model.model_kwargs)
    assert not loaded.training
    expected_state, loaded_state = model.state_dict(), loaded.state_dict()
    assert expected_state.keys() == loaded_state.keys()
    assert all(torch.equal(expected_state[k], loaded_state[k]) for k in expected_state)
    with torch.no_grad():
        x = image(model)
        restored, original = loaded(x), model(x)
    assert torch.isfinite(original).all()
    assert torch.equal(restored, original)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_header_records_how_to_rebuild(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save(create_model("bbcu-m", scale=3), path, extra_metadata={"converted_from": "x.pth"})
    metadata = read_metadata(path)
    assert metadata["format"] == FORMAT == "bbcu-weights"
    assert metadata["format_version"] == FORMAT_VERSION == "1"
    assert metadata["model"] == "bbcu-m"
    assert json.loads(metadata["model_kwargs"]) == {"scale": 3}
    assert metadata["converted_from"] == "x.pth"
    assert metadata["bbcu_version"]


def test_reserved_metadata_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reserved"):
        save(create_model("dncnn-lite"), tmp_path / "m.safetensors", extra_metadata={"model": "x"})


def test_a_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OutputError, match="No space left"):
        save(create_model("dncnn-lite"), tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_an_unusable_device_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="cannot place the model on device 'nonsense'"):
        load(our_file(tmp_path), device="nonsense")


def test_saving_into_a_missing_folder_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="cannot write"):
        save(create_model("dncnn-lite"), tmp_path / "nowhere" / "m.safetensors")


def our_file(tmp_path: Path, name: str = "dncnn-lite") -> Path:
    path = tmp_path / "model.safetensors"
    save(create_model(name), path)
    return path


def rewrite(path: Path, tensors: dict[str, torch.Tensor], **metadata_changes: str) -> None:
    """Write ``tensors`` back to ``path`` under ``path``'s own metadata, with some entries changed."""
    metadata = {**read_metadata(path), **metadata_changes}
    path.write_bytes(safetensors.torch.save(tensors, metadata=metadata))


def truncated(tmp_path: Path) -> Path:
    path = our_file(tmp_path)
    path.write_bytes(path.read_bytes()[:-100])
    return path


def foreign(tmp_path: Path) -> Path:
    path = tmp_path / "foreign.safetensors"
    path.write_bytes(safetensors.torch.save({"weight": torch.zeros(2)}))
    return path


def random_bytes(tmp_path: Path) -> Path:
    path = tmp_path / "noise.safetensors"
    path.write_bytes(
        torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0)).byte().numpy()
    )
    return path


def renamed_pth(tmp_path: Path) -> Path:
    path = tmp_path / "model.safetensors"
    torch.save(create_model("dncnn-lite").state_dict(), path)
    return path


def empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.safetensors"
    path.touch()
    return path


def future_version(tmp_path: Path) -> Path:
    path = our_file(tmp_path)
    rewrite(path, safetensors.torch.load_file(path), format_version="2")
    return path


def unknown_model(tmp_path: Path) -> Path:
    path = our_file(tmp_path)
    rewrite(path, safetensors.torch.load_file(path), model="no-such-net")
    return path


def missing_key(tmp_path: Path) -> Path:
    path = our_file(tmp_path)
    tensors = safetensors.torch.load_file(path)
    del tensors["model.0.weight"]
    rewrite(path, tensors)
    return path


def unexpected_key(tmp_path: Path) -> Path:
    path = our_file(tmp_path)
    rewrite(path, {**safetensors.torch.load_file(path), "model.99.weight": torch.zeros(1)})
    return path


def wrong_shape(tmp_path: Path) -> Path:
    path = our_file(tmp_path)
    rewrite(path, {**safetensors.torch.load_file(path), "model.0.weight": torch.zeros(64, 3, 3, 3)})
    return path


def huge_arguments(tmp_path: Path) -> Path:
    """A small file whose header asks for a network of about 360 GB (issue 12)."""
    path = our_file(tmp_path, "bbcu-m")
    rewrite(path, safetensors.torch.load_file(path), model_kwargs='{"channels": 100000, "scale": 4}')
    return path


def nan_weight(tmp_path: Path) -> Path:
    path = our_file(tmp_path)
    tensors = safetensors.torch.load_file(path)
    tensors["model.0.weight"][0, 0, 0, 0] = float("nan")
    rewrite(path, tensors)
    return path


def infinite_bias(tmp_path: Path) -> Path:
    path = our_file(tmp_path, "dncnn3-lite")
    tensors = safetensors.torch.load_file(path)
    key = next(k for k in tensors if k.endswith("bias"))
    tensors[key][0] = float("-inf")
    rewrite(path, tensors)
    return path


@pytest.mark.parametrize(
    ("make_file", "message"),
    [
        (lambda tmp: tmp / "absent.safetensors", "not found"),
        (huge_arguments, "does not fit bbcu-m"),
        (nan_weight, "NaN or infinite values in 1 tensor(s): model.0.weight"),
        (infinite_bias, "NaN or infinite values in 1 tensor(s)"),
        (truncated, "not a readable safetensors file"),
        (foreign, "not a bbcu weights file"),
        (random_bytes, "not a readable safetensors file"),
        (renamed_pth, "not a readable safetensors file"),
        (empty, "not a readable safetensors file"),
        (future_version, "version '2'"),
        (unknown_model, "unknown model 'no-such-net'"),
        (missing_key, "1 missing: model.0.weight"),
        (unexpected_key, "1 unexpected: model.99.weight"),
        (wrong_shape, "model.0.weight (file 64x3x3x3, model 12x3x3x3)"),
    ],
    ids=[
        "missing-file",
        "huge-arguments",
        "nan-weight",
        "infinite-bias",
        "truncated",
        "foreign",
        "random-bytes",
        "renamed-pth",
        "empty",
        "future-version",
        "unknown-model",
        "missing-key",
        "unexpected-key",
        "wrong-shape",
    ],
)
def test_bad_files_give_one_line_user_errors(make_file, message: str, tmp_path: Path) -> None:
    path = make_file(tmp_path)
    with pytest.raises(InvalidFileError) as caught:
        load(path)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def binary_convs(model: nn.Module) -> dict[str, BinaryConv2d]:
    return {name: m for name, m in model.named_modules() if isinstance(m, BinaryConv2d)}


@pytest.mark.parametrize("name", every_model(image_models()))
def test_compact_file_computes_what_the_latent_one_does(name: str, tmp_path: Path) -> None:
    """Sign bits + alphas rebuild the very weights the forward pass used: same signs, same scales."""
    model = build(name)
    randomize(model)
    model.eval()
    path = tmp_path / "compact.safetensors"
    save(model, path, binary_as_bits=True)
    loaded = load(path)
    for key, conv in binary_convs(model).items():
        used, rebuilt = conv.binarized_weight(), binary_convs(loaded)[key].binarized_weight()
        assert torch.equal(torch.sign(used), torch.sign(rebuilt)), key
        torch.testing.assert_close(rebuilt, used, rtol=1e-6, atol=0)
    with torch.no_grad():
        x = image(model)
        torch.testing.assert_close(loaded(x), model(x), rtol=1e-5, atol=1e-5)


def test_compact_file_holds_one_bit_per_binary_weight(tmp_path: Path) -> None:
    model = create_model("bbcu-m", scale=4)
    latent, compact = tmp_path / "latent.safetensors", tmp_path / "compact.safetensors"
    save(model, latent)
    save(model, compact, binary_as_bits=True)
    binary = {f"{name}.weight": conv for name, conv in binary_convs(model).items()}
    expected_bytes = sum(
        -(-t.numel() // 8) + 4 * t.shape[0] if key in binary else t.numel() * t.element_size()
        for key, t in model.state_dict().items()
    )
    header = 64 * 1024  # names, shapes, offsets and metadata as JSON
    assert expected_bytes <= compact.stat().st_size < expected_bytes + header
    assert compact.stat().st_size * 10 < latent.stat().st_size


def test_compact_file_keeps_sign_of_zero_positive(tmp_path: Path) -> None:
    model = create_model("dncnn3-bbcu", channels=8, depth=4)
    key, conv = next(iter(binary_convs(model).items()))
    with torch.no_grad():
        conv.weight[0, 0, 0, 0] = 0.0
    save(model, tmp_path / "m.safetensors", binary_as_bits=True)
    assert binary_convs(load(tmp_path / "m.safetensors"))[key].weight[0, 0, 0, 0] > 0


def test_compact_file_with_damaged_bits_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    model = create_model("dncnn3-bbcu", channels=8, depth=4)
    save(model, path, binary_as_bits=True)
    tensors = safetensors.torch.load_file(path)
    bits_key = next(k for k in tensors if k.endswith(".sign_bits"))
    rewrite(path, {**tensors, bits_key: tensors[bits_key][:-1]})
    with pytest.raises(InvalidFileError, match="does not fit"):
        load(path)


def test_export_writes_the_compact_form(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source, target = tmp_path / "latent.safetensors", tmp_path / "small.safetensors"
    save(create_model("bbcu-m", scale=2), source)
    assert main(["export", "--format", "weights", str(source), "-o", str(target)]) == 0
    assert read_metadata(target)["binary_weights"] == "bits"
    assert "compact file:" in capsys.readouterr().out
    assert load(target).model_kwargs == {"scale": 2}
