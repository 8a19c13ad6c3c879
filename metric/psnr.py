"""Peak signal-to-noise ratio on 8-bit RGB images.

Conventions (the ones GPEN's and the field's tables use):
* inputs are uint8 arrays of the same shape, HWC with RGB channels (any channel order gives the same
  number, since PSNR treats all samples alike; the dtype matters: values are 0..255, data range 255);
* one PSNR per image pair, over all pixels and channels: 10 * log10(255^2 / MSE), MSE accumulated
  in float64 (the squared differences are summed exactly as integers first). This equals
  `skimage.metrics.peak_signal_noise_ratio(a, b, data_range=255)` on uint8 inputs;
* identical images have MSE 0 and PSNR = +inf. A data set's PSNR is the mean of the per-image values
  (not the PSNR of the pooled MSE). `summarize_psnr` averages the finite values only and reports how
  many pairs were identical beside that mean, so one perfect reconstruction neither turns the average
  into inf nor is silently given an arbitrary cap; if every pair is identical the mean is inf.
"""
from dataclasses import dataclass
import math

import numpy as np

DATA_RANGE = 255.0


def _check_pair(img1, img2):
    img1, img2 = np.asarray(img1), np.asarray(img2)
    if img1.dtype != np.uint8 or img2.dtype != np.uint8:
        raise TypeError(f"PSNR/SSIM expect uint8 images (8-bit RGB), got {img1.dtype} and {img2.dtype}")
    if img1.shape != img2.shape:
        raise ValueError(f"image shapes differ: {img1.shape} vs {img2.shape}")
    return img1, img2


def psnr(img1, img2):
    """PSNR in dB between two uint8 images of the same shape (HWC RGB); +inf when identical."""
    img1, img2 = _check_pair(img1, img2)
    diff = img1.astype(np.int64) - img2.astype(np.int64)
    squared_error = int(np.sum(diff * diff))  # exact: at most 255^2 per sample
    if squared_error == 0:
        return math.inf
    mse = squared_error / diff.size
    return float(10.0 * np.log10(DATA_RANGE ** 2 / mse))


def psnr_batch(images1, images2):
    """Per-image PSNR of two uint8 batches (N, H, W, C) -> float64 array (N,)."""
    images1, images2 = _check_pair(images1, images2)
    if images1.ndim != 4:
        raise ValueError(f"expected a batch (N, H, W, C), got shape {images1.shape}")
    return np.array([psnr(a, b) for a, b in zip(images1, images2)], dtype=np.float64)


@dataclass
class PSNRSummary:
    mean: float          # mean over the finite values (inf if every pair was identical, nan if none given)
    count: int           # number of image pairs
    identical: int       # pairs with PSNR = inf, left out of `mean`

    def __str__(self):
        text = f"{self.mean:.4f} dB over {self.count} images"
        if self.identical:
            text += f" ({self.identical} identical pairs, PSNR inf, excluded from the mean)"
        return text


def summarize_psnr(values):
    """Average per-image PSNR values, handling identical pairs (inf) as the module docstring says."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if np.isnan(values).any() or (values == -np.inf).any():
        raise ValueError("PSNR values must be finite or +inf")
    finite = values[np.isfinite(values)]
    identical = int(values.size - finite.size)
    if finite.size:
        mean = float(np.mean(finite))
    else:
        mean = math.inf if identical else math.nan
    return PSNRSummary(mean=mean, count=int(values.size), identical=identical)
