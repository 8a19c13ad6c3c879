"""Synthetic degradation of HQ faces: the CPU reference (numpy + OpenCV), one image at a time.

The model is GFPGAN's, as the authors train GPEN with it (`GFPGAN_degradation.degrade_process` in their
`training/data_loader/dataset_face.py`, kernels from their `degradations.py`; GPEN_SPEC §6):

    flip -> gray (HQ and LQ) -> blur with a random 41x41 kernel -> downscale by s (bilinear)
    -> Gaussian noise -> JPEG -> round/clip to 8 bit -> resize back (bilinear)

The work is split in two so that a second executor (the batched Paddle one in `device_degradation.py`) can
apply exactly the same degradation:

* `DegradationSampler.sample` draws every random choice of one image (`DegradationParams`) from the RNGs it
  is given, in the authors' order. Given `random.Random(s)` and `np.random.RandomState(s)` it reproduces
  what their code draws after `random.seed(s); np.random.seed(s)`.
* `degrade(hq, params)` applies them with OpenCV.

`degrade_test_face(sharp, seed, index, degradation)` is the repeatable test-time degradation: face `index`
gets the same LQ for the same `seed`, whatever the batch size, the worker count or the machine's device.

Images here are RGB, HWC, float32 in [0, 1]. The authors work on BGR arrays (cv2.imread); where the
channel order matters (gray weights, the JPEG colour transform, the layout of the noise field) the code
below says how it keeps the result equal to theirs.
"""
import functools
import math
import random
from dataclasses import dataclass
from typing import NamedTuple, Optional

import cv2
import numpy as np
from scipy import special

from utils.config import DegradationConfig
from utils.errors import UserError
from utils.imaging import to_images, to_network

KERNEL_FAMILIES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")

# Fixed in the authors' GFPGAN_degradation (not config values): colour jitter is off (probability 0) and
# the noise is never gray (random_add_gaussian_noise's gray_prob stays 0). Both tests still draw one
# uniform number each, which a seeded stream has to consume to stay in step with theirs.
COLOR_JITTER_PROB = 0.0
NOISE_GRAY_PROB = 0.0

# Kernel mass below which the fast blur may drop the kernel's outer rings: the blurred image then
# differs from the full 41x41 filter by at most this fraction of its range, far below 8-bit resolution.
_TRIM_MASS = 1e-7


# ----------------------------------------------------------------------------------------------------
# Blur kernels (float64, (k, k), row index = y, sum 1), the families of GFPGAN's degradation.

def sigma_matrix2(sig_x, sig_y, theta):
    """Covariance of a Gaussian with standard deviations sig_x, sig_y along axes rotated by theta."""
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    return rot @ np.diag([sig_x ** 2, sig_y ** 2]) @ rot.T


