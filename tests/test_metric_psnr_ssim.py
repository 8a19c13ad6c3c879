"""PSNR and SSIM against scikit-image on real faces, and the identical-image (inf) convention."""
import math

import cv2
import numpy as np
import pytest

from conftest import EXAMPLES
from metric.psnr import psnr, psnr_batch, summarize_psnr
from metric.ssim import ssim, ssim_batch
from utils.image_io import list_images, read_image

skmetrics = pytest.importorskip("skimage.metrics", reason="scikit-image (requirements-dev.txt) is the reference")

SIZE = 256


@pytest.fixture(scope="module")
def faces():
    paths = list_images(str(EXAMPLES / "test"))[:3]  # the repo's own sample faces
    return [cv2.resize(read_image(p), (SIZE, SIZE), interpolation=cv2.INTER_AREA) for p in paths]


@pytest.fixture(scope="module")
def degraded(faces):
    """The first face blurred (sigma 2) with Gaussian noise (sigma 10), back in 8 bits."""
    rng = np.random.default_rng(0)
    noisy = cv2.GaussianBlur(faces[0], (0, 0), 2.0).astype(np.float64) + rng.normal(0, 10, faces[0].shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def _pairs(faces, degraded):
    return [(faces[0], degraded), (faces[1], faces[2])]


def _sk_ssim(a, b):
    return skmetrics.structural_similarity(a, b, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                           use_sample_covariance=False, data_range=255)


def test_psnr_matches_scikit_image(faces, degraded):
    for a, b in _pairs(faces, degraded):
        expected = skmetrics.peak_signal_noise_ratio(a, b, data_range=255)
        assert abs(psnr(a, b) - expected) <= 1e-6
    values = psnr_batch(np.stack([faces[0], faces[1]]), np.stack([degraded, faces[2]]))
    assert values == pytest.approx([psnr(faces[0], degraded), psnr(faces[1], faces[2])], abs=1e-12)
    # A degraded copy of a face is much closer to it than another face is.
    assert values[0] > values[1] + 5


def test_ssim_matches_scikit_image(faces, degraded):
    for a, b in _pairs(faces, degraded):
        assert abs(ssim(a, b) - _sk_ssim(a, b)) <= 1e-6
    gray_a, gray_b = faces[0][..., 1], degraded[..., 1]
    expected = skmetrics.structural_similarity(gray_a, gray_b, gaussian_weights=True, sigma=1.5,
                                               use_sample_covariance=False, data_range=255)
    assert abs(ssim(gray_a, gray_b) - expected) <= 1e-6
    batch = ssim_batch(np.stack([faces[0], faces[1]]), np.stack([degraded, faces[2]]))
    assert batch == pytest.approx([_sk_ssim(faces[0], degraded), _sk_ssim(faces[1], faces[2])], abs=1e-6)


def test_ssim_border_handling_matches_on_small_odd_image(faces, degraded):
    # 23x17: most of the image is within the 5-pixel window radius of a border, so a different
    # border mode or truncation would show.
    a, b = faces[0][100:123, 80:97], degraded[100:123, 80:97]
    assert abs(ssim(a, b) - _sk_ssim(a, b)) <= 1e-6


def test_identical_images(faces):
    assert psnr(faces[0], faces[0]) == math.inf
    assert ssim(faces[0], faces[0]) == pytest.approx(1.0, abs=1e-12)
    summary = summarize_psnr([30.0, math.inf, 20.0])
    assert (summary.mean, summary.count, summary.identical) == (25.0, 3, 1)
    assert "1 identical" in str(summary)
    assert summarize_psnr([math.inf, math.inf]).mean == math.inf
    assert math.isnan(summarize_psnr([]).mean)


def test_rejects_non_uint8_and_mismatched_shapes(faces):
    with pytest.raises(TypeError, match="uint8"):
        psnr(faces[0].astype(np.float32), faces[1].astype(np.float32))
    with pytest.raises(ValueError, match="shapes differ"):
        ssim(faces[0], faces[1][:-1])
    with pytest.raises(ValueError):
        summarize_psnr([float("nan")])
