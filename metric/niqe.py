"""NIQE, the Natural Image Quality Evaluator (Mittal, Soundararajan & Bovik, "Making a 'Completely Blind'
Image Quality Analyzer", IEEE Signal Processing Letters 2013), as the blind-face-restoration field reports
it: BasicSR 1.4.2's `calculate_niqe` (GFPGAN, CodeFormer and VQFR use it; its docstring says it matches
MATLAB's `niqe`). No reference image is needed; lower is better.

Conventions (all BasicSR's, step for step, including where it computes in float32):
* input: `niqe(image)` takes an HWC **BGR** uint8 array as `cv2.imread` gives it (float arrays in 0..255
  are accepted too and give the same number: the first step is a cast to float32), or an HW (or HW1)
  plane that is already the channel to score;
* channel: `convert_to='y'` is BT.601 "MATLAB YCbCr" luma, 16 + (65.481 R + 128.553 G + 24.966 B) / 255,
  with BasicSR's float32 roundings; `'gray'` is OpenCV's 0.299 R + 0.587 G + 0.114 B on float32 / 255;
* `crop_border` pixels are dropped on every edge, then the plane is rounded to integers (half to even);
* the top-left floor(h/96)*96 x floor(w/96)*96 pixels are used (no overlap; the rest is ignored), in
  96x96 blocks visited column of blocks by column (block k = i_w * n_h + i_h);
* at two scales (the plane, then MATLAB's bicubic `imresize(., 0.5)` with antialiasing, in float32, not
  rounded): mean-subtracted contrast-normalised coefficients (x - mu) / (sigma + 1), mu and sigma from the
  pristine model's 7x7 Gaussian window (edges replicated at the block-cropped border), in float32; per
  block 18 features: an AGGD fit (shape from the grid 0.2:0.001:10, two one-sided scales) of the
  coefficients and of their products with the neighbour right, below, below-right and below-left
  (wrapping inside the block), in float32 statistics as BasicSR has them;
* the 36-dimensional features of all blocks are fitted with a Gaussian (mean ignoring NaN entries,
  sample covariance of the rows without NaN) and NIQE = sqrt((mu_p - mu)^T pinv((S_p + S)/2) (mu_p - mu)),
  (mu_p, S_p) the pristine model.
* Undefined: fewer than two 96x96 blocks (a side < 96 px, or both < 192 px), or fewer than two blocks with
  finite features (flat images: a block without negative or positive coefficients has no AGGD fit) raise
  `NIQEUndefined`, a `UserError` whose message is one line. BasicSR raises a torch RuntimeError or
  numpy's LinAlgError there. Callers that average over a folder catch it, leave the image out of the
  mean and count it (`summarize_niqe`).

Parity: every intermediate quantity (Y, local mean and sigma, coefficients, per-block features) equals
BasicSR's bit for bit, the Gaussian fit to float64 rounding (../shared/fixtures/niqe,
tests/test_metric_niqe.py). The one step a port cannot reproduce bit for bit on every machine is the
float32 resize: BasicSR sums its eight bicubic taps with `torch.mv`, whose summation order follows the CPU's
BLAS kernel. Here they are summed in the order torch's MKL takes on this project's CPU (AMD EPYC, AVX2),
which makes the port bit-identical to unmodified BasicSR run there (torch 2.13.0+cpu and 2.14.1: all 21
fixture inputs and three more images, every bit of the float64 result). The fixture was made on a CPU
that rounds 55-58% of the resized pixels differently (by up to 6 ulp); since the AGGD shape is an argmin
over a grid, those ulps move NIQE by up to 3.9e-4 relative (median 1.7e-5).

The pristine model (`niqe_pris_params.npz` beside this file: mu_pris_param (1, 36), cov_pris_param
(36, 36), gaussian_window (7, 7), float64) is the NIQE authors' `modelparameters.mat` from their MATLAB
release (LIVE, The University of Texas at Austin, http://live.ece.utexas.edu/research/quality/niqe_release.zip;
fitted on 125 pristine images, 96x96 patches), in the .npz form BasicSR 1.4.2 ships (Apache-2.0). The
file is byte-identical to BasicSR's; its source, hashes and both licences are in `NIQE_PARAMS.md`.
"""
from dataclasses import dataclass
import math
import os
import warnings

import cv2
import numpy as np
from scipy.ndimage import convolve
from scipy.special import gamma

from utils.errors import UserError

BLOCK_SIZE = 96        # the authors' recommended patch size, the one the pristine model was fitted with
PARAMS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "niqe_pris_params.npz")

