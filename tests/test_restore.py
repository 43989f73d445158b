"""The restore API and the model zoo: every input type keeps its type, layout and mode; models resolve.

Truths used: MATLAB-exact ``imresize`` for the non-learned bicubic model, a direct forward call of the
same network for learned models, and the whole-image run for tiled ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import bbcu
from bbcu.archs import create_model
from bbcu.core.errors import BbcuError, InvalidArgumentError, ModelNotFoundError
from bbcu.data.root import data_root
from bbcu.engine import PackedModel
from bbcu.engine.export import export_model
from bbcu.formats.image_io import read_image
from bbcu.formats.weights import save
from bbcu.imaging.imresize import imresize
from bbcu.imaging.pixels import to_float, to_uint8
from bbcu.run import zoo
from bbcu.run.images import restore
from bbcu.run.resolve import resolve_model
from bbcu.run.tiling import restore_array

SMALL_CHANNELS = 16
"""Width of the random-weight networks here: enough to exercise every layer, cheap on two cores."""


@pytest.fixture(scope="module")
def lr() -> np.ndarray:
    """A 24x20 colour crop of Set5's official x4 LR butterfly (real image statistics, tiny cost)."""
    return read_image(data_root() / "Set5" / "LR_bicubic" / "X4" / "butterflyx4.png")[10:30, 20:44]


@pytest.fixture(scope="module")
def sr_x2() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("bbcu-l", scale=2, channels=SMALL_CHANNELS, num_units=4).eval()


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty zoo folder that ``bbcu.zoo`` reads instead of the project's ``models/``."""
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv(zoo.ENV_VAR, str(folder))
    return folder


def forward_uint8(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """The truth for learned models: one direct forward pass, rounded like every saved output."""
    x = torch.from_numpy(to_float(image).transpose(2, 0, 1)).unsqueeze(0)
    with torch.no_grad():
        y = model(x)[0].numpy().transpose(1, 2, 0)
    return to_uint8(np.clip(y, 0, 1))


# ----------------------------------------------------------------------------- bicubic against imresize


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_colour_equals_matlab_imresize(lr: np.ndarray, scale: int) -> None:
    out = restore(lr, model="bicubic", scale=scale)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, imresize(lr, scale))


def test_grey_stays_grey_and_equals_imresize(lr: np.ndarray) -> None:
    grey = lr[:, :, 1].copy()
    out = restore(grey, model="bicubic", scale=3)
    assert out.shape == (60, 72)
    np.testing.assert_array_equal(out, imresize(grey, 3))


def test_single_channel_layout_is_kept(lr: np.ndarray) -> None:
    out = restore(lr[:, :, :1], model="bicubic", scale=2)
    assert out.shape == (40, 48, 1)
    np.testing.assert_array_equal(out[:, :, 0], imresize(lr[:, :, 0], 2))


def test_float_input_gives_float_output(lr: np.ndarray) -> None:
    out = restore(to_float(lr).astype(np.float64), model="bicubic", scale=2)
    assert out.dtype == np.float64 and out.shape == (40, 48, 3)
    np.testing.assert_allclose(out, imresize(lr, 2) / 255.0, atol=1e-6)


def test_rgba_alpha_is_carried_through_and_upscaled(lr: np.ndarray) -> None:
    alpha = np.linspace(0, 255, lr.shape[0] * lr.shape[1]).reshape(lr.shape[:2]).astype(np.uint8)
    out = restore(np.dstack([lr, alpha]), model="bicubic", scale=4)
    assert out.shape == (80, 96, 4)
    np.testing.assert_array_equal(out[:, :, :3], imresize(lr, 4))
    np.testing.assert_array_equal(out[:, :, 3], imresize(alpha, 4))


def test_alpha_is_untouched_at_scale_one(lr: np.ndarray) -> None:
    torch.manual_seed(1)
    denoiser = create_model("dncnn-bbcu", channels=SMALL_CHANNELS, depth=4)
    alpha = np.full(lr.shape[:2], 77, np.uint8)
    out = restore(np.dstack([lr, alpha]), model=denoiser)
    np.testing.assert_array_equal(out[:, :, 3], alpha)
    np.testing.assert_array_equal(out[:, :, :3], forward_uint8(denoiser, lr))


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_pil_mode_and_size_are_kept(lr: np.ndarray, mode: str) -> None:
    image = Image.fromarray(lr).convert(mode)
    out = restore(image, model="bicubic", scale=2)
    assert isinstance(out, Image.Image)
    assert out.mode == mode and out.size == (48, 40)
    np.testing.assert_array_equal(np.asarray(out.convert("RGB")), np.asarray(_bicubic_pil(image, 2)))


