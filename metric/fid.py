"""Frechet Inception Distance as pytorch-fid computes it.

Conventions:
* Features are pool3 of pytorch-fid's Inception-v3 (`metric.inception`), one 2048-vector per image,
  from a *feature function* the caller passes (float32 (N, 3, H, W) RGB in [0, 1] -> (N, 2048);
  `deploy.features.inception_features` serves the network): this module never runs a network itself.
  `extract_features` accepts uint8 images (N, H, W, 3) RGB 0..255 (what `utils.image_io.read_image`
  returns) or float images (N, 3, H, W) RGB in [0, 1]; uint8 becomes float32 u8 / 255 exactly as
  pytorch-fid's ToTensor does. Any size; the network resizes to 299. pytorch-fid reads PNG/JPEG files,
  so FID of generated images is computed on their 8-bit version.
* Statistics: mu = mean over images, sigma = np.cov(features, rowvar=False) (unbiased, n - 1), all
  float64. Saved as .npz with keys `mu` and `sigma`, the format of pytorch-fid's `--save-stats`, so
  files of either tool load in the other; BasicSR's `.pth` statistics (`{name, size, mean, cov}`,
  e.g. its FFHQ-512 reference) load too (`load_statistics`).
* FID = ||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr(sqrtm(sigma1 sigma2)), in float64 with
  `scipy.linalg.sqrtm`. If the square root of the product is not finite (a singular product; old SciPy
  releases return inf/nan there), both covariances get 1e-6 added to their diagonal and the root is
  taken again. A complex root is accepted when the imaginary parts of its diagonal are below 1e-3
  (rounding) and its real part is used; larger imaginary parts are an error.
* Fewer than 2 images have no covariance: refused. Fewer than 2,048 (the feature dimension) give a
  rank-deficient covariance and a biased FID that is not comparable with published values: warned.
"""
import os
import warnings
import zipfile

import numpy as np
from scipy import linalg

from utils.errors import UserError
from utils.weights import is_torch_file, read_torch_file

FEATURE_DIM = 2048
SQRTM_OFFSET = 1e-6
IMAGINARY_ATOL = 1e-3


class FewSamplesWarning(UserWarning):
    """FID from fewer images than feature dimensions (rank-deficient covariance)."""


def check_sample_count(n, what="images"):
    """Refuse fewer than 2 samples (UserError); warn below 2,048 (FewSamplesWarning)."""
    if n < 2:
        raise UserError(f"FID needs at least 2 {what} to estimate a covariance, got {n}")
    if n < FEATURE_DIM:
        warnings.warn(f"FID from {n} {what}: fewer than {FEATURE_DIM}, so the covariance is rank-deficient "
                      f"and the value is biased upwards; it is not comparable with FIDs from other set sizes",
                      FewSamplesWarning, stacklevel=2)