# The AGGD shape alpha is the grid value whose moment ratio rho(alpha) = Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a))
# is closest to the data's; 9801 values 0.2, 0.201, ..., 10.0. The tables below are per grid value and
# are computed with the same expressions as BasicSR's per-call ones, so they hold the same float64 bits.
ALPHA_GRID = np.arange(0.2, 10.001, 0.001)
_INV_ALPHA = np.reciprocal(ALPHA_GRID)
_MOMENT_RATIO = np.square(gamma(_INV_ALPHA * 2)) / (gamma(_INV_ALPHA) * gamma(_INV_ALPHA * 3))
# sqrt(Gamma(1/a) / Gamma(3/a)) turns a one-sided RMS into the AGGD scale beta (Eq. 7 of the paper),
# Gamma(2/a) / Gamma(1/a) is the factor of the product distribution's mean (Eq. 8).
_BETA_FACTOR = np.sqrt(gamma(1 / ALPHA_GRID) / gamma(3 / ALPHA_GRID))
_MEAN_FACTOR = gamma(2 / ALPHA_GRID) / gamma(1 / ALPHA_GRID)

# Neighbour products: each block times itself shifted (np.roll, wrapping inside the block) by these
# (rows, columns): horizontal, vertical and the two diagonals.
NEIGHBOUR_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))

_F32 = np.float32


class NIQEUndefined(UserError):
    """NIQE has no value for this image (too small, or too flat for its statistics); the message is one line."""


_pristine = None


def pristine_model():
    """(mu (1, 36), cov (36, 36), Gaussian window (7, 7)), float64, of the NIQE authors' pristine model."""
    global _pristine
    if _pristine is None:
        with np.load(PARAMS_FILE, allow_pickle=False) as data:
            _pristine = (data["mu_pris_param"], data["cov_pris_param"], data["gaussian_window"])
    return _pristine


# ---- the plane to score -------------------------------------------------------------------------------

def luma_y(bgr):
    """BT.601 Y in 16..235 of a BGR image (0..255), float32, not rounded, with BasicSR's roundings:
    float32 / 255, a float64 dot with the weights, float32 again before the final * 255."""
    x = bgr.astype(_F32) / _F32(255.0)
    y = np.dot(x, np.array([24.966, 128.553, 65.481])) + 16.0  # the weights in B, G, R order
    return (y / 255.0).astype(_F32) * _F32(255.0)


def luma_gray(bgr):
    """OpenCV's gray (0.299 R + 0.587 G + 0.114 B) of a BGR image (0..255), float32, not rounded."""
    return cv2.cvtColor(bgr.astype(_F32) / _F32(255.0), cv2.COLOR_BGR2GRAY) * _F32(255.0)


# ---- MATLAB's imresize(img, 0.5), bicubic with antialiasing -------------------------------------------

def _matlab_half_taps():
    """The 8 weights MATLAB's antialiased bicubic gives every output pixel at scale 1/2.

    Output pixel o (0-based) sits at input coordinate 2o + 0.5; the antialiasing kernel is the cubic kernel
    (a = -0.5) stretched by 2, 0.5 * cubic(d / 2), over the inputs 2o-3 .. 2o+4 (distances 3.5 .. -3.5).
    The weights are (-3, -9, 29, 111, 111, 29, -9, -3) / 256, exact in float32 and summing to 1.
    """
    d = np.abs((np.arange(8) - 3.5) / 2)
    cubic = np.where(d <= 1, 1.5 * d ** 3 - 2.5 * d ** 2 + 1, -0.5 * d ** 3 + 2.5 * d ** 2 - 4 * d + 2)
    taps = 0.5 * cubic
    return (taps / taps.sum()).astype(_F32)


HALF_TAPS = _matlab_half_taps()

# The eight rounded products are summed in float32 in the order BasicSR's `torch.mv` sums them on this
# project's CPU (torch 2.13/2.14 with MKL, AVX2), found by matching its output bit for bit: left to right
# for the first (vertical) pass; for the second (horizontal) pass one order for even output columns and
# another for odd ones (MKL's kernel depends on the alignment of each column's weight vector). Every order
# is within a few ulp of the exact sum; this one makes NIQE identical to BasicSR's on that CPU.


def _sum_in_order(p):
    total = p[0]
    for term in p[1:]:
        total = total + term
    return total


def _sum_even_columns(p):
    return (((((p[0] + p[1]) + p[2]) + p[4]) + (p[3] + p[5])) + p[6]) + p[7]


def _sum_odd_columns(p):
    return (((((p[0] + p[1]) + p[2]) + p[3]) + p[4]) + p[6]) + (p[5] + p[7])