def _bicubic_pil(image: Image.Image, scale: int) -> Image.Image:
    """Channel-wise MATLAB imresize of a PIL image, converted to RGB for comparison."""
    array = np.asarray(image)
    planes = [array] if array.ndim == 2 else [array[:, :, c] for c in range(array.shape[2])]
    resized = [imresize(p, scale) for p in planes]
    return Image.fromarray(resized[0] if len(resized) == 1 else np.dstack(resized)).convert("RGB")


def test_other_pil_modes_come_back_as_rgb(lr: np.ndarray) -> None:
    palette = Image.fromarray(lr).convert("P")
    out = restore(palette, model="bicubic", scale=2)
    assert out.mode == "RGB" and out.size == (48, 40)
    np.testing.assert_array_equal(np.asarray(out), imresize(np.asarray(palette.convert("RGB")), 2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tensor_chw_and_nchw(lr: np.ndarray, dtype: torch.dtype) -> None:
    chw = torch.from_numpy(to_float(lr).transpose(2, 0, 1)).to(dtype)
    expected = torch.from_numpy(to_float(imresize(lr, 2)).transpose(2, 0, 1)).to(dtype)
    single = restore(chw, model="bicubic", scale=2)
    assert single.shape == (3, 40, 48) and single.dtype == dtype
    torch.testing.assert_close(single, expected, atol=1e-6, rtol=0)
    batch = restore(torch.stack([chw, chw.flip(-1)]), model="bicubic", scale=2)
    assert batch.shape == (2, 3, 40, 48)
    torch.testing.assert_close(batch[0], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(batch[1], expected.flip(-1), atol=1e-6, rtol=0)


def test_unsupported_inputs_are_type_errors(lr: np.ndarray) -> None:
    with pytest.raises(TypeError):
        restore(lr.tolist(), model="bicubic")
    with pytest.raises(TypeError):
        restore(lr.astype(np.int32), model="bicubic")
    with pytest.raises(TypeError):
        restore(torch.zeros(3, 4, 4, dtype=torch.uint8), model="bicubic")


# ------------------------------------------------------------------------------------- model routes


@pytest.mark.slow
def test_module_weights_path_and_shipped_name_agree_with_a_forward_pass(
    lr: np.ndarray, sr_x2: torch.nn.Module, models_dir: Path
) -> None:
    save(sr_x2, models_dir / "bbcu-l-x2.safetensors")
    truth = forward_uint8(sr_x2, lr)
    routes = {
        "module": restore(lr, model=sr_x2),
        "weights": restore(lr, weights=models_dir / "bbcu-l-x2.safetensors"),
        "path as model": restore(lr, model=str(models_dir / "bbcu-l-x2.safetensors")),
        "shipped name": restore(lr, model="bbcu-l-x2"),
        "shipped default": restore(lr, task="sr", scale=2),
        "architecture checked": restore(lr, model="bbcu-l", weights=models_dir / "bbcu-l-x2.safetensors"),
    }
    for route, out in routes.items():
        assert out.shape == (40, 48, 3), route
        np.testing.assert_array_equal(out, truth, err_msg=route)


def test_zoo_lists_and_describes_shipped_models(sr_x2: torch.nn.Module, models_dir: Path) -> None:
    assert zoo.list_shipped() == []
    save(sr_x2, models_dir / "bbcu-l-x2.safetensors")
    (models_dir / "bbcu-l-x2.md").write_text("# bbcu-l-x2\n")
    assert zoo.list_shipped() == ["bbcu-l-x2"]
    info = zoo.shipped_info("bbcu-l-x2")
    assert (info.architecture, info.task, info.scale) == ("bbcu-l", "sr", 2)
    assert zoo.model_card("bbcu-l-x2") == models_dir / "bbcu-l-x2.md"
    assert zoo.packed_path("bbcu-l-x2") is None
    with pytest.raises(ModelNotFoundError, match="shipped: bbcu-l-x2"):
        zoo.shipped_path("bbcu-l-x4")


def test_zoo_takes_unrecorded_scales_from_the_factory_defaults(models_dir: Path) -> None:
    """Models saved without a ``scale`` keyword: SR factories default to x4, denoisers to 1."""
    save(create_model("bbcu-m", channels=8, num_units=1), models_dir / "m.safetensors")
    save(create_model("dncnn-bbcu", channels=8, depth=3), models_dir / "dncnn-bbcu-blind.safetensors")
    assert (zoo.shipped_info("m").task, zoo.shipped_info("m").scale) == ("sr", 4)
    blind = zoo.shipped_info("dncnn-bbcu-blind")
    assert (blind.architecture, blind.task, blind.scale) == ("dncnn-bbcu", "denoise", 1)
    assert resolve_model(task="denoise").name == "dncnn-bbcu-blind"


def test_defaults_per_task_and_scale() -> None:
    assert zoo.default_model("sr", 4) == "bbcu-l-x4"
    assert zoo.default_model("sr", 2) == "bbcu-l-x2"
    assert zoo.default_model("denoise") == "dncnn-bbcu-blind"
    assert zoo.default_model("jpeg") == "dncnn3-bbcu-blind"
    with pytest.raises(ModelNotFoundError):
        zoo.default_model("denoise", 2)


def test_shipped_models_are_package_data_with_every_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """The models live inside the imported package (so a wheel carries them), each with a card."""
    monkeypatch.delenv(zoo.ENV_VAR, raising=False)
    assert zoo.models_dir() == Path(bbcu.__file__).resolve().parent / "models"
    assert set(zoo.DEFAULT_MODELS.values()) <= set(zoo.list_shipped())
    assert all(zoo.model_card(name) is not None for name in zoo.list_shipped())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "sr", "scale": 4}, "not shipped"),
        ({"model": "bbcu-l"}, "without trained weights"),
        ({"model": "no-such-model"}, "unknown model"),
        ({"model": "bicubic", "task": "denoise"}, "not a denoise model"),
        ({"model": "bicubic", "engine": "gpu"}, "unknown engine"),
        ({"model": "bicubic", "task": "deblur"}, "unknown task"),
        ({"weights": "missing.safetensors"}, "not found"),
        ({"weights": "model.bbcu", "engine": "torch"}, "packed engine"),
    ],
)
def test_user_errors(kwargs: dict[str, object], message: str, models_dir: Path) -> None:
    with pytest.raises(BbcuError, match=message):
        resolve_model(**kwargs)


