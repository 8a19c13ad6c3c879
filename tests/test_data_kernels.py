"""The CPU degradation against the authors' outputs (../shared/fixtures/upstream_gpen/degrade_ref.npz)."""
import json
import random

import cv2
import numpy as np
import pytest
from conftest import need_shared

from data_loader import degradations as D
from utils.config import DegradationConfig
from utils.errors import UserError


@pytest.fixture(scope="module")
def ref():
    data = np.load(need_shared("fixtures", "upstream_gpen", "degrade_ref.npz"))
    return data, json.loads(str(data["args_json"]))


def _rebuild(a):
    fn = a.get("fn")
    if fn == "bivariate_Gaussian":
        return D.bivariate_gaussian(a["kernel_size"], a["sig_x"], a["sig_y"], a["theta"], a["isotropic"])
    if fn == "bivariate_generalized_Gaussian":
        return D.bivariate_generalized_gaussian(a["kernel_size"], a["sig_x"], a["sig_y"], a["theta"], a["beta"],
                                                a["isotropic"])
    if fn == "bivariate_plateau":
        return D.bivariate_plateau(a["kernel_size"], a["sig_x"], a["sig_y"], a["theta"], a["beta"], a["isotropic"])
    if fn == "circular_lowpass_kernel":
        return D.circular_lowpass_kernel(a["cutoff"], a["kernel_size"], a["pad_to"])
    if fn == "sigma_matrix2":
        return D.sigma_matrix2(a["sig_x"], a["sig_y"], a["theta"])
    if fn == "random_mixed_kernels":
        assert a["noise_range"] is None
        return D.random_mixed_kernels(a["kernel_list"], a["kernel_prob"], a["kernel_size"], a["sigma_x_range"],
                                      a["sigma_y_range"], a["rotation_range"],
                                      py_rng=random.Random(a["seed_python_random"]),
                                      np_rng=np.random.RandomState(a["seed_numpy"]))
    return None


def test_kernels_equal_the_authors(ref):
    data, args = ref
    checked = []
    for key, a in args.items():
        ours = _rebuild(a)
        if ours is None:
            continue
        assert ours.shape == data[key].shape, key
        np.testing.assert_allclose(ours, data[key], rtol=0, atol=1e-6, err_msg=key)
        checked.append(key)
    families = {k.split("/")[1] if k.startswith("kernel/") else k.split("/")[0] for k in checked}
    assert families == {"iso", "aniso", "generalized", "plateau", "circular_lowpass", "sigma_matrix2", "random_mixed"}
    assert sum(k.startswith("kernel/random_mixed/") for k in checked) == 4


def test_random_mixed_kernels_replays_the_global_rngs():
    """Default RNGs are the globals, like the authors' code: seeding them replays a private stream."""
    args = (["iso", "aniso"], [0.5, 0.5], 41, [0.1, 10], [0.1, 10], [-np.pi, np.pi])
    private = D.random_mixed_kernels(*args, py_rng=random.Random(11), np_rng=np.random.RandomState(11))
    random.seed(11)
    np.random.seed(11)
    np.testing.assert_array_equal(D.random_mixed_kernels(*args), private)


def test_degrade_process_replayed_exactly(ref):
    """One full GFPGAN_degradation().degrade_process(img) call after random.seed(7), np.random.seed(7),
    on a BGR image; we run on RGB and compare in their channel order."""
    data, args = ref
    seed = args["degrade_process"]["seed_numpy"]
    bgr = data["degrade_process/input"]
    sampler = D.DegradationSampler(DegradationConfig())
    params = sampler.sample(bgr.shape[:2], random.Random(seed), np.random.RandomState(seed))
    for fast in (False, True):
        lq, gt = D.degrade(np.ascontiguousarray(bgr[:, :, ::-1]), params, fast=fast)
        np.testing.assert_array_equal(gt[:, :, ::-1], data["degrade_process/img_gt"])
        # Only float rounding inside cv2.resize separates the LQs (JPEG bytes depend on the OpenCV build;
        # this one gives the fixture's).
        np.testing.assert_allclose(lq[:, :, ::-1], data["degrade_process/img_lq"], rtol=0, atol=1e-6)


def test_opencv_jpeg_roundtrip_matches_fixture(ref):
    data, _ = ref
    rgb = np.ascontiguousarray(data["jpeg/input"][:, :, ::-1])
    for q in (30, 60, 90):
        ours = D.jpeg_roundtrip(rgb, q)
        np.testing.assert_array_equal(ours[:, :, ::-1], data[f"jpeg/q{q}"],
                                      err_msg="JPEG bytes depend on the OpenCV/libjpeg build")