def compute_statistics(features):
    """(N, D) features -> (mu (D,), sigma (D, D)) in float64, as pytorch-fid."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {features.shape}")
    check_sample_count(features.shape[0])
    return features.mean(axis=0), np.cov(features, rowvar=False)


def save_statistics(path, mu, sigma):
    """Write mu and sigma to `path` (.npz, keys mu and sigma; pytorch-fid's --save-stats format)."""
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    np.savez_compressed(path, mu=np.asarray(mu, np.float64), sigma=np.asarray(sigma, np.float64))


def _is_zip_of_arrays(path):
    # Both an .npz and a torch >= 1.6 checkpoint are zip files; the checkpoint holds a data.pkl.
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return not any(name == "data.pkl" or name.endswith("/data.pkl") for name in archive.namelist())


def _torch_statistics(path):
    """BasicSR's statistics file: torch.save(dict(name, size, mean, cov)) with numpy arrays inside."""
    content = read_torch_file(path, numpy_arrays=True)
    if not isinstance(content, dict) or not {"mean", "cov"} <= set(content):
        have = ", ".join(map(str, content)) if isinstance(content, dict) else type(content).__name__
        raise UserError(f"{path}: not FID statistics (BasicSR's .pth holds 'mean' and 'cov'; this holds "
                        f"{have or 'nothing'})")
    return content["mean"], content["cov"]


def _npz_statistics(path):
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as err:
        raise UserError(f"{path}: not a readable .npz file ({type(err).__name__}: {err})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise UserError(f"{path}: not FID statistics (an .npz with arrays 'mu' and 'sigma' is needed)")
    with data:
        if not {"mu", "sigma"} <= set(data.files):
            raise UserError(f"{path}: not FID statistics (an .npz with arrays 'mu' and 'sigma' is needed; "
                            f"it has {', '.join(data.files) or 'nothing'})")
        try:
            return data["mu"], data["sigma"]
        except ValueError as err:  # object arrays (pickles) are refused
            raise UserError(f"{path}: 'mu'/'sigma' are not numeric arrays ({err})") from None


def load_statistics(path):
    """Read reference statistics (mu, sigma) as float64 from either file the field publishes:

    * pytorch-fid's `.npz` (`--save-stats`, or `save_statistics` here): arrays `mu` and `sigma`;
    * BasicSR's `.pth` (e.g. `inception_FFHQ_512-f7b384ab.pth`): a legacy `torch.save` pickle of
      `{name, size, mean, cov}` holding numpy arrays, read without torch by the restricted unpickler
      (`utils.weights`), which rebuilds numeric numpy arrays and nothing else.
    The container is told from the content, not the extension.
    """
    if not os.path.isfile(path):
        raise UserError(f"FID statistics file not found: {path}")
    if not _is_zip_of_arrays(path) and is_torch_file(path):
        mu, sigma = _torch_statistics(path)
    else:
        mu, sigma = _npz_statistics(path)
    try:
        mu, sigma = np.asarray(mu).astype(np.float64), np.asarray(sigma).astype(np.float64)
    except (TypeError, ValueError) as err:  # non-numeric arrays do not convert
        raise UserError(f"{path}: the statistics are not numeric arrays ({err})") from None
    if mu.ndim != 1 or sigma.shape != (mu.size, mu.size):
        raise UserError(f"{path}: mu {mu.shape} and sigma {sigma.shape} do not fit together")
    return mu, sigma


def _sqrtm(matrix):
    return linalg.sqrtm(matrix)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=SQRTM_OFFSET, force_offset=False):
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), float64 (see module docstring).

    force_offset: take the offset branch (eps on the diagonals) without trying the plain product
    first; only tests use it, to check that branch against pytorch-fid's.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        # Statistics usually come from files, e.g. a reference made with pytorch-fid --dims 768.
        raise UserError(f"FID statistics do not match: mu {mu1.shape} / {mu2.shape}, sigma {sigma1.shape} / "
                        f"{sigma2.shape} (FID here uses {FEATURE_DIM}-d pool3 features, pytorch-fid's default)")
    diff = mu1 - mu2
    root = None if force_offset else _sqrtm(sigma1 @ sigma2)
    if root is None or not np.isfinite(root).all():
        # A singular product (e.g. rank-deficient covariances) can make sqrtm fail; a tiny ridge on
        # both covariances makes the product well defined at a negligible change of the value.
        offset = np.eye(sigma1.shape[0]) * eps
        root = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(root):
        largest = np.max(np.abs(np.diagonal(root).imag))
        if largest > IMAGINARY_ATOL:
            raise ValueError(f"sqrtm of the covariance product has an imaginary component of {largest:.3g} "
                             f"on its diagonal (more than rounding); the statistics are not valid covariances")
        root = root.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(root))


def fid_from_features(features1, features2):
    """FID between two feature sets (N1, D) and (N2, D)."""
    return frechet_distance(*compute_statistics(features1), *compute_statistics(features2))


# ----------------------------------------------------------------------------------------------
# Features of images, from a feature function (numpy only: the function may run anywhere).


def _to_unit_float(images):
    """uint8 (N, H, W, 3) or float (N, 3, H, W) in [0, 1] -> contiguous float32 NCHW in [0, 1]."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4:
        raise ValueError(f"expected a batch of images, got shape {images.shape}")
    if images.dtype == np.uint8:
        if images.shape[-1] != 3:
            raise ValueError(f"uint8 images must be (N, H, W, 3) RGB, got shape {images.shape}")
        # float32(u8) / float32(255), bit-identical to torchvision's ToTensor used by pytorch-fid.
        return np.ascontiguousarray(images.transpose(0, 3, 1, 2)).astype(np.float32) / np.float32(255)
    if np.issubdtype(images.dtype, np.floating):
        if images.shape[1] != 3:
            raise ValueError(f"float images must be (N, 3, H, W) RGB in [0, 1], got shape {images.shape}")
        return np.ascontiguousarray(images, dtype=np.float32)
    raise TypeError(f"images must be uint8 (N, H, W, 3) or float (N, 3, H, W), got {images.dtype}")


def extract_features(features, images, batch_size=8):
    """Features of `images` -> (N, D) float64, computed in chunks of `batch_size`.

    features: the feature function, float32 (n, 3, H, W) RGB in [0, 1] -> (n, D) (pytorch-fid's
    Inception: `deploy.features.inception_features(weights)`). images: uint8 (N, H, W, 3) RGB 0..255
    or float (N, 3, H, W) RGB in [0, 1] (one image without the N axis is accepted too).
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    chunks = [np.asarray(features(_to_unit_float(images[start:start + batch_size])), dtype=np.float64)
              for start in range(0, images.shape[0], batch_size)]
    return np.concatenate(chunks) if chunks else np.empty((0, FEATURE_DIM), np.float64)
