"""The packed 1-bit engine: export a BBCU network to sign bits and run it on XNOR-popcount kernels.

``bbcu.engine.export`` turns a PyTorch network into a ``.bbcu`` file (the format itself, readable
without PyTorch, is ``bbcu.formats.packed``), ``bbcu.engine.kernels`` holds the compiled binary
convolutions, and ``bbcu.engine.runtime`` chains them into whole networks::

    bbcu.engine.export_model(model, "bbcu-m-x4.bbcu")
    model = bbcu.engine.load("bbcu-m-x4.bbcu")   # a PackedModel, used like the PyTorch model
    sr = model(lr)                               # (N, 3, H, W) in [0, 1] -> (N, 3, 4H, 4W)
"""

from bbcu.engine.export import export_model
from bbcu.engine.runtime import PackedModel, load

__all__ = ["PackedModel", "export_model", "load"]
