"""Validation during training: the very scoring of ``bbcu eval`` (``bbcu.evaluate.evaluate_set``), so a
PSNR in the training log is the number ``bbcu eval`` would print for the same weights."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from bbcu.run.evaluate import evaluate_set
from bbcu.train.schema import TrainConfig


def validation_setting(config: TrainConfig) -> int:
    """The protocol setting of the task: SR scale, noise sigma or JPEG quality."""
    return {"sr": config.model.scale, "denoise": config.val.sigma, "jpeg": config.val.quality}[config.task]


def validate(
    model: nn.Module, config: TrainConfig, data_root: Path, device: torch.device
) -> dict[str, dict[str, float]]:
    """Mean scores per validation set, e.g. ``{"Set5": {"psnr": 30.1, "ssim": 0.86}}``.

    ``model`` is changed in place by inference (eval mode, channels_last, moved to ``device``): pass a
    copy. Validating on the training device keeps a GPU run from waiting on the CPU.
    """
    setting = validation_setting(config)
    return {
        name: evaluate_set(
            model, config.task, name, setting, root=data_root, tile=config.val.tile, device=device
        ).mean()
        for name in config.val.sets
    }