def test_scale_mismatch_is_a_user_error(sr_x2: torch.nn.Module, models_dir: Path) -> None:
    save(sr_x2, models_dir / "bbcu-l-x2.safetensors")
    with pytest.raises(InvalidArgumentError, match="not 4"):
        resolve_model("bbcu-l-x2", scale=4)
    with pytest.raises(InvalidArgumentError, match="not bbcu-m"):
        resolve_model("bbcu-m", weights=models_dir / "bbcu-l-x2.safetensors")


# --------------------------------------------------------------------------------- tiling and engines


@pytest.mark.slow
def test_tiled_equals_whole_image(lr: np.ndarray, sr_x2: torch.nn.Module) -> None:
    image = to_float(lr)
    whole = restore(image, model=sr_x2)
    tiled = restore(image, model=sr_x2, tile=7)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_packed_engine_matches_torch(lr: np.ndarray, sr_x2: torch.nn.Module, models_dir: Path) -> None:
    """The packed engine - exported on the fly from a module or shipped weights, or read from a shipped
    ``.bbcu`` file - agrees with PyTorch."""
    save(sr_x2, models_dir / "bbcu-l-x2.safetensors")
    image = to_float(lr)
    reference = restore(image, model=sr_x2)
    for source in (sr_x2, "bbcu-l-x2"):
        resolved = resolve_model(source, engine="packed")
        assert isinstance(resolved.network, PackedModel)
        np.testing.assert_allclose(restore(image, model=resolved), reference, atol=1e-4)
    export_model(sr_x2, models_dir / "bbcu-l-x2.bbcu")
    assert zoo.packed_path("bbcu-l-x2") == models_dir / "bbcu-l-x2.bbcu"
    from_file = restore(image, weights=models_dir / "bbcu-l-x2.bbcu", engine="packed")
    np.testing.assert_allclose(from_file, reference, atol=1e-4)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((0, 5, 3), np.uint8),
        np.zeros((5, 0), np.uint8),
        np.zeros((0, 0, 4), np.float32),
        Image.new("RGB", (0, 4)),
        torch.zeros(3, 4, 0),
    ],
    ids=["0xN-colour", "Nx0-grey", "0x0-rgba", "pil-0x4", "tensor-4x0"],
)
def test_an_empty_image_is_an_invalid_argument(image: object, sr_x2: torch.nn.Module) -> None:
    """Issue 12: a zero-size image used to end in a bare AssertionError (or a range() ValueError)."""
    for model in ("bicubic", sr_x2):
        with pytest.raises(InvalidArgumentError, match="empty image"):
            restore(image, model=model, scale=2)


def test_restore_array_refuses_an_empty_image(sr_x2: torch.nn.Module) -> None:
    with pytest.raises(InvalidArgumentError, match=r"empty image \(shape \(7, 0, 3\)\)"):
        restore_array(sr_x2, np.zeros((7, 0, 3), np.uint8), tile=4)
