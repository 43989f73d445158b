"""Names and numbers the whole package agrees on; each has its one home here."""

from typing import Literal

Task = Literal["sr", "denoise", "jpeg"]
TASKS: tuple[Task, ...] = ("sr", "denoise", "jpeg")
"""Super-resolution, colour (or grey) denoising, and JPEG artifact reduction: they decide data and metrics."""

SETTING_NAMES: dict[Task, str] = {"sr": "scale", "denoise": "sigma", "jpeg": "quality"}
"""What each task's one evaluation setting is called (SR scale, noise sigma, JPEG quality)."""

SR_SCALES: tuple[int, ...] = (2, 3, 4)
"""Super-resolution factors the networks are built for (the paper publishes x2 and x4; x3 is ours)."""

LEAKY_RELU_SLOPE = 0.1
"""Negative slope of the LeakyReLU after the SR networks' full-precision convs (MSRResNet's value)."""
