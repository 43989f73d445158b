"""Each binary unit's forward pass against the formula of its docstring, written out independently.

References binarize with ``torch.sign`` on inputs that have no exact zeros, build the effective weights
by hand and pad explicitly, so they share no code path with the units beyond ``F.conv2d`` itself.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bbcu.binary import (
    BBCUV1,
    BBCUV2,
    BBCUV3,
    BBCUV4,
    UNITS,
    BBCUHead,
    BBCUTail,
    BBCUUpsample,
    BiRealUnit,
    BNNUnit,
    BTMUnit,
    IRNetUnit,
    ReActNetUnit,
)
from bbcu.binary.units import repeat_channels

C = 4


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def randomize(module: nn.Module) -> nn.Module:
    """Give every parameter and BN statistic a random value so no term of a formula hides at its init."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if not name.endswith("conv.weight"):
                p.copy_(torch.randn_like(p) * 0.3 + (0.5 if name.endswith("beta") else 0.0))
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features))
                m.running_var.copy_(torch.rand(m.num_features) + 0.5)
    return module.eval()


def bsign(x: torch.Tensor) -> torch.Tensor:
    assert (x != 0).all()
    return torch.sign(x)


def conv_same(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return F.conv2d(F.pad(x, (1, 1, 1, 1)), w, bias)


def scaled(w: torch.Tensor) -> torch.Tensor:
    return w.abs().mean(dim=(1, 2, 3), keepdim=True) * torch.sign(w)


def rprelu(x: torch.Tensor, act: nn.Module) -> torch.Tensor:
    u = x + act.gamma
    return torch.where(u > 0, u, act.beta.view(1, -1, 1, 1) * u) + act.zeta


def batchnorm_eval(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    view = (1, -1, 1, 1)
    normed = (x - bn.running_mean.view(view)) / torch.sqrt(bn.running_var.view(view) + bn.eps)
    return normed * bn.weight.view(view) + bn.bias.view(view)


def shifted_scaled_branch(unit: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """binconv(sign(x + shift)) with alpha * sign(W) weights."""
    return conv_same(bsign(x + unit.shift.bias), scaled(unit.conv.weight), unit.conv.bias)


def x_input(channels: int = C, size: tuple[int, int] = (5, 6)) -> torch.Tensor:
    return torch.randn(2, channels, *size) * 2


@pytest.mark.parametrize("bias", [False, True])
def test_v1_and_reactnet(bias):
    for cls in (BBCUV1, ReActNetUnit):
        unit = randomize(cls(C, bias=bias))
        x = x_input()
        expected = rprelu(batchnorm_eval(shifted_scaled_branch(unit, x), unit.bn) + x, unit.act)
        torch.testing.assert_close(unit(x), expected)


@pytest.mark.parametrize("cls", [BBCUV2, BBCUV3])
def test_v2_v3_no_batchnorm_activation_after_residual(cls):
    unit = randomize(cls(C, bias=True))
    x = x_input()
    torch.testing.assert_close(unit(x), rprelu(shifted_scaled_branch(unit, x) + x, unit.act))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in unit.modules())


def test_v4_activation_inside_branch_keeps_negative_residual():
    unit = randomize(BBCUV4(C))
    x = x_input()
    torch.testing.assert_close(unit(x), x + rprelu(shifted_scaled_branch(unit, x), unit.act))
    assert [n for n, _ in unit.named_children()] == ["shift", "conv", "act"]


def test_bnn_unscaled_sign_weights_batchnorm_no_shortcut():
    unit = randomize(BNNUnit(C))
    x = x_input()
    expected = batchnorm_eval(conv_same(bsign(x), torch.sign(unit.conv.weight), None), unit.bn)
    torch.testing.assert_close(unit(x), expected)


def test_bireal_per_conv_shortcut():
    unit = randomize(BiRealUnit(C))
    x = x_input()
    expected = batchnorm_eval(conv_same(bsign(x), scaled(unit.conv.weight), None), unit.bn) + x
    torch.testing.assert_close(unit(x), expected)


def test_irnet_libra_weights():
    unit = randomize(IRNetUnit(C))
    x = x_input()
    w = unit.conv.weight
    centred = w - w.mean(dim=(1, 2, 3), keepdim=True)
    w_std = centred / centred.std(dim=(1, 2, 3), keepdim=True)
    w_bin = 2.0 ** torch.round(torch.log2(w_std.abs().mean(dim=(1, 2, 3), keepdim=True))) * torch.sign(w_std)
    expected = batchnorm_eval(conv_same(bsign(x), w_bin, None), unit.bn) + x
    torch.testing.assert_close(unit(x), expected)


def test_btm_normalised_input_prelu_no_batchnorm():
    unit = randomize(BTMUnit(C))
    x = x_input() + 3.0  # an offset that the normalisation must remove before the sign
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = ((x - mean) ** 2).mean(dim=(2, 3), keepdim=True).sqrt()
    branch = conv_same(bsign((x - mean) / (std + 1e-5)), scaled(unit.conv.weight), None)
    prelu = torch.where(branch > 0, branch, unit.act.weight.view(1, -1, 1, 1) * branch)
    torch.testing.assert_close(unit(x), x + prelu)


def test_btm_xavier_initialisation_bound():
    w = BTMUnit(64).conv.weight
    bound = (6 / (64 * 9 + 64 * 9)) ** 0.5  # xavier_uniform: sqrt(6 / (fan_in + fan_out))
    assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound


@pytest.mark.parametrize("scale", [2, 3])
def test_upsample_unit_pixel_shuffle_plus_nearest_skip(scale):
    unit = randomize(BBCUUpsample(C, scale))
    x = x_input()
    branch = rprelu(shifted_scaled_branch(unit, x), unit.act)
    # PixelShuffle: out[c, s*i + a, s*j + b] = branch[c*s*s + a*s + b, i, j].
    # Nearest: out[c, s*i + a, s*j + b] = x[c, i, j].
    n, _, h, w = x.shape
    shuffled = (
        branch.view(n, C, scale, scale, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, C, h * scale, w * scale)
    )
    nearest = x.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    torch.testing.assert_close(unit(x), shuffled + nearest)


def test_head_unit_repeats_input_channels_as_skip():
    unit = randomize(BBCUHead(3, 8))
    x = x_input(3)
    skip = torch.cat([x[:, [0, 0, 1, 1, 2, 2]], x[:, [0, 1]]], dim=1)  # 8 = 2*3 + 2
    torch.testing.assert_close(unit(x), rprelu(shifted_scaled_branch(unit, x), unit.act) + skip)


def test_head_skip_for_rgb_to_64_channels_is_the_official_one():
    # Official: repeat_interleave(x, 64 // 3 = 21) then the first input channel once more.
    x = torch.arange(3.0).view(1, 3, 1, 1)
    assert repeat_channels(x, 64).flatten().tolist() == [0.0] * 21 + [1.0] * 21 + [2.0] * 21 + [0.0]


@pytest.mark.parametrize("scale", [1, 2])
def test_tail_unit_bilinear_image_skip(scale):
    unit = randomize(BBCUTail(C, 3, scale))
    image = torch.rand(2, 3, 4, 5)
    features = x_input(C, (4 * scale, 5 * scale))
    skip = (
        image
        if scale == 1
        else F.interpolate(image, scale_factor=scale, mode="bilinear", align_corners=False)
    )
    torch.testing.assert_close(
        unit(features, image), rprelu(shifted_scaled_branch(unit, features), unit.act) + skip
    )


def test_units_table_names_every_unit_and_keeps_shapes():
    assert set(UNITS) == {"v1", "v2", "v3", "v4", "bnn", "bireal", "irnet", "btm", "reactnet"}
    x = x_input(6)
    for name, cls in UNITS.items():
        assert cls(6)(x).shape == x.shape, name
        assert cls.__doc__, name
