"""How good and how costly a restoration is: ``quality`` (PSNR, SSIM, PSNR-B under the published
protocols) and ``complexity`` (OPs and Params counted the paper's way)."""
