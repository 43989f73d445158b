"""bbcu: binarized image restoration with the Basic Binary Convolution Unit (Xia et al., ICLR 2023)."""

from bbcu.archs import create_model, list_models
from bbcu.restore import restore
from bbcu.weights import load

__version__ = "0.1.0"
__all__ = ["__version__", "create_model", "list_models", "load", "restore"]
