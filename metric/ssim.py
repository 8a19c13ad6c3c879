"""Structural similarity (Wang et al. 2004) on 8-bit RGB images.

Conventions:
* inputs are uint8 arrays of the same shape, HWC RGB (or HW grayscale); data range 255, so
  C1 = (0.01 * 255)^2 and C2 = (0.03 * 255)^2;
* local statistics are weighted by a Gaussian of sigma 1.5 truncated at 3.5 sigma (an 11x11 window),
  applied separably with scipy.ndimage and mirror ('reflect', edge sample repeated) borders; variances
  and covariance are population ones (no n/(n-1) factor), all in float64;
* the SSIM map is averaged after dropping a 5-pixel border (where the window leaves the image), per
  channel, and the channel means are averaged.
This is exactly `skimage.metrics.structural_similarity(a, b, channel_axis=-1, gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=255)`, computed here without scikit-image.
"""
import numpy as np
from scipy import ndimage

from metric.psnr import DATA_RANGE, _check_pair

SIGMA = 1.5
TRUNCATE = 3.5
K1, K2 = 0.01, 0.03
# The window radius scipy uses for this sigma and truncation: int(3.5 * 1.5 + 0.5) = 5 -> 11x11.
RADIUS = int(TRUNCATE * SIGMA + 0.5)


def _ssim_map(img1, img2, spatial_axes):
    """SSIM map (float64) of two same-shape arrays, filtering only along `spatial_axes`."""
    x = img1.astype(np.float64)
    y = img2.astype(np.float64)
    # sigma 0 on an axis leaves it unfiltered, so channels (and the batch axis) stay separate.
    sigma = [SIGMA if axis in spatial_axes else 0.0 for axis in range(x.ndim)]

    def blur(a):
        return ndimage.gaussian_filter(a, sigma, mode="reflect", truncate=TRUNCATE)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x * mu_x
    var_y = blur(y * y) - mu_y * mu_y
    cov_xy = blur(x * y) - mu_x * mu_y
    c1 = (K1 * DATA_RANGE) ** 2
    c2 = (K2 * DATA_RANGE) ** 2
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)
    denominator = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return numerator / denominator


def _check_size(shape, spatial_axes):
    if min(shape[a] for a in spatial_axes) < 2 * RADIUS + 1:
        raise ValueError(f"SSIM needs images of at least {2 * RADIUS + 1}x{2 * RADIUS + 1} pixels, got {shape}")


def ssim(img1, img2):
    """SSIM of two uint8 images (HWC RGB or HW gray) of the same shape, as a float."""
    img1, img2 = _check_pair(img1, img2)
    if img1.ndim not in (2, 3):
        raise ValueError(f"expected an HWC or HW image, got shape {img1.shape}")
    _check_size(img1.shape, (0, 1))
    s = _ssim_map(img1, img2, spatial_axes=(0, 1))
    r = RADIUS
    cropped = s[r:-r, r:-r]
    if cropped.ndim == 2:
        return float(cropped.mean(dtype=np.float64))
    return float(np.mean([cropped[..., c].mean(dtype=np.float64) for c in range(cropped.shape[-1])]))


def ssim_batch(images1, images2):
    """Per-image SSIM of two uint8 batches (N, H, W, C) -> float64 array (N,)."""
    images1, images2 = _check_pair(images1, images2)
    if images1.ndim != 4:
        raise ValueError(f"expected a batch (N, H, W, C), got shape {images1.shape}")
    _check_size(images1.shape, (1, 2))
    s = _ssim_map(images1, images2, spatial_axes=(1, 2))
    r = RADIUS
    per_channel = s[:, r:-r, r:-r, :].mean(axis=(1, 2), dtype=np.float64)
    return per_channel.mean(axis=1)
