"""Evaluation metrics, each a small module with its input conventions stated at its top.

* `metric.psnr`: PSNR on 8-bit RGB, float64 (scikit-image's definition, data range 255).
* `metric.ssim`: SSIM of Wang et al. (11x11 Gaussian window, sigma 1.5) on 8-bit RGB, float64.
* `metric.inception`: pytorch-fid's Inception-v3 variant ported to Paddle (the FID feature network).
* `metric.fid`: FID statistics (mu, sigma) and their files (pytorch-fid's .npz, BasicSR's .pth), the
  Frechet distance, and batched extraction through a feature function the caller supplies.
* `metric.niqe`: NIQE as BasicSR 1.4.2's `calculate_niqe` (numpy/scipy, BGR input, no reference image).
* `metric.lpips`: LPIPS (lpips 0.1.4's AlexNet v0.1) ported to Paddle.

Importing this package imports nothing heavy: `psnr` and `ssim` need only numpy/scipy, and only
`metric.inception` / `metric.fid` feature extraction import paddle (call `utils.runtime.prepare_cpu`
first in a script).
"""
