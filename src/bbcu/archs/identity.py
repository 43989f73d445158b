"""The "no restoration" baseline: returns its input, so the unrestored input is scored on the same path.

``bbcu eval --task jpeg --model identity`` gives the JPEG-decoded image's PSNR / PSNR-B (the floor a
deblocking network must beat), ``--task denoise`` the noisy input's. The registry wants one task per
model, so it is registered under ``jpeg``, where the unrestored score is a standard table row; having
no parameters, it is accepted by every task (see ``bbcu.evaluate.check_model_task``).
"""

from __future__ import annotations

import torch
from torch import nn

from bbcu.archs.registry import register_model
from bbcu.core.errors import InvalidArgumentError


class Identity(nn.Module):
    """Output = input; ``in_channels = 1`` so colour images pass channel by channel, unchanged.

    ``k`` (the residual-alignment factor every network here carries) is 1: there is nothing to align.
    """

    scale = 1
    in_channels = 1
    k = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x`` itself (the evaluation rounds and scores it like any output)."""
        return x


@register_model("identity", task="jpeg", binary=False)
def identity(scale: int = 1) -> Identity:
    """No restoration (the degraded input scored as it is)."""
    if scale != 1:
        raise InvalidArgumentError(f"the identity model keeps the image size (scale 1), got scale {scale}")
    return Identity()
