"""bbcu: binarized image restoration with the Basic Binary Convolution Unit (Xia et al., ICLR 2023).

The public API, resolved lazily so that ``import bbcu.formats.packed`` (and the other numpy-only
modules) never pays for PyTorch::

    bbcu.create_model(name, **kwargs)   # a registered network       (bbcu.archs)
    bbcu.list_models(task=None)         # registered names
    bbcu.load(path)                     # weights file -> model        (bbcu.formats.weights)
    bbcu.restore(image, ...)            # one image, any model         (bbcu.run.images)
    bbcu.BbcuError                      # base of every error a user can cause (bbcu.core.errors)

``docs/architecture.md`` maps the package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from bbcu.core.errors import BbcuError

__version__ = "0.1.0"
__all__ = ["BbcuError", "__version__", "create_model", "list_models", "load", "restore"]

_LAZY = {
    "create_model": "bbcu.archs",
    "list_models": "bbcu.archs",
    "load": "bbcu.formats.weights",
    "restore": "bbcu.run.images",
}

if TYPE_CHECKING:
    from bbcu.archs import create_model, list_models
    from bbcu.formats.weights import load
    from bbcu.run.images import restore


def __getattr__(name: str) -> object:
    """Import the module behind a public name on first use (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module 'bbcu' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
