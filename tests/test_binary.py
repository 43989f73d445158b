"""The 1-bit primitives against closed forms and independently written references (numpy, autograd)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bbcu.binary import (
    BBCUV4,
    BinaryConv2d,
    IRNetUnit,
    LearnableBias,
    RPReLU,
    binarize_weight_libra,
    binarize_weight_scaled,
    binarize_weight_sign,
    ede_schedule,
    set_training_progress,
    sign,
    sign_approx,
    sign_ede,
    sign_ste,
)

POINTS = [-1.5, -1.0, -0.75, -0.25, 0.0, 0.25, 0.75, 1.0, 1.5]


def input_grad(estimator, x: torch.Tensor) -> torch.Tensor:
    """d sum(estimator(x)) / dx, i.e. the estimator's pointwise surrogate derivative."""
    x = x.clone().requires_grad_(True)
    estimator(x).sum().backward()
    return x.grad


def test_sign_maps_zero_and_negative_zero_to_plus_one_and_keeps_dtype():
    x = torch.tensor([-2.0, -1e-30, -0.0, 0.0, 1e-30, 3.0], dtype=torch.float64)
    out = sign(x)
    assert out.dtype == torch.float64
    assert out.tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("estimator", [sign_ste, sign_approx, lambda x: sign_ede(x, 2.0, 3.0)])
