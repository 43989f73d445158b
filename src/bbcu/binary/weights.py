"""Weight binarizers: how each method turns a real-valued kernel into +-1 (times a scale).

All three keep the real-valued ``weight`` as the trained parameter (the "latent" weight) and
binarize it afresh in every forward pass, so the optimiser can move a weight across zero gradually.
"""

from __future__ import annotations

import torch
from torch.autograd.function import FunctionCtx

from bbcu.binary.sign import EDE_T_MIN, clipped_ste_grad, sign, sign_ede, sign_ste


def channel_mean_abs(w: torch.Tensor) -> torch.Tensor:
    """``mean(|W[o]|)`` over ``Cin*kh*kw`` for every output channel ``o``, shaped ``(Cout, 1, 1, 1)``."""
    return w.abs().mean(dim=(1, 2, 3), keepdim=True)


class _ScaledSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(w)
        return channel_mean_abs(w) * sign(w)

    @staticmethod
    def backward(ctx: FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        (w,) = ctx.saved_tensors
        return clipped_ste_grad(grad, w)


def binarize_weight_sign(w: torch.Tensor) -> torch.Tensor:
    """BNN's weights (Hubara et al., 2016): plain ``sign(W)`` with no scale, clipped-STE gradient."""
    return sign_ste(w)


def binarize_weight_scaled(w: torch.Tensor) -> torch.Tensor:
    """BBCU / Bi-Real / ReActNet weights: ``alpha_o * sign(W)`` with ``alpha_o = mean|W[o]|``.

    ``alpha`` carries each output channel's magnitude, which a bare sign throws away. It is treated as
    a constant (no gradient through it) and the gradient reaching ``W`` is that of ``clamp(W, -1, 1)``:
    1 where ``|W| <= 1``, else 0 - exactly the official ``HardBinaryConv``, which, unlike an
    autograd-derived ``alpha * sign_ste(W)``, does not multiply the gradient by ``alpha``.
    """
    return _ScaledSign.apply(w)


def libra_standardize(w: torch.Tensor) -> torch.Tensor:
    """IR-Net's balance-then-standardise step: per output channel, subtract the mean, divide by the std.

    A zero mean makes the two signs equally frequent (maximal information entropy of the binary
    kernel); the unit std keeps the weights inside the region where the EDE gradient is non-zero.
    The std is the unbiased estimate, as in IR-Net's code.
    """
    flat = w.flatten(1)
    balanced = flat - flat.mean(dim=1, keepdim=True)
    return (balanced / balanced.std(dim=1, keepdim=True)).view_as(w)


def libra_scale(w_std: torch.Tensor) -> torch.Tensor:
    """IR-Net's power-of-two scale ``2**round(log2(mean|W_std[o]|))``, detached, shape ``(Cout,1,1,1)``.

    A power of two makes the rescaling a bit shift in integer hardware.
    """
    return torch.exp2(torch.log2(channel_mean_abs(w_std.detach())).round())


def binarize_weight_libra(w: torch.Tensor, t: float = EDE_T_MIN, k: float = 1 / EDE_T_MIN) -> torch.Tensor:
    """IR-Net's Libra-PB weights (Qin et al., 2020): ``libra_scale * sign(standardised W)``.

    The gradient flows through the standardisation (autograd) and through ``sign`` by the EDE
    estimator with the same ``(t, k)`` as the activations; the power-of-two scale is detached.

    Args:
        w: Latent weight ``(Cout, Cin, kh, kw)``.
        t: EDE sharpness from :func:`bbcu.binary.sign.ede_schedule`.
        k: EDE gain from :func:`bbcu.binary.sign.ede_schedule`.
    """
    w_std = libra_standardize(w)
    return libra_scale(w_std) * sign_ede(w_std, t, k)
