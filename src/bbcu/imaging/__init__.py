"""Pixel arithmetic below the networks: ``pixels`` (uint8/float and tensor conventions) and ``imresize``
(MATLAB-exact bicubic), shared by the bicubic baseline, the degradations, the metrics and inference."""
