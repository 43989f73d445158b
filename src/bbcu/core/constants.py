"""Names and numbers the whole package agrees on; each has its one home here."""

from typing import Literal

Task = Literal["sr", "denoise", "jpeg"]
TASKS: tuple[Task, ...] = ("sr", "denoise", "jpeg")
"""Super-resolution, colour (or grey) denoising, and JPEG artifact reduction: they decide data and metrics."""

RestoreTask = Literal["sr", "denoise", "jpeg", "face"]
RESTORE_TASKS: tuple[RestoreTask, ...] = (*TASKS, "face")
"""What ``bbcu restore`` can do: the scored tasks, and face restoration (DFDNet on an aligned face with its
landmarks), which has no evaluation protocol, so ``bbcu eval`` and ``bbcu train`` keep to ``TASKS``."""

SETTING_NAMES: dict[Task, str] = {"sr": "scale", "denoise": "sigma", "jpeg": "quality"}
"""What each task's one evaluation setting is called (SR scale, noise sigma, JPEG quality)."""

SR_SCALES: tuple[int, ...] = (2, 3, 4)
"""Super-resolution factors the networks are built for (the paper publishes x2 and x4; x3 is ours)."""

LEAKY_RELU_SLOPE = 0.1
"""Negative slope of the LeakyReLU after the SR networks' full-precision convs (MSRResNet's value)."""
