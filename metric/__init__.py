"""Evaluation metrics, each a small module with its input conventions stated at its top.

* `metric.psnr`: PSNR on 8-bit RGB, float64 (scikit-image's definition, data range 255).
* `metric.ssim`: SSIM of Wang et al. (11x11 Gaussian window, sigma 1.5) on 8-bit RGB, float64.
* `metric.inception`: pytorch-fid's Inception-v3 variant ported to Paddle (the FID feature network).
* `metric.fid`: FID statistics (mu, sigma), their .npz files and the Frechet distance; batched feature
  extraction with the ported network.

Importing this package imports nothing heavy: `psnr` and `ssim` need only numpy/scipy, and only
`metric.inception` / `metric.fid` feature extraction import paddle (call `utils.runtime.prepare_cpu`
first in a script).
"""
