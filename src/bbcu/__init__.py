"""bbcu: binarized image restoration with the Basic Binary Convolution Unit (Xia et al., ICLR 2023)."""

from bbcu.archs import create_model, list_models
from bbcu.formats.weights import load
from bbcu.run.images import restore

__version__ = "0.1.0"
__all__ = ["__version__", "create_model", "list_models", "load", "restore"]
