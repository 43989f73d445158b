"""Running restoration models: ``resolve`` (which network runs), ``tiling`` (one image with bounded memory),
``images`` (the ``bbcu.restore`` API on arrays, PIL images and tensors), ``zoo`` (shipped models) and
``evaluate`` (whole test sets scored by their task's protocol)."""