@pytest.mark.parametrize("spec", [
    D.KernelSpec("iso", 0.15, 0.15, 0.0),
    D.KernelSpec("iso", 9.5, 9.5, 0.0),
    D.KernelSpec("aniso", 0.4, 1.2, 0.3),
    D.KernelSpec("aniso", 8.0, 0.3, 0.8),
    D.KernelSpec("generalized_aniso", 3.0, 1.0, -1.0, 0.6),
    D.KernelSpec("plateau_iso", 2.0, 2.0, 0.0, 1.5),
])
def test_fast_blur_equals_filter2d(spec):
    rng = np.random.default_rng(0)
    image = rng.random((70, 90, 3), dtype=np.float32)
    kernel = spec.build(41)
    plain = cv2.filter2D(image, -1, kernel)
    fast = D.blur(image, kernel, fast=True)
    assert fast.shape == plain.shape and fast.dtype == np.float32
    np.testing.assert_allclose(fast, plain, rtol=0, atol=2e-6)
    np.testing.assert_allclose(D.blur(image[:, :, 1], kernel), plain[:, :, 1], rtol=0, atol=2e-6)


def test_sampler_draws_within_config_ranges():
    cfg = DegradationConfig(kernel_list=["iso", "aniso", "generalized_iso", "plateau_aniso"],
                            kernel_prob=[1, 1, 1, 1], downsample_range=[2.0, 3.0], noise_range=[5.0, 6.0],
                            jpeg_range=[70, 72], gray_prob=1.0, flip_prob=0.0)
    sampler = D.DegradationSampler(cfg)
    families = set()
    for i in range(60):
        p = sampler.sample((64, 48), *D.keyed_rngs(9, i))
        families.add(p.kernel.family)
        assert p.gray and not p.flip
        assert 2.0 <= p.scale <= 3.0 and 5.0 <= p.noise_sigma <= 6.0 and 70 <= p.jpeg_quality < 72
        assert p.noise.shape == (int(64 // p.scale), int(48 // p.scale), 3) and p.noise.dtype == np.float32
        assert 0.1 <= p.kernel.sig_x <= 10 and np.isclose(p.kernel.build(41).sum(), 1.0)
        if p.kernel.family == "generalized_iso":
            assert 0.5 <= p.kernel.beta <= 4.0
    assert families == set(cfg.kernel_list)


def test_steps_switched_off_with_empty_ranges():
    off = DegradationConfig(noise_range=[], jpeg_range=[], gray_prob=0.0, downsample_range=[2.0, 4.0])
    p = D.DegradationSampler(off).sample((32, 32), *D.keyed_rngs(1))
    assert p.noise_sigma is None and p.noise is None and p.jpeg_quality is None
    image = np.random.default_rng(0).random((32, 32, 3), dtype=np.float32)
    lq, hq = D.degrade(image, p, fast=False)
    # What is left is the authors' blur -> bilinear downscale -> 8 bit -> bilinear back, built here from
    # OpenCV calls and the sampled kernel (no noise added, no JPEG round trip).
    flipped = np.ascontiguousarray(image[:, ::-1]) if p.flip else image
    small = cv2.resize(cv2.filter2D(flipped, -1, p.kernel.build(41)), p.lq_size(32, 32)[::-1],
                       interpolation=cv2.INTER_LINEAR)
    expected = cv2.resize((np.clip(np.round(small * 255.0), 0, 255) / 255.0).astype(np.float32), (32, 32),
                          interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(lq, expected)
    np.testing.assert_array_equal(hq, flipped)
    # The same draw with the noise and JPEG steps on gives another LQ.
    on = D.DegradationSampler(DegradationConfig(gray_prob=0.0, downsample_range=[2.0, 4.0]))
    assert not np.array_equal(D.degrade(image, on.sample((32, 32), *D.keyed_rngs(1)), fast=False)[0], lq)


@pytest.mark.parametrize("override,key", [
    ({"kernel_list": ["iso", "box"], "kernel_prob": [0.5, 0.5]}, "kernel_list"),
    ({"kernel_prob": [1.0]}, "kernel_prob"),
    ({"kernel_size": 40}, "kernel_size"),
    ({"downsample_range": [8.0, 0.8]}, "downsample_range"),
    ({"jpeg_range": [60, 120]}, "jpeg_range"),
    ({"gray_prob": 1.5}, "gray_prob"),
])
def test_bad_degradation_config_names_the_key(override, key):
    with pytest.raises(UserError, match=f"degradation.{key}"):
        D.DegradationSampler(DegradationConfig(**override))
