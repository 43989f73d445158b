"""Files bbcu reads and writes: images, weights files, official checkpoints, packed 1-bit models.

Every format has one module that both writes and validates it, and every reader refuses a damaged or
foreign file with ``bbcu.core.errors.InvalidFileError``. ``packed`` (the ``.bbcu`` spec and reader) and
``container`` need only numpy and safetensors, so tools outside PyTorch can read a packed model.
"""
