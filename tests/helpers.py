"""Helpers shared by several test modules (fixtures live in ``conftest.py``)."""

from __future__ import annotations

import pytest
import torch

import bbcu
from bbcu.archs import list_models, model_entry
from bbcu.archs.rrdbnet import RRDB_MODELS
from bbcu.core.constants import TASKS
from bbcu.report.bench import moved_off_init


def randomized(name: str, **kwargs: object) -> torch.nn.Module:
    """The registered model in eval mode with every parameter moved off its init (seeded).

    Shifts, RPReLU parameters and biases start at 0 or 0.25, where a wrong term in an exported or
    packed unit could still give the right output; random offsets make every term count.
    """
    torch.manual_seed(0)
    return moved_off_init(bbcu.create_model(name, **kwargs)).eval()


HEAVY_MODELS = frozenset(RRDB_MODELS)
"""Networks slow to build and run on two cores (RRDBNet's 23 blocks: 16.7 M parameters): registry-wide
tests still cover them, in the slow tier."""


def every_model(names: list[str]) -> list[object]:
    """``names`` as pytest parameters, the heavy networks marked slow."""
    return [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY_MODELS else n for n in names]


def image_models() -> list[str]:
    """Registered networks that map an image to an image: all but the face task's (DFDNet also needs part
    boxes and a component dictionary, and only restores 512x512 faces: tests/test_dfdnet.py covers it)."""
    return [name for name in list_models() if model_entry(name).task in TASKS]
