"""Every registered network builds, runs forward (on one thread and on two) and backward, and learns a
fixed batch; the structures hit the published cost figures.

Costs follow docs/protocols.md: OPs at a 320x180 input = full-precision MACs + binary MACs / 64, Params =
full-precision weights + binary weights / 32. The paper counts conv WEIGHTS only: that reproduces every
published parameter figure exactly (e.g. SRResNet x4 1514.9 K -> "1515"), while counting biases gives
1517.6 K and, for binary DnCNN-3, 23.1 K instead of the published 22 K.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bbcu.archs import create_model, model_entry
from bbcu.archs.dncnn import BinaryDnCNN, DnCNN
from bbcu.archs.registry import without_initialisation
from bbcu.archs.srresnet import BinarySRResNet, MSRResNet
from bbcu.binary import BBCUV4, BBCUUpsample, BinaryConv2d
from bbcu.core.errors import InvalidArgumentError
from helpers import every_model, image_models, randomized

TRAINING_STEPS = 10
LEARNING_RATE = 1e-3


def has_parameters(name: str) -> bool:
    with without_initialisation(shapes_only=True):  # collection stays fast: shapes only
        return any(True for _ in create_model(name).parameters())


ALL_MODELS = image_models()
LEARNED_MODELS = [name for name in ALL_MODELS if has_parameters(name)]


def small_input(model: nn.Module, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(1, model.in_channels, 12, 12, generator=generator)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", every_model(ALL_MODELS))
def test_forward_shape_and_attributes_at_every_scale(name):
    for scale in model_entry(name).scales:
        model = create_model(name, scale=scale)
        assert model.scale == scale and isinstance(model.k, float) and model.in_channels in (1, 3)
        x = small_input(model)
        with torch.no_grad():
            y = model(x)
        assert y.shape == (1, model.in_channels, 12 * scale, 12 * scale)
        assert torch.isfinite(y).all()


@pytest.mark.parametrize(
    ("name", "scale"),
    [
        ("srresnet-lite", 3),
        ("dncnn-bbcu", 1),
        pytest.param("bbcu-m", 4, marks=pytest.mark.slow),
        pytest.param("bbcu-l", 2, marks=pytest.mark.slow),
    ],
)
def test_two_threads_compute_what_one_does(name: str, scale: int) -> None:
    """The intra-op parallel paths (the image is large enough to be split) agree with the serial ones.

    Summation order differs between the two, so the float outputs agree to rounding, not bit for bit.
    """
    model = randomized(name, scale=scale)
    x = torch.rand(1, model.in_channels, 32, 24, generator=torch.Generator().manual_seed(0))
    threads = torch.get_num_threads()
    outputs = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            assert torch.get_num_threads() == count
            with torch.no_grad():
                outputs.append(model(x))
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", LEARNED_MODELS)
def test_backward_reaches_every_parameter_and_training_lowers_the_loss(name: str) -> None:
    """Adam on one fixed batch: every parameter gets a gradient, and the loss ends below where it began.

    For a binary network the surrogate gradient is not the gradient of the true (piecewise-constant in
    the latent weights) loss, so a single step may raise it; a few steps must still fit the batch better.
    """
    torch.manual_seed(0)
    model = create_model(name)
    x = small_input(model)
    target = small_input(model, seed=1)
    target = F.interpolate(target, scale_factor=model.scale) if model.scale > 1 else target
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)

    initial = F.l1_loss(model(x), target)
    initial.backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, param_name
        assert torch.isfinite(param.grad).all(), param_name
        assert param.grad.abs().sum() > 0, param_name
    optimizer.step()
    for _ in range(TRAINING_STEPS - 1):
        optimizer.zero_grad()
        F.l1_loss(model(x), target).backward()
        optimizer.step()
    with torch.no_grad():
        final = F.l1_loss(model(x), target)
    assert final < initial


FULL_PRECISION = {"srresnet", "srresnet-lite", "dncnn", "dncnn-lite", "dncnn3", "dncnn3-lite"}
BASELINES = ("bnn", "bireal", "irnet", "btm", "reactnet")


def test_registry_lists_the_published_zoo_with_tasks():
    expected = {
        "sr": ["srresnet", "srresnet-lite", "bbcu-l", "bbcu-m", "bbcu-v1", "bbcu-v2", "bbcu-v3", "bbcu-v4"],
        "denoise": ["dncnn", "dncnn-lite", "dncnn-bbcu"],
        "jpeg": ["dncnn3", "dncnn3-lite", "dncnn3-bbcu"],
    }
    expected["sr"] += BASELINES
    expected["denoise"] += [f"dncnn-{b}" for b in BASELINES]
    expected["jpeg"] += [f"dncnn3-{b}" for b in BASELINES]
    for task, names in expected.items():
        for name in names:
            entry = model_entry(name)
            assert (entry.task, entry.binary) == (task, name not in FULL_PRECISION), name


def count_cost(model: nn.Module, divisor: int = 10) -> tuple[float, float]:
    """(GOPs at 320x180, K params).

    MACs scale with the pixel count, so counting at (180/d)x(320/d) and multiplying by d^2 is exact.
    """
    macs = {"fp": 0, "binary": 0}

    def hook(conv: nn.Conv2d, _: object, out: torch.Tensor) -> None:
        kind = "binary" if isinstance(conv, BinaryConv2d) else "fp"
        macs[kind] += out[0, 0].numel() * conv.weight.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model.eval()(torch.rand(1, model.in_channels, 180 // divisor, 320 // divisor))
    for handle in handles:
        handle.remove()
    weights = {"fp": 0, "binary": 0}
    for conv in (m for m in model.modules() if isinstance(m, nn.Conv2d)):
        weights["binary" if isinstance(conv, BinaryConv2d) else "fp"] += conv.weight.numel()
    ops = (macs["fp"] + macs["binary"] / 64) * divisor**2 / 1e9
    return ops, (weights["fp"] + weights["binary"] / 32) / 1e3


PUBLISHED_COSTS = [  # (name, scale, GOPs, K params) from docs/published.md
    ("srresnet", 2, 85.43, 1367),
    ("srresnet", 4, 146.14, 1515),
    ("srresnet-lite", 2, 3.08, 49),
    ("srresnet-lite", 4, 5.39, 54),
    ("bbcu-l", 2, 18.55, 225),
    ("bbcu-l", 4, 79.20, 372),
    ("bbcu-m", 2, 1.83, 46),
    ("bbcu-m", 4, 3.95, 51),
    ("bnn", 4, 79.20, 372),
    ("dncnn", 1, 38.42, 667),
    ("dncnn-lite", 1, 1.38, 24),
    ("dncnn-bbcu", 1, 0.80, 24),
    ("dncnn3", 1, 38.29, 665),
    ("dncnn3-lite", 1, 1.36, 24),
    ("dncnn3-bbcu", 1, 0.66, 22),
]


@pytest.mark.parametrize(("name", "scale", "gops", "kparams"), PUBLISHED_COSTS)
def test_structure_reproduces_published_cost(name, scale, gops, kparams):
    ops, params = count_cost(create_model(name, scale=scale))
    assert ops == pytest.approx(gops, rel=0.005, abs=0.005)  # abs: figures printed with 2 decimals
    assert round(params) == kparams


def test_sr_frame_computes_residual_aligned_global_skip():
    model = create_model("bbcu-m", scale=4, channels=8, num_units=2).eval()
    lr = torch.rand(1, 3, 6, 7)
    x = model.k * lr
    f = F.leaky_relu(model.conv_first(x), 0.1)
    f = model.upsampler(model.body(f))
    f = F.leaky_relu(model.conv_hr(f), 0.1)
    expected = (model.conv_last(f) + F.interpolate(x, scale_factor=4, mode="bilinear")) / model.k
    torch.testing.assert_close(model(lr), expected)


def test_bbcu_l_and_m_layouts():
    bbcu_l = create_model("bbcu-l", scale=4)
    assert bbcu_l.k == 130.0 and len(bbcu_l.body) == 32
    assert all(isinstance(u, BBCUV4) for u in bbcu_l.body)
    assert sum(isinstance(m, BinaryConv2d) for m in bbcu_l.modules()) == 32
    bbcu_m = create_model("bbcu-m", scale=4)
    assert all(isinstance(u, BBCUUpsample) and u.scale == 2 for u in bbcu_m.upsampler)
    assert isinstance(bbcu_m.conv_hr, BBCUV4)
    assert sum(isinstance(m, BinaryConv2d) for m in bbcu_m.modules()) == 35
    assert len(create_model("bbcu-m", scale=3).upsampler) == 1
    assert create_model("bbcu-v1").k == create_model("bireal").k == 1.0
    assert create_model("bbcu-v3").k == 130.0


def test_sr_initialisation_follows_basicsr_and_the_official_body():
    torch.manual_seed(0)
    model = create_model("bbcu-m", scale=2)
    fan_in = 64 * 9
    kaiming_x01 = 0.1 * (2 / fan_in) ** 0.5
    assert model.conv_hr.conv.weight.std().item() == pytest.approx(kaiming_x01, rel=0.1)
    assert model.upsampler[0].conv.weight.std().item() == pytest.approx(kaiming_x01, rel=0.1)
    assert not model.conv_first.bias.any() and not model.conv_last.bias.any()
    body_conv = model.body[0].conv.weight  # PyTorch default: uniform in +-1/sqrt(fan_in)
    assert body_conv.abs().max() <= fan_in**-0.5 and body_conv.abs().max() > 0.9 * fan_in**-0.5


def test_dncnn_layouts_follow_kair_indices():
    fp = create_model("dncnn")
    assert len(fp.model) == 39 and isinstance(fp.model[38], nn.Conv2d) and fp.model[0].bias is None
    binary = create_model("dncnn3-bbcu")
    assert isinstance(binary, BinaryDnCNN) and binary.in_channels == 1 and binary.k == 130.0
    assert isinstance(binary.model[1], nn.ReLU) and isinstance(binary.model[20], nn.Conv2d)
    assert all(isinstance(binary.model[i], BBCUV4) for i in range(2, 20))
    assert all(binary.model[i].conv.bias is not None for i in range(2, 20))
    assert create_model("dncnn-bbcu").model[5].conv.bias is None
    assert isinstance(create_model("dncnn3-lite"), DnCNN)


def test_denoiser_subtracts_the_predicted_noise_with_residual_alignment():
    model = create_model("dncnn-bbcu", channels=8, depth=4).eval()
    noisy = torch.rand(1, 3, 6, 6)
    torch.testing.assert_close(model(noisy), (model.k * noisy - model.model(model.k * noisy)) / model.k)


def test_invalid_options_raise_invalid_argument_errors():
    with pytest.raises(InvalidArgumentError, match="scale"):
        create_model("bbcu-l", scale=5)
    with pytest.raises(InvalidArgumentError, match="unit"):
        BinarySRResNet(2, unit="v9")
    with pytest.raises(InvalidArgumentError, match="upsampler"):
        BinarySRResNet(2, upsampler="bicubic")
    with pytest.raises(InvalidArgumentError, match="scale"):
        create_model("dncnn", scale=2)
    with pytest.raises(InvalidArgumentError, match="unit"):
        BinaryDnCNN(unit="xnor")
    assert isinstance(MSRResNet(3, channels=4, blocks=1), nn.Module)
