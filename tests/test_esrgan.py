"""ESRGAN's RRDBNet: structure, the three checkpoint layouts, on-the-fly .pth restore, Real-ESRGAN options.

No official weights exist on this machine, so correctness is proven by structure: the parameter counts
of the published networks, and a reference forward pass written here from docs/references.md over a
BasicSR-named state dict, against which every layout (renamed here, from the same page, not by the
converter's rules) and every file format must give the same output.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bbcu.archs import create_model
from bbcu.cli.main import main
from bbcu.formats.convert import convert_checkpoint
from bbcu.formats.image_io import read_image, write_image
from bbcu.formats.weights import load, save
from bbcu.imaging.imresize import imresize
from bbcu.imaging.pixels import to_uint8
from bbcu.run.images import restore
from bbcu.run.tiling import restore_array

pytestmark = pytest.mark.usefixtures("one_thread")

CHANNELS, GROWTH, BLOCKS = 8, 4, 2
"""A tiny RRDBNet: the converter must read these off the tensors."""


# --- the network ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_parameter_counts_of_the_published_networks() -> None:
    with torch.device("meta"):
        counts = {
            (scale, blocks): sum(
                p.numel() for p in create_model("esrgan", scale=scale, blocks=blocks).parameters()
            )
            for scale, blocks in ((4, 23), (4, 6), (2, 23), (1, 23))
        }
    assert counts[4, 23] == 16_697_987  # RRDB_ESRGAN_x4 / RRDB_PSNR_x4 / RealESRGAN_x4plus
    assert counts[4, 6] == 4_467_779  # RealESRGAN_x4plus_anime_6B
    # x2 / x1: conv_first sees 4x / 16x the channels (12 / 48 instead of 3), 64 outputs of 3x3 each.
    assert counts[2, 23] - counts[4, 23] == (12 - 3) * 64 * 9
    assert counts[1, 23] - counts[4, 23] == (48 - 3) * 64 * 9


def test_unsupported_scale_is_refused() -> None:
    with pytest.raises(ValueError, match=r"scales \(1, 2, 4\), not 3"):
        create_model("rrdbnet", scale=3)


def conv(state: dict[str, torch.Tensor], name: str, x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, state[f"{name}.weight"], state[f"{name}.bias"], padding=1)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


def reference_forward(state: dict[str, torch.Tensor], x: torch.Tensor, scale: int) -> torch.Tensor:
    """ESRGAN's generator as docs/references.md describes it, straight over the BasicSR tensors."""
    blocks = len({key.split(".")[1] for key in state if key.startswith("body.")})
    if scale != 4:
        x = F.pixel_unshuffle(x, 4 // scale)
    first = conv(state, "conv_first", x)
    trunk = first
    for n in range(blocks):
        rrdb_input = trunk
        for k in (1, 2, 3):
            features = [trunk]
            for j in (1, 2, 3, 4):
                features.append(lrelu(conv(state, f"body.{n}.rdb{k}.conv{j}", torch.cat(features, 1))))
            trunk = conv(state, f"body.{n}.rdb{k}.conv5", torch.cat(features, 1)) * 0.2 + features[0]
        trunk = trunk * 0.2 + rrdb_input
    f = first + conv(state, "conv_body", trunk)
    f = lrelu(conv(state, "conv_up1", F.interpolate(f, scale_factor=2, mode="nearest")))
    f = lrelu(conv(state, "conv_up2", F.interpolate(f, scale_factor=2, mode="nearest")))
    return conv(state, "conv_last", lrelu(conv(state, "conv_hr", f)))


def basicsr_state(scale: int, blocks: int = BLOCKS, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under BasicSR's names, shaped as the reference page says."""
    shapes = {"conv_first": (CHANNELS, 3 * (4 // scale) ** 2)}
    for n in range(blocks):
        for k in (1, 2, 3):
            for j in range(1, 6):
                shapes[f"body.{n}.rdb{k}.conv{j}"] = (
                    CHANNELS if j == 5 else GROWTH,
                    CHANNELS + (j - 1) * GROWTH,
                )
    shapes |= {name: (CHANNELS, CHANNELS) for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr")}
    shapes["conv_last"] = (3, CHANNELS)
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, (out_ch, in_ch) in shapes.items():
        state[f"{name}.weight"] = torch.randn(out_ch, in_ch, 3, 3, generator=generator) / (3 * in_ch**0.5)
        state[f"{name}.bias"] = torch.randn(out_ch, generator=generator) * 0.05
    return state


def image_tensor(height: int = 8, width: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_network_computes_the_reference(scale: int) -> None:
    state = basicsr_state(scale)
    model = create_model("rrdbnet", scale=scale, channels=CHANNELS, blocks=BLOCKS, growth=GROWTH)
    model.load_state_dict(state, strict=True)
    x = image_tensor()
    with torch.no_grad():
        ours = model.eval()(x)
    torch.testing.assert_close(ours, reference_forward(state, x, scale), rtol=0, atol=1e-6)
    assert ours.shape == (1, 3, 8 * scale, 12 * scale)


@pytest.mark.parametrize(("scale", "size"), [(2, (7, 5)), (1, (9, 6)), (1, (2, 3))])
def test_sizes_the_unshuffle_cannot_divide_still_restore(scale: int, size: tuple[int, int]) -> None:
    """Padded by reflection (repetition when too small to reflect), the padding cropped off again."""
    model = create_model("rrdbnet", scale=scale, channels=CHANNELS, blocks=1, growth=GROWTH).eval()
    x = image_tensor(*size)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (1, 3, size[0] * scale, size[1] * scale)
    multiple = 4 // scale
    padded = (-size[0] % multiple, -size[1] % multiple)
    mode = "reflect" if min(size) > multiple else "replicate"
    with torch.no_grad():
        whole = model(F.pad(x, (0, padded[1], 0, padded[0]), mode=mode))
    torch.testing.assert_close(y, whole[..., : y.shape[-2], : y.shape[-1]], rtol=0, atol=0)


# --- the three checkpoint layouts -------------------------------------------------------------------

ESRGAN_NAMES = {"conv_body": "trunk_conv", "conv_up1": "upconv1", "conv_up2": "upconv2", "conv_hr": "HRconv"}
OLD_NAMES = {"conv_first": "model.0", "conv_up1": "model.3", "conv_up2": "model.6", "conv_hr": "model.8"}


def in_layout(state: dict[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    """``state`` under the key names of ``layout``, written from the reference page's table."""
    if layout == "basicsr":
        return dict(state)
    blocks = len({key.split(".")[1] for key in state if key.startswith("body.")})
    renamed = {}
    for key, tensor in state.items():
        name, leaf = key.rsplit(".", 1)
        if match := re.fullmatch(r"body\.(\d+)\.rdb(\d)\.(conv\d)", name):
            n, k, convj = match.groups()
            name = (
                f"RRDB_trunk.{n}.RDB{k}.{convj}"
                if layout == "esrgan"
                else f"model.1.sub.{n}.RDB{k}.{convj}.0"
            )
        elif layout == "esrgan":
            name = ESRGAN_NAMES.get(name, name)
        else:
            name = {**OLD_NAMES, "conv_body": f"model.1.sub.{blocks}", "conv_last": "model.10"}[name]
        renamed[f"{name}.{leaf}"] = tensor
    return renamed


def write_checkpoint(path: Path, state: dict[str, torch.Tensor], wrapper: str | None, legacy: bool) -> Path:
    payload = state if wrapper is None else {wrapper: state}
    torch.save(payload, path, _use_new_zipfile_serialization=not legacy)
    return path


CASES = [  # layout, scale, BasicSR entry (None: bare state dict), legacy (non-zip) torch file
    ("basicsr", 4, "params", False),
    ("basicsr", 4, "params_ema", True),
    ("basicsr", 2, "params", True),
    ("basicsr", 1, "params_ema", False),
    ("esrgan", 4, None, True),
    ("esrgan", 4, None, False),
    ("old", 4, None, True),
    ("old", 4, None, False),
]


@pytest.mark.parametrize(("layout", "scale", "wrapper", "legacy"), CASES)
def test_every_layout_converts_to_the_reference_network(
    layout: str, scale: int, wrapper: str | None, legacy: bool, tmp_path: Path
) -> None:
    state = basicsr_state(scale)
    path = write_checkpoint(tmp_path / "net.pth", in_layout(state, layout), wrapper, legacy)
    if legacy:
        assert not path.read_bytes().startswith(b"PK")  # really the old format, not a zip archive
    model = convert_checkpoint(path)  # no name: the layout says what it is
    expected = {"scale": scale, "channels": CHANNELS, "blocks": BLOCKS, "growth": GROWTH, "in_channels": 3}
    assert (model.model_name, model.model_kwargs) == ("rrdbnet", expected)
    x = image_tensor()
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference_forward(state, x, scale), rtol=0, atol=1e-6)


def test_the_layouts_give_identical_networks(tmp_path: Path) -> None:
    state = basicsr_state(4, blocks=3)
    outputs = []
    for layout in ("basicsr", "esrgan", "old"):
        path = write_checkpoint(tmp_path / f"{layout}.pth", in_layout(state, layout), None, legacy=True)
        with torch.no_grad():
            outputs.append(convert_checkpoint(path, "esrgan")(image_tensor()))
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[0], outputs[2])


def test_params_ema_is_preferred_unless_params_is_asked_for(tmp_path: Path) -> None:
    """Real-ESRGAN's inference loads the EMA weights when a file has both; --param-key overrides."""
    plain, ema = basicsr_state(4, seed=0), basicsr_state(4, seed=1)
    path = tmp_path / "both.pth"
    torch.save({"params": plain, "params_ema": ema}, path)
    x = image_tensor()
    with torch.no_grad():
        torch.testing.assert_close(
            convert_checkpoint(path)(x), reference_forward(ema, x, 4), rtol=0, atol=1e-6
        )
        chosen = convert_checkpoint(path, "esrgan", param_key="params")(x)
    torch.testing.assert_close(chosen, reference_forward(plain, x, 4), rtol=0, atol=1e-6)


class CodeRunningPayload:
    """Unpickling this opens (creates) ``marker``: any code could run in its place."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_restore_refuses_a_code_running_pth_without_running_it(
    legacy: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "ran"
    state: dict[str, object] = {**in_layout(basicsr_state(4), "esrgan"), "extra": CodeRunningPayload(marker)}
    path = write_checkpoint(tmp_path / "evil.pth", state, None, legacy)
    picture = tmp_path / "in.png"
    write_image(picture, np.zeros((4, 4, 3), np.uint8))
    assert main(["restore", str(picture), "--weights", str(path), "-o", str(tmp_path / "out")]) == 2
    assert not marker.exists()
    err = capsys.readouterr().err.strip()
    assert "refusing" in err and "could run code" in err and "\n" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("make_state", "args", "message"),
    [
        (lambda: {"conv.weight": torch.zeros(1)}, [], "is not an ESRGAN/RRDBNet checkpoint"),
        (lambda: basicsr_state(4), ["--scale", "2"], "is an x4 RRDBNet, not x2"),
        (
            lambda: {k: v for k, v in in_layout(basicsr_state(4), "esrgan").items() if k != "HRconv.bias"},
            [],
            "1 missing: conv_hr.bias",
        ),
        (
            lambda: {**in_layout(basicsr_state(4), "old"), "model.12.weight": torch.zeros(3)},
            ["--model", "esrgan"],
            "unexpected: model.12.weight",
        ),
        (
            lambda: {**basicsr_state(4), "conv_first.weight": torch.zeros(CHANNELS, 5, 3, 3)},
            [],
            "conv_first takes 5 channels for 3-channel images",
        ),
    ],
    ids=["foreign", "wrong-scale", "missing-key", "unexpected-key", "bad-width"],
)
def test_bad_checkpoints_give_one_line_errors(
    make_state, args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_checkpoint(tmp_path / "bad.pth", make_state(), None, legacy=True)
    output = tmp_path / "out.safetensors"
    assert main(["convert", str(path), *args, "-o", str(output)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not output.exists()


# --- bbcu convert, bbcu restore --weights X.pth ------------------------------------------------------


def test_convert_cli_writes_a_weights_file_that_rebuilds_the_network(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = basicsr_state(2)
    path = write_checkpoint(tmp_path / "RRDB_x2.pth", state, "params_ema", legacy=True)
    output = tmp_path / "esrgan_x2.safetensors"
    assert main(["convert", str(path), "--model", "esrgan", "-o", str(output)]) == 0
    out = capsys.readouterr().out.strip()
    assert out == (
        f"{path} -> {output}: esrgan x2 (channels {CHANNELS}, blocks {BLOCKS}, growth {GROWTH}, "
        f"in_channels 3), {len(state)} tensors"
    )
    model = load(output)
    x = image_tensor()
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference_forward(state, x, 2), rtol=0, atol=1e-6)


def restored_by_reference(state: dict[str, torch.Tensor], picture: np.ndarray, scale: int) -> np.ndarray:
    x = torch.from_numpy(picture).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        y = reference_forward(state, x, scale)
    return to_uint8(y[0].permute(1, 2, 0).numpy())


@pytest.mark.parametrize("model_args", [[], ["--model", "esrgan"]], ids=["detected", "named"])
def test_restore_runs_a_pth_directly(model_args: list[str], tmp_path: Path) -> None:
    state = basicsr_state(4)
    path = write_checkpoint(tmp_path / "RRDB_ESRGAN_x4.pth", in_layout(state, "esrgan"), None, legacy=True)
    picture = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    write_image(tmp_path / "in.png", picture)
    argv = [
        "restore",
        str(tmp_path / "in.png"),
        *model_args,
        "--weights",
        str(path),
        "-o",
        str(tmp_path / "out"),
    ]
    assert main(argv) == 0
    ours = read_image(tmp_path / "out" / "in.png").astype(int)
    expected = restored_by_reference(state, picture, 4).astype(int)
    assert ours.shape == (24, 32, 3)
    assert np.abs(ours - expected).max() <= 1 and (ours == expected).mean() > 0.99  # float rounding only


def test_restore_refuses_a_pth_of_another_network(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_checkpoint(tmp_path / "net.pth", basicsr_state(4), "params", legacy=False)
    write_image(tmp_path / "in.png", np.zeros((4, 4, 3), np.uint8))
    argv = [
        "restore",
        str(tmp_path / "in.png"),
        "--model",
        "bbcu-l",
        "--weights",
        str(path),
        "-o",
        str(tmp_path),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bbcu restore: error: cannot tell the scale of this SR checkpoint (no upconv1")


def test_restore_checks_the_named_model_against_a_weights_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "psnr.safetensors"
    save(create_model("rrdbnet", channels=CHANNELS, blocks=1, growth=GROWTH), weights)
    write_image(tmp_path / "in.png", np.zeros((4, 4, 3), np.uint8))
    argv = [
        "restore",
        str(tmp_path / "in.png"),
        "--model",
        "esrgan",
        "--weights",
        str(weights),
        "-o",
        str(tmp_path),
    ]
    assert main(argv) == 2
    assert "holds a rrdbnet model, not esrgan" in capsys.readouterr().err


# --- Real-ESRGAN-style restore options ------------------------------------------------------------------


def test_outscale_resizes_the_network_output_with_matlab_bicubic(tmp_path: Path) -> None:
    picture = np.random.default_rng(1).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    write_image(tmp_path / "in.png", picture)
    argv = [
        "restore",
        str(tmp_path / "in.png"),
        "--model",
        "bicubic",
        "--scale",
        "4",
        "-o",
        str(tmp_path / "o"),
    ]
    assert main([*argv, "--outscale", "3.5", "--suffix", "_x3.5"]) == 0
    assert main([*argv, "--outscale", "4"]) == 0
    network_output = restore(picture, model="bicubic", scale=4)
    expected = imresize(network_output, output_shape=(28, 35))  # int(8 * 3.5), int(10 * 3.5)
    np.testing.assert_array_equal(read_image(tmp_path / "o" / "in_x3.5.png"), expected)
    np.testing.assert_array_equal(
        read_image(tmp_path / "o" / "in.png"), network_output
    )  # same size: untouched


@pytest.mark.parametrize("value", ["0", "-2", "nan"])
def test_outscale_must_be_positive(value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_image(tmp_path / "in.png", np.zeros((4, 4, 3), np.uint8))
    argv = ["restore", str(tmp_path / "in.png"), "--model", "bicubic", "-o", str(tmp_path / "o")]
    assert main([*argv, "--outscale", value]) == 2
    assert "--outscale must be positive" in capsys.readouterr().err


def rgba_picture() -> np.ndarray:
    rng = np.random.default_rng(2)
    return np.dstack([rng.integers(0, 256, (6, 8, 3)), np.linspace(0, 255, 48).reshape(6, 8)]).astype(
        np.uint8
    )


@pytest.mark.parametrize("upsampler", ["bicubic", "network"])
def test_alpha_upsampler(upsampler: str, tmp_path: Path) -> None:
    """bicubic: MATLAB imresize of the alpha plane; network: the network on alpha as a grey picture
    (replicated to three channels, the output averaged back), as Real-ESRGAN does."""
    state = basicsr_state(2)
    path = write_checkpoint(tmp_path / "x2.pth", state, "params", legacy=False)
    picture = rgba_picture()
    write_image(tmp_path / "in.png", picture)
    argv = ["restore", str(tmp_path / "in.png"), "--weights", str(path), "-o", str(tmp_path / "o")]
    assert main([*argv, "--alpha-upsampler", upsampler]) == 0
    alpha = read_image(tmp_path / "o" / "in.png", keep_alpha=True)[:, :, 3].astype(int)
    if upsampler == "bicubic":
        np.testing.assert_array_equal(alpha, imresize(picture[:, :, 3], 2))
    else:
        grey = np.repeat(picture[:, :, 3:], 3, axis=2)
        x = torch.from_numpy(grey).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            expected = to_uint8(reference_forward(state, x, 2)[0].mean(0).numpy()).astype(int)
        assert np.abs(alpha - expected).max() <= 1 and (alpha == expected).mean() > 0.99


def test_network_alpha_upsampler_leaves_alpha_alone_at_scale_one(tmp_path: Path) -> None:
    model = create_model("rrdbnet", scale=1, channels=CHANNELS, blocks=1, growth=GROWTH)
    weights = tmp_path / "x1.safetensors"
    save(model, weights)
    picture = rgba_picture()
    write_image(tmp_path / "in.png", picture)
    argv = ["restore", str(tmp_path / "in.png"), "--weights", str(weights), "-o", str(tmp_path / "o")]
    assert main([*argv, "--alpha-upsampler", "network"]) == 0
    np.testing.assert_array_equal(
        read_image(tmp_path / "o" / "in.png", keep_alpha=True)[:, :, 3], picture[:, :, 3]
    )


# --- bbcu eval prints ESRGAN's published RRDB numbers beside ours --------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("name", "paper"), [("rrdbnet", r"32\.73\s+0\.9011"), ("esrgan", r"-")])
def test_eval_prints_the_published_rrdb_row(
    name: str, paper: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / f"{name}.safetensors"
    save(create_model(name, channels=CHANNELS, blocks=1, growth=GROWTH), weights)
    argv = ["eval", "--task", "sr", "--weights", str(weights), "--datasets", "Set5", "--scale", "4"]
    assert main([*argv, "--csv", str(tmp_path / "e.csv")]) == 0
    out = capsys.readouterr().out
    label = "RRDB (ESRGAN, PSNR) (rrdbnet)" if name == "rrdbnet" else "esrgan (esrgan)"
    assert f"{label}, sr x4" in out
    assert re.search(rf"Set5\s+5\s+\d+\.\d\d\s+\d\.\d{{4}}\s+\|\s+{paper}$", out, re.MULTILINE)


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_tiled_restoration_equals_the_whole_image_at_every_scale(scale: int) -> None:
    """The unshuffled trunk of x1 / x2 reaches ``unshuffle`` times further in input pixels, and its tiles
    must start on the unshuffle grid: with both, tiling changes nothing (odd sizes included)."""
    torch.manual_seed(0)
    network = create_model("rrdbnet", scale=scale, blocks=1).eval()
    image = np.random.default_rng(0).random((45, 37, 3)).astype(np.float32)
    whole = restore_array(network, image, tile=1000)
    assert np.array_equal(restore_array(network, image, tile=13), whole)
    assert whole.shape == (45 * scale, 37 * scale, 3)


@pytest.mark.slow
def test_automatic_overlap_is_capped_for_deep_networks_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    """Radius 23 (one block, x4) against a budget whose tiles are 64 input pixels: the overlap becomes 16,
    a quarter of the tile, instead of dwarfing the core; the log says so."""
    torch.manual_seed(0)
    network = create_model("rrdbnet", scale=4, blocks=1).eval()
    image = np.random.default_rng(1).random((80, 80, 3)).astype(np.float32)
    with caplog.at_level(logging.INFO, logger="bbcu.run.tiling"):
        capped = restore_array(network, image, pixel_budget=256 * 256)
    assert "tiles overlap by 16 input pixels, less than the receptive radius 23" in caplog.text
    assert np.abs(capped - restore_array(network, image, tile=1000)).max() < 1e-3
