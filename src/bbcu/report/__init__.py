"""What people look at: ``pictures`` (comparison grids, PSNR-versus-cost charts) and ``bench`` (packed engine
against PyTorch, measured)."""
