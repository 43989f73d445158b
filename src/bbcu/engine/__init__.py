"""The packed 1-bit engine: export a BBCU network to sign bits and run it on XNOR-popcount kernels.

``bbcu.engine.format`` writes and validates ``.bbcu`` files, ``bbcu.engine.kernels`` holds the compiled
binary convolutions, and ``bbcu.engine.runtime`` chains them into whole networks::

    model = bbcu.engine.load("bbcu-m-x4.bbcu")   # a PackedModel, used like the PyTorch model
    sr = model(lr)                               # (N, 3, H, W) in [0, 1] -> (N, 3, 4H, 4W)
"""

from bbcu.engine.runtime import PackedModel, load

__all__ = ["PackedModel", "load"]