def halve(img):
    """MATLAB's `imresize(img, 0.5)` (bicubic, antialiased) of an even-sized float32 plane, in float32 as
    BasicSR's `imresize` computes it: rows first, then columns, borders mirrored with the edge repeated."""
    h, w = img.shape
    if h % 2 or w % 2:
        raise ValueError(f"halve expects even sides, got {h}x{w}")
    padded = np.pad(img.astype(_F32, copy=False), ((3, 3), (0, 0)), mode="symmetric")
    rows = _sum_in_order([padded[k:k + h:2] * HALF_TAPS[k] for k in range(8)])
    padded = np.pad(rows, ((0, 0), (3, 3)), mode="symmetric")
    products = [padded[:, k:k + w:2] * HALF_TAPS[k] for k in range(8)]
    out = _sum_even_columns(products)
    out[:, 1::2] = _sum_odd_columns([p[:, 1::2] for p in products])
    return out


# ---- natural-scene statistics --------------------------------------------------------------------------

def normalised_coefficients(img, window):
    """MSCN coefficients (x - mu) / (sigma + 1) of a float32 plane (Eq. 1), local statistics from `window`
    with replicated edges, in float32 (scipy accumulates in float64 and rounds once, as BasicSR's does)."""
    mu = convolve(img, window, mode="nearest")
    sigma = np.sqrt(np.abs(convolve(np.square(img), window, mode="nearest") - np.square(mu)))
    return (img - mu) / (sigma + 1)


def _moment_ratio_estimate(left, right, abs_mean, square_mean):
    """BasicSR's normalised moment-ratio estimate from one block's float32 statistics, in float32 scalar
    arithmetic exactly as it is written there (numpy's scalar powers are not its array powers)."""
    ratio = left / right
    rhat = abs_mean ** 2 / square_mean
    return (rhat * (ratio ** 3 + 1) * (ratio + 1)) / ((ratio ** 2 + 1) ** 2)


def scale_features(coefficients, block):
    """(n_blocks, 18) float64 features of the `block` x `block` tiles of an MSCN plane whose sides are
    multiples of `block`, rows in BasicSR's order (column of blocks outer).

    The statistics are float32 numpy means (pairwise summation over each tile's values in C order), as
    BasicSR takes them; a tile without negative (or positive) values has no AGGD fit and gives NaN
    features (its alpha is the grid's first value, as np.argmin of NaN gives).
    """
    h, w = coefficients.shape
    nh, nw = h // block, w // block
    n = nh * nw
    tiles = coefficients.reshape(nh, block, nw, block).transpose(2, 0, 1, 3)   # (nw, nh, block, block)
    fields = [tiles] + [tiles * np.roll(tiles, shift, axis=(2, 3)) for shift in NEIGHBOUR_SHIFTS]
    left = np.empty((len(fields), n), dtype=_F32)
    right = np.empty((len(fields), n), dtype=_F32)
    rhat = np.empty((len(fields), n), dtype=_F32)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # empty means of flat tiles: NaN, kept as such
        for f, field in enumerate(fields):
            values = field.reshape(n, block * block)
            squares = values * values
            # Means over whole tiles reduce each row alone, pairwise, exactly as a mean of that tile would.
            abs_mean = np.mean(np.abs(values), axis=1)
            square_mean = np.mean(squares, axis=1)
            # One-sided means: each tile's subset, in C order, as its own contiguous run (a slice of one
            # compressed array), so that numpy sums it with the same pairwise tree as BasicSR's copy.
            negative, positive = values < 0, values > 0
            neg_squares, pos_squares = squares[negative], squares[positive]
            neg_ends, pos_ends = np.cumsum(negative.sum(axis=1)), np.cumsum(positive.sum(axis=1))
            for b in range(n):
                neg_start = neg_ends[b - 1] if b else 0
                pos_start = pos_ends[b - 1] if b else 0
                left[f, b] = np.sqrt(np.mean(neg_squares[neg_start:neg_ends[b]]))
                right[f, b] = np.sqrt(np.mean(pos_squares[pos_start:pos_ends[b]]))
                rhat[f, b] = _moment_ratio_estimate(left[f, b], right[f, b], abs_mean[b], square_mean[b])
        # First grid index of the closest moment ratio (index 0 when rhat is NaN, as np.argmin gives).
        pick = np.argmin(np.square(_MOMENT_RATIO[None, None, :] - rhat[:, :, None]), axis=2)
        alpha = ALPHA_GRID[pick]
        beta_left = left * _BETA_FACTOR[pick]
        beta_right = right * _BETA_FACTOR[pick]
        mean = (beta_right - beta_left) * _MEAN_FACTOR[pick]
    columns = [alpha[0], (beta_left[0] + beta_right[0]) / 2]
    for f in range(1, len(fields)):
        columns += [alpha[f], mean[f], beta_left[f], beta_right[f]]
    return np.stack(columns, axis=1)