@functools.lru_cache(maxsize=8)
def mesh_grid(kernel_size):
    """(k, k, 2) array of (x, y) offsets from the kernel centre (cached: read-only)."""
    ax = np.arange(1 - (kernel_size + 1) // 2, kernel_size // 2 + 1, dtype=np.float64)
    xx, yy = np.meshgrid(ax, ax)
    grid = np.stack([xx, yy], axis=-1)
    grid.flags.writeable = False
    return grid


def _mahalanobis2(kernel_size, sig_x, sig_y, theta, isotropic):
    """x^T Σ^-1 x over the kernel grid (isotropic: Σ = sig_x² I, sig_y and theta ignored)."""
    cov = np.diag([sig_x ** 2, sig_x ** 2]) if isotropic else sigma_matrix2(sig_x, sig_y, theta)
    grid = mesh_grid(kernel_size)
    return np.sum((grid @ np.linalg.inv(cov)) * grid, axis=2)


def bivariate_gaussian(kernel_size, sig_x, sig_y, theta, isotropic=True):
    kernel = np.exp(-0.5 * _mahalanobis2(kernel_size, sig_x, sig_y, theta, isotropic))
    return kernel / np.sum(kernel)


def bivariate_generalized_gaussian(kernel_size, sig_x, sig_y, theta, beta, isotropic=True):
    """exp(-½ (x^T Σ^-1 x)^beta): beta 1 is the Gaussian, < 1 heavier tails, > 1 flatter top."""
    kernel = np.exp(-0.5 * np.power(_mahalanobis2(kernel_size, sig_x, sig_y, theta, isotropic), beta))
    return kernel / np.sum(kernel)


def bivariate_plateau(kernel_size, sig_x, sig_y, theta, beta, isotropic=True):
    """1 / (1 + (x^T Σ^-1 x)^beta): a flat top with polynomial tails."""
    kernel = 1.0 / (np.power(_mahalanobis2(kernel_size, sig_x, sig_y, theta, isotropic), beta) + 1.0)
    return kernel / np.sum(kernel)


def circular_lowpass_kernel(cutoff, kernel_size, pad_to=0):
    """Ideal circular low-pass (2-D sinc, "jinc") with `cutoff` in radians/pixel (π = Nyquist)."""
    if kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be odd, got {kernel_size}")
    centre = (kernel_size - 1) / 2
    yy, xx = np.meshgrid(np.arange(kernel_size) - centre, np.arange(kernel_size) - centre, indexing="ij")
    radius = np.sqrt(xx ** 2 + yy ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        kernel = cutoff * special.j1(cutoff * radius) / (2 * np.pi * radius)
    kernel[int(centre), int(centre)] = cutoff ** 2 / (4 * np.pi)  # the limit at radius 0
    kernel = kernel / np.sum(kernel)
    if pad_to > kernel_size:
        pad = (pad_to - kernel_size) // 2
        kernel = np.pad(kernel, ((pad, pad), (pad, pad)))
    return kernel


@dataclass(frozen=True)
class KernelSpec:
    """One drawn blur kernel: its family and shape parameters (beta only for generalized/plateau)."""
    family: str
    sig_x: float
    sig_y: float
    theta: float
    beta: Optional[float] = None

    @property
    def separable(self):
        # An isotropic Gaussian is the outer product of two 1-D Gaussians (exactly, also once normalised).
        return self.family == "iso"

    def build(self, kernel_size):
        iso = self.family.endswith("iso") and not self.family.endswith("aniso")
        if self.family in ("iso", "aniso"):
            return bivariate_gaussian(kernel_size, self.sig_x, self.sig_y, self.theta, isotropic=iso)
        if self.family.startswith("generalized"):
            return bivariate_generalized_gaussian(kernel_size, self.sig_x, self.sig_y, self.theta, self.beta, iso)
        return bivariate_plateau(kernel_size, self.sig_x, self.sig_y, self.theta, self.beta, iso)


def sample_kernel_spec(kernel_list, kernel_prob, sigma_x_range, sigma_y_range, rotation_range,
                       betag_range=(0.5, 8.0), betap_range=(0.5, 8.0), py_rng=random, np_rng=np.random):
    """Draw a kernel family (Python RNG) and its parameters (numpy RNG) in GFPGAN's order."""
    family = py_rng.choices(list(kernel_list), list(kernel_prob))[0]
    if family not in KERNEL_FAMILIES:
        raise ValueError(f"unknown kernel family {family!r}; known: {', '.join(KERNEL_FAMILIES)}")
    sig_x = np_rng.uniform(sigma_x_range[0], sigma_x_range[1])
    if family.endswith("aniso"):
        sig_y = np_rng.uniform(sigma_y_range[0], sigma_y_range[1])
        theta = np_rng.uniform(rotation_range[0], rotation_range[1])
    else:
        sig_y, theta = sig_x, 0.0
    beta = None
    if family.startswith(("generalized", "plateau")):
        lo, hi = betag_range if family.startswith("generalized") else betap_range
        # Shapes below and above 1 are equally likely (GFPGAN's choice; it assumes lo <= 1 <= hi).
        beta = np_rng.uniform(lo, 1) if np_rng.uniform() < 0.5 else np_rng.uniform(1, hi)
    return KernelSpec(family, float(sig_x), float(sig_y), float(theta), None if beta is None else float(beta))


def random_mixed_kernels(kernel_list, kernel_prob, kernel_size=21, sigma_x_range=(0.6, 5.0),
                         sigma_y_range=(0.6, 5.0), rotation_range=(-math.pi, math.pi), betag_range=(0.5, 8.0),
                         betap_range=(0.5, 8.0), py_rng=random, np_rng=np.random):
    """A random kernel of a random family. The default RNGs are the global `random` and `np.random`, as in
    the authors' code; pass `random.Random(s)` and `np.random.RandomState(s)` to replay their draws
    after `random.seed(s); np.random.seed(s)` without touching the globals."""
    spec = sample_kernel_spec(kernel_list, kernel_prob, sigma_x_range, sigma_y_range, rotation_range,
                              betag_range, betap_range, py_rng, np_rng)
    return spec.build(kernel_size)


# ----------------------------------------------------------------------------------------------------
# The parameter sampler.

@dataclass
class DegradationParams:
    """Every random choice of one degradation. `noise` is the standard-normal field the CPU executor adds
    (drawn by the sampler, in the authors' layout: (h, w, 3) in BGR channel order, or (h, w) for gray
    noise); the device executor draws its own on the device and ignores it."""
    flip: bool
    gray: bool
    kernel: KernelSpec
    scale: float
    noise_sigma: Optional[float]      # 8-bit units; None = no noise step
    noise_gray: bool
    jpeg_quality: Optional[int]       # None = no JPEG step
    noise: Optional[np.ndarray] = None

    def lq_size(self, height, width):
        """(h, w) of the downscaled image: the authors' int(h // s), int(w // s)."""
        return max(1, int(height // self.scale)), max(1, int(width // self.scale))


def _check_range(cfg, name, allow_empty=False):
    value = list(getattr(cfg, name))
    if allow_empty and not value:
        return None
    if len(value) != 2 or value[0] > value[1]:
        raise UserError(f"config key degradation.{name}: expected [low, high] with low <= high, got {value}")
    return value


class DegradationSampler:
    """Draws `DegradationParams` from the ranges and probabilities of a `DegradationConfig`.

    `noise_range` or `jpeg_range` set to [] switches that step off (the authors' `None`).
    """

    def __init__(self, cfg=None):
        cfg = cfg or DegradationConfig()
        self.cfg = cfg
        unknown = [k for k in cfg.kernel_list if k not in KERNEL_FAMILIES]
        if unknown or not cfg.kernel_list:
            raise UserError(f"config key degradation.kernel_list: unknown kernel family {unknown or '[]'}; "
                            f"choose from {', '.join(KERNEL_FAMILIES)}")
        if len(cfg.kernel_prob) != len(cfg.kernel_list) or min(cfg.kernel_prob) < 0 or sum(cfg.kernel_prob) <= 0:
            raise UserError("config key degradation.kernel_prob: needs one non-negative probability per "
                            f"kernel_list entry ({len(cfg.kernel_list)}), got {cfg.kernel_prob}")
        if cfg.kernel_size < 1 or cfg.kernel_size % 2 == 0:
            raise UserError(f"config key degradation.kernel_size: must be odd and positive, got {cfg.kernel_size}")
        for name in ("flip_prob", "gray_prob"):
            if not 0.0 <= getattr(cfg, name) <= 1.0:
                raise UserError(f"config key degradation.{name}: must be within [0, 1], got {getattr(cfg, name)}")
        self.blur_sigma = _check_range(cfg, "blur_sigma")
        self.rotation = _check_range(cfg, "rotation")
        self.betag_range = _check_range(cfg, "betag_range")
        self.betap_range = _check_range(cfg, "betap_range")
        self.downsample_range = _check_range(cfg, "downsample_range")
        if self.downsample_range[0] <= 0:
            raise UserError(f"config key degradation.downsample_range: must be positive, got {self.downsample_range}")
        self.noise_range = _check_range(cfg, "noise_range", allow_empty=True)
        self.jpeg_range = _check_range(cfg, "jpeg_range", allow_empty=True)
        if self.jpeg_range and not (1 <= self.jpeg_range[0] and self.jpeg_range[1] <= 100):
            raise UserError("config key degradation.jpeg_range: qualities must be within [1, 100], "
                            f"got {self.jpeg_range}")

    @property
    def kernel_size(self):
        return self.cfg.kernel_size

    def sample(self, size_hw, py_rng=random, np_rng=np.random, draw_noise=True):
        """Draw the degradation of one (h, w) image. `py_rng` is a `random.Random` (or the `random` module),
        `np_rng` a `np.random.RandomState` / `Generator` (or the `np.random` module). The order of the draws
        is the authors': flip, (colour jitter), gray, kernel, scale, noise σ, (gray noise), noise field,
        JPEG quality. `draw_noise=False` leaves the noise field to the executor (the device one)."""
        cfg = self.cfg
        flip = py_rng.random() > 1.0 - cfg.flip_prob
        np_rng.uniform()  # the authors' colour-jitter test, COLOR_JITTER_PROB = 0
        gray = np_rng.uniform() < cfg.gray_prob
        kernel = sample_kernel_spec(cfg.kernel_list, cfg.kernel_prob, self.blur_sigma, self.blur_sigma,
                                    self.rotation, self.betag_range, self.betap_range, py_rng, np_rng)
        scale = float(np_rng.uniform(self.downsample_range[0], self.downsample_range[1]))
        params = DegradationParams(flip=bool(flip), gray=bool(gray), kernel=kernel, scale=scale,
                                   noise_sigma=None, noise_gray=False, jpeg_quality=None)
        if self.noise_range is not None:
            params.noise_sigma = float(np_rng.uniform(self.noise_range[0], self.noise_range[1]))
            params.noise_gray = bool(np_rng.uniform() < NOISE_GRAY_PROB)
            if draw_noise:
                lq_h, lq_w = params.lq_size(*size_hw)
                shape = (lq_h, lq_w) if params.noise_gray else (lq_h, lq_w, 3)
                if isinstance(np_rng, np.random.Generator):  # ours: float32 draws directly (faster)
                    params.noise = np_rng.standard_normal(shape, dtype=np.float32)
                else:  # RandomState / np.random: the authors' np.float32(np.random.randn(*shape))
                    params.noise = np.asarray(np_rng.standard_normal(shape), dtype=np.float32)
        if self.jpeg_range is not None:
            # Truncated to an integer quality like the authors' int(np.random.uniform(60, 100)).
            params.jpeg_quality = int(np_rng.uniform(self.jpeg_range[0], self.jpeg_range[1]))
        return params


# ----------------------------------------------------------------------------------------------------
# The CPU executor.

def _trim_kernel(kernel):
    """The centred square part of `kernel` outside which its mass is below _TRIM_MASS."""
    half = kernel.shape[0] // 2
    total = kernel.sum()
    radius = half
    while radius > 0:
        inner = kernel[half - radius + 1:half + radius, half - radius + 1:half + radius].sum()
        if total - inner > _TRIM_MASS * total:
            break
        radius -= 1
    return kernel[half - radius:half + radius + 1, half - radius:half + radius + 1]


def _fft_filter(image, kernel):
    """cv2.filter2D(image, -1, kernel) (correlation, BORDER_REFLECT_101) computed with OpenCV's real DFT
    (its packed spectra are about twice as fast as scipy's here), one channel at a time."""
    r = kernel.shape[0] // 2
    h, w = image.shape[:2]
    fh, fw = cv2.getOptimalDFTSize(h + 2 * r), cv2.getOptimalDFTSize(w + 2 * r)
    # Rows/columns past h + 2r only pad the transform: with them the wrap-around of the circular
    # convolution still stays inside the r-pixel border that is cropped.
    padded = cv2.copyMakeBorder(image, r, fh - h - r, r, fw - w - r, cv2.BORDER_REFLECT_101)
    # Circular convolution with the flipped kernel centred at (0, 0) = correlation with the kernel.
    placed = np.zeros((fh, fw), np.float32)
    placed[:kernel.shape[0], :kernel.shape[1]] = kernel[::-1, ::-1]
    kernel_spectrum = cv2.dft(np.roll(placed, (-r, -r), axis=(0, 1)))
    channels = cv2.split(padded) if padded.ndim == 3 else [padded]
    out = [cv2.idft(cv2.mulSpectrums(cv2.dft(c), kernel_spectrum, 0),
                    flags=cv2.DFT_SCALE | cv2.DFT_REAL_OUTPUT)[r:r + h, r:r + w] for c in channels]
    return cv2.merge(out) if image.ndim == 3 else out[0]


def blur(image, kernel, fast=True):
    """Correlate every channel of `image` ((h, w) or (h, w, c) float32) with `kernel`, borders reflected
    (OpenCV's BORDER_REFLECT_101).

    fast=False is the authors' cv2.filter2D with the full kernel. fast=True gives the same image (within
    ~1e-6) faster: the kernel's negligible outer rings are trimmed, a separable (isotropic Gaussian)
    kernel runs as two 1-D passes, and a large non-separable one through FFTs.
    """
    if not fast:
        return cv2.filter2D(image, -1, kernel)
    kernel = _trim_kernel(kernel)
    if kernel.shape[0] == 1:
        return image * np.float32(kernel[0, 0])
    row = kernel.sum(axis=0)
    col = kernel.sum(axis=1)
    if np.allclose(np.outer(col, row), kernel, rtol=0, atol=1e-12):
        return cv2.sepFilter2D(image, -1, row, col)
    if kernel.shape[0] <= 11:  # OpenCV filters small kernels directly, which beats the FFT there
        return cv2.filter2D(image, -1, kernel)
    return _fft_filter(image, kernel)


def to_gray3(image):
    """Replace RGB by its luma, replicated to three channels.

    The authors call cv2.cvtColor(BGR2GRAY) on BGR arrays; RGB2GRAY on our RGB arrays puts the same
    weights (0.299 R + 0.587 G + 0.114 B) on the same colours, so the result is identical.
    """
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return np.repeat(gray[:, :, None], 3, axis=2)


def jpeg_roundtrip(image, quality):
    """Encode and decode with OpenCV's JPEG (float RGB [0,1] in and out, like the authors' helper).

    The float image goes to 8 bit with round-to-nearest and saturation, as cv2.imencode does with the
    authors' float input; it is handed over in BGR order so that libjpeg's RGB->YCbCr sees real colours.
    """
    pixels = np.clip(np.rint(np.clip(image, 0, 1) * 255.0), 0, 255).astype(np.uint8)
    params = [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)]
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(pixels[:, :, ::-1]), params)
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return np.ascontiguousarray(decoded[:, :, ::-1]).astype(np.float32) / 255.0


def degrade(hq, params, kernel_size=41, fast=True, kernel=None):
    """Apply `params` to one HQ image (RGB HWC float32 in [0,1]); returns (lq, hq_out), both (h, w, 3)
    float32 in [0, 1]. hq_out is the HQ after the flip and gray steps (the training target).

    `kernel` may pass the already built kernel of `params.kernel` (it is built from the spec otherwise).
    """
    if hq.dtype != np.float32 or hq.ndim != 3 or hq.shape[2] != 3:
        raise ValueError(f"degrade expects an (h, w, 3) float32 image, got {hq.shape} {hq.dtype}")
    img = hq
    if params.flip:
        img = np.ascontiguousarray(img[:, ::-1])
    if params.gray:
        img = to_gray3(img)
    h, w = img.shape[:2]
    if kernel is None:
        kernel = params.kernel.build(kernel_size)
    # A gray image has three equal channels: blur and shrink one (same numbers, a third of the work).
    lq = blur(img[:, :, 0] if params.gray else img, kernel, fast=fast)
    lq_h, lq_w = params.lq_size(h, w)
    lq = cv2.resize(lq, (lq_w, lq_h), interpolation=cv2.INTER_LINEAR)
    if lq.ndim == 2:
        lq = np.repeat(lq.reshape(lq_h, lq_w, 1), 3, axis=2)
    if params.noise_sigma is not None:
        if params.noise is None:
            raise ValueError("params carry no noise field: sample them with draw_noise=True for the CPU executor")
        field = params.noise
        # The field is laid out for the authors' BGR array; reversed it adds the same number to the same
        # colour, which keeps a seeded run equal to theirs (statistically it changes nothing).
        field = np.repeat(field[:, :, None], 3, axis=2) if field.ndim == 2 else field[:, :, ::-1]
        lq = np.clip(lq + field * params.noise_sigma / 255.0, 0, 1)
    if params.jpeg_quality is not None:
        lq = jpeg_roundtrip(lq, params.jpeg_quality)
    lq = np.clip(np.round(lq * 255.0), 0, 255) / 255.0
    lq = cv2.resize(lq.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return lq, img


# ----------------------------------------------------------------------------------------------------
# Keyed random streams and the test-time degradation.

TRAIN_STREAM = 1  # training pairs: (seed, epoch, index)
TEST_STREAM = 2   # test-time degradation: (seed, index)
DEVICE_STREAM = 3  # device executor in training: (seed, step)


def keyed_rngs(*key):
    """A (random.Random, np.random.Generator) pair that depends only on the non-negative integers `key`."""
    seq = np.random.SeedSequence([int(k) % (1 << 64) for k in key])
    words = seq.generate_state(2, dtype=np.uint64)
    py_rng = random.Random((int(words[0]) << 64) | int(words[1]))
    return py_rng, np.random.Generator(np.random.PCG64(seq))


def as_float_image(image):
    """RGB HWC uint8 (0..255) or float (0..1) -> contiguous float32 in [0, 1]."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape (h, w, 3), got {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    return np.ascontiguousarray(np.clip(image, 0, 1), dtype=np.float32)


class DegradedFace(NamedTuple):
    """One sharp face after the test-time degradation, in the forms its users need."""
    network_input: np.ndarray  # float32 (3, S, S) RGB in [-1, 1]: the degraded face as the generator is fed it
    target: np.ndarray         # uint8 (S, S, 3) RGB: the ground truth PSNR/SSIM compare with (gray when the LQ is)
    degraded: np.ndarray       # uint8 (S, S, 3) RGB: the degraded face rounded to 8 bit (saved, shown, and what
    # a restorer of image files (--degrade) is given)


def degrade_test_face(sharp, seed, index, degradation=None):
    """The test-time degradation, the one entry of validation, test.py and --degrade.

    sharp: RGB uint8 (S, S, 3) face at the model's size. seed, index: the face's key — its degradation
    depends on (seed, index, degradation) alone, whatever the batch, the worker or the device.
    degradation: a DegradationConfig or a DegradationSampler (None: the default config).

    The training pipeline's draws are made from the stream keyed (TEST_STREAM, seed, index), the flip
    included (so the stream stays that of training), but the flip is not applied: results line up with
    the files, and a mirrored face is as likely as the original, so the distribution is unchanged. The
    target is the face after the gray step the LQ went through, so PSNR compares like with like.
    """
    sampler = degradation if isinstance(degradation, DegradationSampler) else DegradationSampler(degradation)
    hq = as_float_image(sharp)
    params = sampler.sample(hq.shape[:2], *keyed_rngs(TEST_STREAM, seed, index))
    params.flip = False
    lq, gt = degrade(hq, params, sampler.kernel_size)
    return DegradedFace(to_network(lq), to_images(to_network(gt)), to_images(to_network(lq)))