def test_every_estimator_forwards_the_same_sign(estimator):
    x = torch.tensor(POINTS)
    assert torch.equal(estimator(x), sign(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clipped_ste_gradient_is_the_hardtanh_mask_with_closed_ends(dtype):
    expected = [1.0 if abs(p) <= 1 else 0.0 for p in POINTS]
    assert input_grad(sign_ste, torch.tensor(POINTS, dtype=dtype)).tolist() == expected
    just_outside = 1 + torch.finfo(dtype).eps
    assert input_grad(sign_ste, torch.tensor([-just_outside, just_outside], dtype=dtype)).tolist() == [0, 0]


def test_approx_sign_gradient_at_chosen_points():
    # 2 + 2x on [-1, 0), 2 - 2x on [0, 1), 0 elsewhere.
    expected = [0.0, 0.0, 0.5, 1.5, 2.0, 1.5, 0.5, 0.0, 0.0]
    assert input_grad(sign_approx, torch.tensor(POINTS)).tolist() == pytest.approx(expected)


def test_approx_sign_gradient_matches_autograd_of_the_bireal_polynomial():
    x = torch.linspace(-2, 2, 401, dtype=torch.float64)
    y = x.clone().requires_grad_(True)
    poly = torch.where(
        y < -1, -1.0, torch.where(y < 0, y * y + 2 * y, torch.where(y < 1, 2 * y - y * y, 1.0))
    )
    poly.sum().backward()
    torch.testing.assert_close(input_grad(sign_approx, x), y.grad)


@pytest.mark.parametrize(("t", "k"), [(0.1, 10.0), (1.0, 1.0), (10.0, 1.0)])
def test_ede_gradient_is_derivative_of_k_tanh_tx(t, k):
    x = torch.linspace(-3, 3, 61, dtype=torch.float64)
    y = x.clone().requires_grad_(True)
    (k * torch.tanh(t * y)).sum().backward()
    torch.testing.assert_close(input_grad(lambda v: sign_ede(v, t, k), x), y.grad)
    expected_at_zero = k * t  # k t (1 - tanh(0)^2)
    assert input_grad(lambda v: sign_ede(v, t, k), torch.zeros(1)).item() == pytest.approx(expected_at_zero)


def test_ede_schedule_endpoints_middle_and_clamping():
    assert ede_schedule(0.0) == pytest.approx((0.1, 10.0))
    assert ede_schedule(1.0) == pytest.approx((10.0, 1.0))
    assert ede_schedule(0.5) == pytest.approx((1.0, 1.0))  # 0.1 * 10**(0.5 * 2)
    t, k = ede_schedule(0.25)
    assert t == pytest.approx(10**-0.5) and k == pytest.approx(10**0.5)
    assert ede_schedule(-1.0) == ede_schedule(0.0) and ede_schedule(2.0) == ede_schedule(1.0)


def latent_weight(seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(4, 3, 3, 3, generator=generator, dtype=torch.float64) * 0.8


def test_sign_weights_have_no_scale_and_clipped_gradient():
    w = latent_weight()
    assert torch.equal(binarize_weight_sign(w), sign(w))
    torch.testing.assert_close(input_grad(binarize_weight_sign, w), (w.abs() <= 1).double())


def test_scaled_weights_use_per_output_channel_mean_abs():
    w = latent_weight()
    w_np = w.numpy()
    alpha = np.array([np.abs(w_np[o]).sum() / w_np[o].size for o in range(w_np.shape[0])])
    expected = alpha[:, None, None, None] * np.where(w_np >= 0, 1.0, -1.0)
    np.testing.assert_allclose(binarize_weight_scaled(w).numpy(), expected, rtol=1e-12)


def test_scaled_weights_gradient_is_clamp_straight_through_without_alpha():
    w = latent_weight(1)
    assert (w.abs() > 1).any()  # some weights outside the clamp window
    upstream = torch.randn_like(w)
    w_leaf = w.clone().requires_grad_(True)
    (binarize_weight_scaled(w_leaf) * upstream).sum().backward()
    # d/dW of the official "alpha*sign(W) (detached) - clamp(W).detach() + clamp(W)": no alpha factor
    # and no term through alpha.
    torch.testing.assert_close(w_leaf.grad, upstream * (w.abs() <= 1))


def test_libra_weights_are_balanced_standardised_power_of_two_scaled():
    w = latent_weight(2) + 0.3  # a non-zero mean that Libra-PB must remove
    w_np = w.numpy().reshape(4, -1)
    w_std = (w_np - w_np.mean(1, keepdims=True)) / w_np.std(1, ddof=1, keepdims=True)
    np.testing.assert_allclose(w_std.mean(1), 0.0, atol=1e-12)
    scale = 2.0 ** np.round(np.log2(np.abs(w_std).mean(1)))
    assert np.all(np.log2(scale) == np.round(np.log2(scale)))
    expected = scale[:, None] * np.where(w_std >= 0, 1.0, -1.0)
    np.testing.assert_allclose(binarize_weight_libra(w).numpy().reshape(4, -1), expected, rtol=1e-12)


def test_libra_gradient_is_ede_through_the_standardisation():
    t, k = ede_schedule(0.3)
    w = latent_weight(3)
    upstream = torch.randn_like(w)
    w_leaf = w.clone().requires_grad_(True)
    (binarize_weight_libra(w_leaf, t, k) * upstream).sum().backward()
    # Reference: the smooth surrogate k*tanh(t*w_std) times the detached scale, differentiated by autograd.
    w_ref = w.clone().requires_grad_(True)
    centred = w_ref - w_ref.mean(dim=(1, 2, 3), keepdim=True)
    w_std = centred / centred.std(dim=(1, 2, 3), keepdim=True)
    scale = torch.exp2(torch.round(torch.log2(w_std.abs().mean(dim=(1, 2, 3), keepdim=True)))).detach()
    (scale * k * torch.tanh(t * w_std) * upstream).sum().backward()
    torch.testing.assert_close(w_leaf.grad, w_ref.grad)


def test_learnable_bias_starts_at_zero_and_adds_per_channel():
    layer = LearnableBias(3)
    assert layer.bias.shape == (1, 3, 1, 1) and not layer.bias.any()
    with torch.no_grad():
        layer.bias.copy_(torch.tensor([1.0, -2.0, 0.5]).view(1, 3, 1, 1))
    x = torch.zeros(2, 3, 2, 2)
    assert layer(x)[1, :, 1, 0].tolist() == [1.0, -2.0, 0.5]


def test_rprelu_initial_values_and_formula():
    layer = RPReLU(3)
    assert layer.gamma.shape == layer.zeta.shape == (1, 3, 1, 1) and layer.beta.shape == (3,)
    assert not layer.gamma.any() and not layer.zeta.any() and torch.all(layer.beta == 0.25)
    gamma, beta, zeta = np.array([0.1, -0.2, 0.3]), np.array([0.25, 0.5, -0.1]), np.array([1.0, 0.0, -1.0])
    with torch.no_grad():
        layer.gamma.copy_(torch.tensor(gamma).view(1, 3, 1, 1))
        layer.beta.copy_(torch.tensor(beta))
        layer.zeta.copy_(torch.tensor(zeta).view(1, 3, 1, 1))
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 4)).astype(np.float32)
    u = x + gamma[None, :, None, None]
    expected = np.where(u > 0, u, beta[None, :, None, None] * u) + zeta[None, :, None, None]
    np.testing.assert_allclose(layer(torch.from_numpy(x)).detach().numpy(), expected, rtol=1e-5, atol=1e-6)


def direct_conv_zero_padded(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """A 3x3 'same' convolution written as explicit loops over valid taps only (independent of torch)."""
    n, _, h, wd = x.shape
    out = np.zeros((n, w.shape[0], h, wd))
    for i in range(h):
        for j in range(wd):
            for di in range(3):
                for dj in range(3):
                    ii, jj = i + di - 1, j + dj - 1
                    if 0 <= ii < h and 0 <= jj < wd:
                        out[:, :, i, j] += np.einsum("nc,oc->no", x[:, :, ii, jj], w[:, :, di, dj])
    return out


def test_binary_conv_equals_conv_of_pm1_input_and_alpha_sign_weights():
    torch.manual_seed(0)
    conv = BinaryConv2d(3, 2, 3, bias=False).double()
    x = sign(torch.randn(2, 3, 5, 6, dtype=torch.float64))
    w = conv.weight.detach().numpy()
    alpha = np.abs(w).reshape(2, -1).mean(1)[:, None, None, None]
    expected = direct_conv_zero_padded(x.numpy(), alpha * np.where(w >= 0, 1.0, -1.0))
    np.testing.assert_allclose(conv(x).detach().numpy(), expected, rtol=1e-10, atol=1e-12)


def test_binary_conv_padded_taps_contribute_zero():
    conv = BinaryConv2d(4, 1, 3, bias=False)
    with torch.no_grad():
        conv.weight.fill_(0.5)  # alpha = 0.5, sign = +1
    out = conv(torch.ones(1, 4, 4, 5))[0, 0]
    valid_taps = torch.tensor([[4, 6, 6, 6, 4], [6, 9, 9, 9, 6], [6, 9, 9, 9, 6], [4, 6, 6, 6, 4]])
    torch.testing.assert_close(out, 0.5 * 4 * valid_taps.float())


def test_binary_conv_bias_and_binarizer_choice():
    conv = BinaryConv2d(2, 3, 3, bias=True, weight_binarizer="sign")
    x = sign(torch.randn(1, 2, 4, 4))
    expected = F.conv2d(x, sign(conv.weight), conv.bias, padding=1)
    torch.testing.assert_close(conv(x), expected)
    with pytest.raises(ValueError, match="weight_binarizer"):
        BinaryConv2d(2, 3, 3, weight_binarizer="xnor")


def test_binary_conv_keeps_conv2d_parameter_names_and_default_init():
    torch.manual_seed(7)
    binary = BinaryConv2d(5, 6, 3, bias=True)
    torch.manual_seed(7)
    plain = nn.Conv2d(5, 6, 3, padding=1, bias=True)
    assert [n for n, _ in binary.named_parameters()] == ["weight", "bias"]
    torch.testing.assert_close(binary.weight, plain.weight)
    torch.testing.assert_close(binary.bias, plain.bias)
    assert isinstance(binary, nn.Conv2d)


def test_set_training_progress_moves_every_ede_estimator():
    model = nn.Sequential(IRNetUnit(4), BBCUV4(4))
    set_training_progress(model, 1.0)
    irnet = model[0]
    assert (irnet.ede_t, irnet.ede_k) == pytest.approx((10.0, 1.0))
    assert (irnet.conv.ede_t, irnet.conv.ede_k) == pytest.approx((10.0, 1.0))
    set_training_progress(model, 0.5)
    assert irnet.ede_t == pytest.approx(1.0) and irnet.conv.ede_t == pytest.approx(1.0)
