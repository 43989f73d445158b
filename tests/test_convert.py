"""Official checkpoint conversion, checked against an independent re-implementation of the official nets.

The reference below is written from the official checkpoint layout (docs/method.md and the official
``quant_convs_bbcu.py`` / ``bbcul_arch.py`` / ``bbcum_arch.py`` / ``network_dncnn_bin.py`` structure): its
module names ARE the official keys, it binarizes with ``torch.sign`` like the official code, and it
shares no code with ``bbcu``. A randomly initialised reference is saved in the BasicSR or KAIR wrapping,
converted, and the converted model must reproduce the reference's output.

``torch.sign(0) = 0`` there and ``+1`` here: every shift, weight and input is drawn from a continuous
distribution, so no binarizer input is exactly zero and the conventions cannot disagree.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bbcu.cli.main import main
from bbcu.formats.convert import official_to_bbcu_key
from bbcu.formats.weights import load, read_metadata

FEATURES = 64
OFFICIAL_K = 130.0
RELATIVE_TOLERANCE = 1e-5


pytestmark = pytest.mark.usefixtures("one_thread")


class OfficialShift(nn.Module):
    """Official ``LearnableBias``: ``bias`` of shape 1xCx1x1, added."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


class OfficialRPReLU(nn.Module):
    """Official ``RPReLU``: ``pr_bias1(pr_prelu(pr_bias0(x)))``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pr_bias0 = OfficialShift(channels)
        self.pr_prelu = nn.PReLU(channels)
        self.pr_bias1 = OfficialShift(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pr_bias1(self.pr_prelu(self.pr_bias0(x)))


class OfficialHardBinaryConv(nn.Conv2d):
    """Official ``HardBinaryConv`` forward: per-output-channel mean |W| times torch.sign(W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = (
            self.weight.abs().mean(dim=3, keepdim=True).mean(dim=2, keepdim=True).mean(dim=1, keepdim=True)
        )
        return F.conv2d(x, scale * torch.sign(self.weight), self.bias, padding=1)


class OfficialUnit(nn.Module):
    """Official ``BinaryConv2d`` (``upscale=None``: identity skip) or ``BinaryUpConv2d`` (nearest skip)."""

    def __init__(self, in_ch: int, out_ch: int, bias: bool = False, upscale: int | None = None) -> None:
        super().__init__()
        self.upscale = upscale
        self.move0 = OfficialShift(in_ch)
        self.binary_conv = OfficialHardBinaryConv(in_ch, out_ch, 3, padding=1, bias=bias)
        self.relu = OfficialRPReLU(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.binary_conv(torch.sign(self.move0(x))))
        if self.upscale is None:
            return y + x
        return F.pixel_shuffle(y, self.upscale) + F.interpolate(x, scale_factor=self.upscale, mode="nearest")


class OfficialBlock(nn.Module):
    """Official ``BinaryBlock``: two units in ``body``, no block skip."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(OfficialUnit(FEATURES, FEATURES), OfficialUnit(FEATURES, FEATURES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class OfficialSR(nn.Module):
    """Official ``BBCUL`` (``binary_up=False``) and ``BBCUM`` (``binary_up=True``)."""

    def __init__(self, scale: int, binary_up: bool, k: float = OFFICIAL_K) -> None:
        super().__init__()
        self.scale, self.binary_up, self.k = scale, binary_up, k
        self.conv_first = nn.Conv2d(3, FEATURES, 3, padding=1)
        self.body = nn.Sequential(*(OfficialBlock() for _ in range(16)))
        self.stages = [2, 2] if scale == 4 else [scale]
        for index, stage in enumerate(self.stages, start=1):
            out_ch = FEATURES * stage * stage
            upconv = (
                OfficialUnit(FEATURES, out_ch, upscale=stage)
                if binary_up
                else nn.Conv2d(FEATURES, out_ch, 3, padding=1)
            )
            setattr(self, f"upconv{index}", upconv)
        self.conv_hr = (
            OfficialUnit(FEATURES, FEATURES) if binary_up else nn.Conv2d(FEATURES, FEATURES, 3, padding=1)
        )
        self.conv_last = nn.Conv2d(FEATURES, 3, 3, padding=1)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        x = lr * self.k
        out = self.body(F.leaky_relu(self.conv_first(x), 0.1))
        for index, stage in enumerate(self.stages, start=1):
            upconv = getattr(self, f"upconv{index}")
            out = upconv(out) if self.binary_up else F.leaky_relu(F.pixel_shuffle(upconv(out), stage), 0.1)
        out = self.conv_last(F.leaky_relu(self.conv_hr(out), 0.1))
        out = out + F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return out / self.k


class OfficialDnCNN(nn.Module):
    """Official binary ``DnCNN`` (KAIR layout): ``model`` = conv, ReLU, 18 units, conv; noise residual."""

    def __init__(self, channels: int, bias: bool) -> None:
        super().__init__()
        units = [OfficialUnit(FEATURES, FEATURES, bias=bias) for _ in range(18)]
        self.model = nn.Sequential(
            nn.Conv2d(channels, FEATURES, 3, padding=1, bias=bias),
            nn.ReLU(),
            *units,
            nn.Conv2d(FEATURES, channels, 3, padding=1, bias=bias),
        )

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        x = noisy * OFFICIAL_K
        return (x - self.model(x)) / OFFICIAL_K


class BasicSRResidualBlock(nn.Module):
    """BasicSR's ``ResidualBlockNoBN``: ``x + conv2(ReLU(conv1(x)))``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(FEATURES, FEATURES, 3, padding=1)
        self.conv2 = nn.Conv2d(FEATURES, FEATURES, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class BasicSRMSRResNet(OfficialSR):
    """BasicSR's full-precision ``MSRResNet``: BBCU-L's frame with residual blocks and no ``k``."""

    def __init__(self, scale: int) -> None:
        super().__init__(scale, binary_up=False, k=1.0)
        self.body = nn.Sequential(*(BasicSRResidualBlock() for _ in range(16)))


def official_network(model: str, scale: int | None, seed: int) -> nn.Module:
    """A reference network with every parameter drawn at random (shifts, RPReLU and biases included)."""
    builders = {
        "bbcu-l": lambda: OfficialSR(scale, binary_up=False),
        "bbcu-m": lambda: OfficialSR(scale, binary_up=True),
        "srresnet": lambda: BasicSRMSRResNet(scale),
        "dncnn-bbcu": lambda: OfficialDnCNN(3, bias=False),
        "dncnn3-bbcu": lambda: OfficialDnCNN(1, bias=True),
    }
    net = builders[model]()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in net.named_parameters():
            if name.endswith("pr_prelu.weight"):
                param.copy_(0.25 + 0.25 * torch.randn(param.shape, generator=generator))
            else:  # conv kernels keep a gain near 1 so the full-precision nets stay in range
                spread = 1 / math.sqrt(param[0].numel()) if param.dim() == 4 else 0.1
                param.copy_(spread * torch.randn(param.shape, generator=generator))
    return net.eval()


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return float((ours - reference).abs().max() / reference.abs().max())


CASES = [
    ("bbcu-l", 2, "basicsr"),
    ("bbcu-l", 4, "basicsr"),
    ("bbcu-m", 2, "basicsr"),
    ("bbcu-m", 4, "basicsr"),
    ("srresnet", 4, "basicsr"),  # BasicSR's own MSRResNet checkpoints share the layout
    ("dncnn-bbcu", None, "kair"),
    ("dncnn3-bbcu", None, "kair"),
]


@pytest.mark.parametrize(("model", "scale", "wrapping"), CASES)
def test_converted_model_reproduces_the_official_network(
    model: str, scale: int | None, wrapping: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = official_network(model, scale, seed=0)
    state = reference.state_dict()
    checkpoint = tmp_path / "official.pth"
    torch.save({"params": state} if wrapping == "basicsr" else state, checkpoint)
    output = tmp_path / "converted.safetensors"

    # No --scale: an SR checkpoint's scale is read off its upsampler.
    assert main(["convert", str(checkpoint), "--model", model, "-o", str(output)]) == 0
    converted = load(output)

    assert read_metadata(output)["converted_from"] == "official.pth"
    if scale is not None:
        assert converted.scale == scale
    channels = 1 if model == "dncnn3-bbcu" else 3
    images = torch.rand(2, channels, 9, 11, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, actual = reference(images), converted(images)
    assert actual.shape == expected.shape
    assert relative_error(actual, expected) <= RELATIVE_TOLERANCE
    assert "tensors" in capsys.readouterr().out


@pytest.mark.slow
def test_param_key_selects_the_entry(tmp_path: Path) -> None:
    """BasicSR's test scripts load ``params`` by default; ``--param-key params_ema`` takes the EMA copy."""
    plain, ema = official_network("bbcu-m", 2, seed=0), official_network("bbcu-m", 2, seed=1)
    checkpoint = tmp_path / "official.pth"
    torch.save({"params": plain.state_dict(), "params_ema": ema.state_dict(), "iter": 5}, checkpoint)
    images = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    for extra, reference in (([], plain), (["--param-key", "params_ema"], ema)):
        output = tmp_path / f"converted{len(extra)}.safetensors"
        assert main(["convert", str(checkpoint), "--model", "bbcu-m", "-o", str(output), *extra]) == 0
        with torch.no_grad():
            assert relative_error(load(output)(images), reference(images)) <= RELATIVE_TOLERANCE


@pytest.mark.parametrize(
    ("official", "ours"),
    [
        ("conv_first.weight", "conv_first.weight"),
        ("body.0.body.0.move0.bias", "body.0.shift.bias"),
        ("body.15.body.1.binary_conv.weight", "body.31.conv.weight"),
        ("body.3.body.1.relu.pr_bias0.bias", "body.7.act.gamma"),
        ("body.3.body.0.relu.pr_prelu.weight", "body.6.act.beta"),
        ("body.3.body.0.relu.pr_bias1.bias", "body.6.act.zeta"),
        ("upconv1.weight", "upsampler.0.conv.weight"),
        ("upconv2.bias", "upsampler.1.conv.bias"),
        ("upconv2.binary_conv.weight", "upsampler.1.conv.weight"),
        ("upconv1.move0.bias", "upsampler.0.shift.bias"),
        ("conv_hr.weight", "conv_hr.weight"),
        ("conv_hr.relu.pr_prelu.weight", "conv_hr.act.beta"),
        ("model.0.weight", "model.0.weight"),
        ("model.7.binary_conv.bias", "model.7.conv.bias"),
        ("model.19.move0.bias", "model.19.shift.bias"),
    ],
)
def test_key_mapping(official: str, ours: str) -> None:
    assert official_to_bbcu_key(official) == ours


class CodeRunningPayload:
    """Unpickling this opens (creates) ``marker`` - any code could run in its place."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


def torch_zip(path: Path, payload: object) -> Callable[[], object]:
    """Write a torch zip checkpoint holding ``payload``; return an unsafe loader of it (the control)."""
    torch.save({"params": payload}, path)
    return lambda: torch.load(path, weights_only=False)


def raw_pickle(protocol: int) -> Callable[[Path, object], Callable[[], object]]:
    """Writer of a bare pickle file, as the oldest checkpoints are (and as an attacker may write one)."""

    def write(path: Path, payload: object) -> Callable[[], object]:
        path.write_bytes(pickle.dumps({"params": payload}, protocol=protocol))
        return lambda: pickle.loads(path.read_bytes())

    return write


@pytest.mark.parametrize(
    "write", [torch_zip, raw_pickle(4), raw_pickle(0)], ids=["zip", "pickle4", "pickle0"]
)
def test_a_code_running_pickle_is_refused_not_run(
    write: Callable[[Path, object], Callable[[], object]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    control_marker, marker = tmp_path / "control-ran", tmp_path / "ran"
    control, malicious = tmp_path / "control.pth", tmp_path / "malicious.pth"
    write(control, CodeRunningPayload(control_marker))()  # the payload is live: a plain unpickle runs it
    assert control_marker.exists()
    write(malicious, CodeRunningPayload(marker))

    output = tmp_path / "out.safetensors"
    assert main(["convert", str(malicious), "--model", "bbcu-l", "-o", str(output)]) == 2

    assert not marker.exists()
    assert not output.exists()
    err = capsys.readouterr().err.strip()
    assert err == (
        f"bbcu convert: error: refusing {malicious}: unpickling it would import io.open, which could "
        "run code; a checkpoint holds only tensors and plain containers"
    )


def official_checkpoint(tmp_path: Path, model: str, scale: int | None = None) -> Path:
    path = tmp_path / f"{model}.pth"
    state = official_network(model, scale, seed=0).state_dict()
    torch.save({"params": state} if scale else state, path)
    return path


@pytest.mark.parametrize(
    ("make_checkpoint", "args", "message"),
    [
        (lambda tmp: official_checkpoint(tmp, "dncnn-bbcu"), ["--model", "no-such-net"], "unknown model"),
        (
            lambda tmp: official_checkpoint(tmp, "dncnn-bbcu"),
            ["--model", "dncnn3-bbcu"],
            "model.0.weight (file 64x3x3x3, model 64x1x3x3)",
        ),
        (
            lambda tmp: official_checkpoint(tmp, "dncnn-bbcu"),
            ["--model", "dncnn3-bbcu"],
            "missing: model.0.bias",
        ),
        (
            lambda tmp: official_checkpoint(tmp, "bbcu-l", 4),
            ["--model", "bbcu-l", "--scale", "2"],
            "unexpected: upconv2.bias, upconv2.weight",
        ),
        (
            lambda tmp: official_checkpoint(tmp, "bbcu-l", 2),
            ["--model", "bbcu-l", "--param-key", "params_ema"],
            "no 'params_ema' entry",
        ),
        (
            lambda tmp: official_checkpoint(tmp, "dncnn-bbcu"),
            ["--model", "dncnn-bbcu", "--scale", "2"],
            "SR models",
        ),
        (lambda tmp: tmp / "absent.pth", ["--model", "bbcu-l"], "not found"),
        (
            lambda tmp: _write(tmp / "noise.pth", bytes(range(256)) * 4),
            ["--model", "bbcu-l"],
            "PyTorch checkpoint",
        ),
    ],
    ids=[
        "unknown-model",
        "shape-mismatch",
        "missing-keys",
        "wrong-scale",
        "no-param-key",
        "scale-for-denoise",
        "missing-file",
        "not-a-checkpoint",
    ],
)
def test_bad_conversions_give_one_line_errors(
    make_checkpoint, args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out.safetensors"
    assert main(["convert", str(make_checkpoint(tmp_path)), *args, "-o", str(output)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert "\n" not in err
    assert not output.exists()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_an_official_checkpoint_with_nan_weights_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nan.pth"
    state = official_network("bbcu-l", 4, seed=0).state_dict()
    next(v for k, v in state.items() if k.endswith("weight"))[0].fill_(float("nan"))
    torch.save({"params": state}, path)
    output = tmp_path / "out.safetensors"
    assert main(["convert", str(path), "--model", "bbcu-l", "-o", str(output)]) == 2
    assert "NaN or infinite values in 1 tensor(s): conv_first.weight" in capsys.readouterr().err
    assert not output.exists()
