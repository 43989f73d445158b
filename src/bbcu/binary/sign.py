"""Activation sign and its training-time gradient estimators (STE, ApproxSign, EDE).

Every estimator shares one forward, :func:`sign`, and differs only in the gradient it pretends ``sign``
has. Each is a ``torch.autograd.Function`` whose backward is one short in-place chain on the saved input:
letting autograd differentiate a surrogate (``detach`` tricks, polynomial masks) builds several
intermediate feature-map tensors per unit and makes a binary-simulated training step markedly slower
than the full-precision step it imitates.

Convention: ``sign(0) = +1`` (``x >= 0`` maps to +1, ``-0.0`` included). A packed engine stores +1 as a
set bit, so ``x >= 0`` is the one test both sides share. The official BBCU code uses ``torch.sign``
(0 -> 0); the two differ only on inputs that are exactly zero.
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import FunctionCtx

EDE_T_MIN = 0.1
EDE_T_MAX = 10.0


def sign(x: torch.Tensor) -> torch.Tensor:
    """+1 where ``x >= 0``, else -1, in ``x``'s dtype (no gradient estimator attached).

    ``torch.sign`` gives -1, 0 or +1; adding 0.5 and taking the sign again sends 0 (and -0.0) to +1.
    Only arithmetic kernels are used: comparisons produce bool tensors, and that route
    (``torch.where(x >= 0, ...)``) is several times slower on CPU.
    """
    return torch.sign(x).add_(0.5).sign_()


def _just_beyond_one(dtype: torch.dtype) -> float:
    """The first value above 1 in ``dtype``, so that a strict test ``|x| < bound`` means ``|x| <= 1``."""
    return 1.0 + torch.finfo(dtype).eps


def clipped_ste_grad(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``grad`` where ``|x| <= 1``, else 0: the derivative of ``clamp(x, -1, 1)`` applied to ``grad``."""
    bound = _just_beyond_one(x.dtype)  # hardtanh_backward passes the gradient on -bound < x < bound
    return torch.ops.aten.hardtanh_backward(grad, x, -bound, bound)


class _SignWithEstimator(torch.autograd.Function):
    """Forward ``sign`` and keep the input; each subclass supplies the gradient it pretends sign has."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return sign(x)


class _SignSTE(_SignWithEstimator):
    @staticmethod
    def backward(ctx: FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return clipped_ste_grad(grad, x)


class _SignApprox(_SignWithEstimator):
    @staticmethod
    def backward(ctx: FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        # 2 + 2x on [-1, 0) and 2 - 2x on [0, 1) are both 2 - 2|x|; it reaches 0 at |x| = 1.
        return torch.rsub(x.abs(), 2, alpha=2).clamp_min_(0).mul_(grad)


class _SignEDE(_SignWithEstimator):
    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor, t: float, k: float) -> torch.Tensor:
        ctx.t, ctx.k = t, k
        return _SignWithEstimator.forward(ctx, x)

    @staticmethod
    def backward(ctx: FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (x,) = ctx.saved_tensors
        slope = torch.tanh(x * ctx.t).square_().neg_().add_(1).mul_(ctx.k * ctx.t)  # k t (1 - tanh^2)
        return slope.mul_(grad), None, None


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    """Sign with the clipped straight-through estimator of BNN (Hubara et al., 2016).

    The gradient passes unchanged where ``|x| <= 1`` and is cancelled elsewhere, which is the
    derivative of ``hardtanh``: saturated inputs stop learning.
    """
    return _SignSTE.apply(x)


def sign_approx(x: torch.Tensor) -> torch.Tensor:
    """Sign with Bi-Real Net's ApproxSign gradient (Liu et al., 2018), used by BBCU.

    The gradient is that of a piecewise quadratic that hugs ``sign`` more tightly than ``hardtanh``:
    ``2 + 2x`` on ``[-1, 0)``, ``2 - 2x`` on ``[0, 1)``, 0 elsewhere.
    """
    return _SignApprox.apply(x)


def sign_ede(x: torch.Tensor, t: float, k: float) -> torch.Tensor:
    """Sign with IR-Net's Error Decay Estimator (Qin et al., 2020): gradient ``k*t*(1 - tanh(t*x)^2)``.

    Early in training (small ``t``) the gradient is wide and flat so every weight keeps updating; late
    (large ``t``) it sharpens towards the true sign. ``t`` and ``k`` come from :func:`ede_schedule`.
    """
    return _SignEDE.apply(x, t, k)


def ede_schedule(progress: float) -> tuple[float, float]:
    """IR-Net's EDE schedule: ``t = T_min * 10**(progress * log10(T_max / T_min))``, ``k = max(1/t, 1)``.

    Args:
        progress: Fraction of training done, clamped to ``[0, 1]``.

    Returns:
        ``(t, k)``: ``(0.1, 10)`` at the start, ``(10, 1)`` at the end.
    """
    progress = min(max(progress, 0.0), 1.0)
    t = EDE_T_MIN * 10 ** (progress * math.log10(EDE_T_MAX / EDE_T_MIN))
    return t, max(1.0 / t, 1.0)