def block_grid(plane):
    """(n_h, n_w) 96x96 blocks NIQE uses from a plane; NIQEUndefined when there are fewer than two."""
    h, w = plane.shape
    nh, nw = h // BLOCK_SIZE, w // BLOCK_SIZE
    if nh * nw < 2:
        raise NIQEUndefined(f"NIQE is undefined for a {h}x{w} image: it needs at least two {BLOCK_SIZE}x"
                            f"{BLOCK_SIZE} blocks (both sides >= {BLOCK_SIZE} px, one >= {2 * BLOCK_SIZE} px)")
    return nh, nw


def plane_features(plane):
    """(n_blocks, 36) features of a rounded Y/gray plane: scale 1 then scale 1/2 (48x48 tiles of the halved
    plane), for the block-cropped top-left part."""
    window = pristine_model()[2]
    nh, nw = block_grid(plane)
    img = plane[:nh * BLOCK_SIZE, :nw * BLOCK_SIZE]
    full = scale_features(normalised_coefficients(img, window), BLOCK_SIZE)
    half = halve(img / _F32(255.0)) * _F32(255.0)
    return np.concatenate([full, scale_features(normalised_coefficients(half, window), BLOCK_SIZE // 2)], axis=1)


def pristine_distance(features):
    """NIQE of (n_blocks, 36) features: the distance of their Gaussian fit from the pristine model (Eq. 10)."""
    mu_pris, cov_pris, _ = pristine_model()
    finite_rows = features[~np.isnan(features).any(axis=1)]
    if len(finite_rows) < 2:
        raise NIQEUndefined(f"NIQE is undefined for this image: only {len(finite_rows)} of its "
                            f"{len(features)} blocks have textured statistics (it is too flat)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # a column NaN in every row: caught below
        mu = np.nanmean(features, axis=0)
    cov = np.cov(finite_rows, rowvar=False)
    diff = mu_pris - mu
    try:
        quality = np.matmul(np.matmul(diff, np.linalg.pinv((cov_pris + cov) / 2)), np.transpose(diff))
    except np.linalg.LinAlgError:
        quality = np.nan
    value = float(np.sqrt(np.squeeze(quality)))
    if not math.isfinite(value):
        raise NIQEUndefined("NIQE is undefined for this image: its block statistics give no finite distance")
    return value


def niqe_of_plane(plane):
    """NIQE of a float plane already rounded to integers (0..255), e.g. `np.round(luma_y(bgr))`."""
    return pristine_distance(plane_features(np.asarray(plane, dtype=_F32)))


def niqe(image, crop_border=0, convert_to="y"):
    """NIQE of one image as BasicSR's `calculate_niqe(image, crop_border, 'HWC', convert_to)` computes it.

    image: HWC BGR (cv2.imread's layout), uint8 or float in 0..255; or an HW (HW1) plane, scored as it is.
    An RGB array (utils.image_io.read_image) is passed as `image[..., ::-1]`.
    convert_to: 'y' (BT.601 luma, BasicSR's default) or 'gray'. Raises NIQEUndefined for images NIQE
    cannot score (the module docstring says when).
    """
    image = np.asarray(image)
    if convert_to not in ("y", "gray"):
        raise ValueError(f"convert_to must be 'y' or 'gray', got {convert_to!r}")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    if image.ndim == 3 and image.shape[2] == 3:
        plane = luma_y(image) if convert_to == "y" else luma_gray(image)
    elif image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        plane = image.reshape(image.shape[:2]).astype(_F32)
    else:
        raise ValueError(f"expected an HxWx3 BGR image or an HxW plane, got shape {image.shape}")
    if crop_border:
        plane = plane[crop_border:-crop_border, crop_border:-crop_border]
    return niqe_of_plane(plane.round())


# ---- a folder's NIQE -----------------------------------------------------------------------------------

@dataclass
class NIQESummary:
    mean: float        # mean over the images NIQE is defined for (nan if none)
    count: int         # images given
    undefined: int     # images NIQE could not score (NIQEUndefined), left out of `mean`

    def __str__(self):
        text = f"{self.mean:.4f} over {self.count - self.undefined} images"
        if self.undefined:
            text += f" ({self.undefined} too small or too flat for NIQE, excluded)"
        return text


def summarize_niqe(values):
    """Average per-image NIQE values; None or nan marks an image NIQE was undefined for."""
    values = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
    defined = values[~np.isnan(values)]
    if np.isinf(defined).any():
        raise ValueError("NIQE values must be finite (or None/nan for undefined)")
    mean = float(np.mean(defined)) if defined.size else math.nan
    return NIQESummary(mean=mean, count=int(values.size), undefined=int(values.size - defined.size))
