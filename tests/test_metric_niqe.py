"""NIQE (metric.niqe) against BasicSR 1.4.2's `calculate_niqe` (../shared/fixtures/niqe, read its README):
every intermediate of two images bit for bit, all 21 reference values, the edge cases where BasicSR raises.
Without the fixtures: the resize against MATLAB's imresize definition, the block order, the input
conventions and the undefined cases."""
import hashlib
import json
import math

import cv2
import numpy as np
import pytest

from conftest import ROOT, SHARED, need_shared
from metric.niqe import (BLOCK_SIZE, NIQEUndefined, halve, luma_y, niqe, niqe_of_plane, normalised_coefficients,
                         plane_features, pristine_distance, pristine_model, scale_features, summarize_niqe)
from utils.errors import UserError

# Tolerances against the fixture values. The 1e-6 the issue asks for holds only where the float32 resize
# is reproduced bit for bit, which it cannot be across CPUs: BasicSR sums the bicubic taps with torch.mv,
# whose order follows the CPU's BLAS kernel. Unmodified BasicSR with the fixture's own torch 2.13.0+cpu
# wheel, run on this project's CPU, differs from the fixture by up to 3.9e-4 relative (012712@512), and
# our port equals that run bit for bit. Every other step is checked bit for bit in
# test_every_intermediate_matches_basicsr, where the fixture's resized plane is given.
REAL_RTOL = 5e-4        # measured on the 18: largest 3.87e-4 (celeba_hq/012712.jpg@512), median 1.7e-5
NOISE_RTOL = 1e-5       # measured: 1.35e-6 (splitmix noise #crop8), 2.9e-9 (96x192 edge case)
GRADIENT_RTOL = 1e-2    # the fixture README's "1%": ill-conditioned (float64 moves it by 2.03); measured 5.1e-4
PARAMS_SHA256 = "2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296"   # metric/NIQE_PARAMS.md
DEBUG_IMAGES = {"lq_real_00000052__": "lq_real/00000052_lq.png", "wild_2008_002079__": "wild/2008_002079.jpg"}
INTER_AREA_512 = "cv2.resize(img, (512, 512), interpolation=cv2.INTER_AREA)"


def splitmix_noise(h, w):
    """The fixture README's synthetic noise: SplitMix64 from seed 0, top 8 bits, C order over (y, x, c)."""
    z = np.arange(1, h * w * 3 + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(56)).astype(np.uint8).reshape(h, w, 3)


def gradient(h=300, w=400):
    """The fixture README's synthetic gradient (B, G, R ramps, integer floor division)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(255 * x) // (w - 1), (255 * y) // (h - 1), (255 * (x + y)) // (w + h - 2)], -1).astype(np.uint8)


SYNTHETIC = {"gradient": gradient, "splitmix_noise": lambda: splitmix_noise(300, 400)}


def _reference():
    with open(need_shared("fixtures", "niqe", "niqe_ref.json")) as f:
        return json.load(f)


def _entry_ids():
    path = SHARED / "fixtures" / "niqe" / "niqe_ref.json"
    if not path.exists():
        return ["(fixtures absent)"]
    with open(path) as f:
        return [entry["id"] for entry in json.load(f)["entries"]]


def _bgr_input(entry):
    """The BGR uint8 array the fixture handed to calculate_niqe, checked against its sha256."""
    source = entry["source"]
    if source.startswith("synthetic:"):
        image = SYNTHETIC[source.split(":", 1)[1]]()
    else:
        image = cv2.imread(str(need_shared("data", source)), cv2.IMREAD_COLOR)
        if entry["preprocess"] == INTER_AREA_512:
            image = cv2.resize(image, (512, 512), interpolation=cv2.INTER_AREA)
        else:
            assert entry["preprocess"] == "none", f"unknown preprocessing {entry['preprocess']!r}"
    digest = hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()
    assert digest == entry["bgr_sha256"], f"{entry['id']}: decoded input differs from the fixture's (OpenCV?)"
    return image


def _ulps(a, b):
    """|a - b| in units of float32 spacing at b, elementwise."""
    return np.abs(a.astype(np.float64) - b.astype(np.float64)) / np.spacing(np.abs(b).astype(np.float32))


# ---- against BasicSR's numbers (../shared) ----------------------------------------------------------------

@pytest.mark.parametrize("entry_id", _entry_ids())
def test_value_matches_basicsr(entry_id):
    entry = next(e for e in _reference()["entries"] if e["id"] == entry_id)
    value = niqe(_bgr_input(entry), crop_border=entry["crop_border"], convert_to=entry["convert_to"])
    tolerance = (GRADIENT_RTOL if "gradient" in entry["source"] else
                 NOISE_RTOL if entry["source"].startswith("synthetic:") else REAL_RTOL)
    assert math.isfinite(value)
    assert value == pytest.approx(entry["niqe"], rel=tolerance), \
        f"{entry_id}: {value!r} vs BasicSR {entry['niqe']!r} ({value / entry['niqe'] - 1:+.2e} relative)"


@pytest.mark.parametrize("prefix", sorted(DEBUG_IMAGES))
def test_every_intermediate_matches_basicsr(prefix):
    """Y, the coefficients, the per-block features at both scales (rows in BasicSR's order) and the distance
    equal BasicSR's bit for bit (the distance to float64 rounding); the resize to within a few ulp."""
    with np.load(need_shared("fixtures", "niqe", "niqe_debug.npz")) as data:
        ref = {key[len(prefix):]: data[key] for key in data.files if key.startswith(prefix)}
    image = cv2.imread(str(need_shared("data", DEBUG_IMAGES[prefix])), cv2.IMREAD_COLOR)
    plane = luma_y(image).round()
    np.testing.assert_array_equal(plane, ref["y"])
    window = pristine_model()[2]
    h, w = ref["mscn_s1"].shape
    coefficients = normalised_coefficients(plane[:h, :w], window)
    np.testing.assert_array_equal(coefficients, ref["mscn_s1"])
    np.testing.assert_array_equal(scale_features(coefficients, BLOCK_SIZE), ref["feat_s1"])

    half = halve(plane[:h, :w] / np.float32(255.0)) * np.float32(255.0)
    assert half.dtype == np.float32 and half.shape == ref["img_s2"].shape
    assert _ulps(half, ref["img_s2"]).max() <= 8          # measured 6 and 4: the CPU's summation order
    coefficients = normalised_coefficients(ref["img_s2"], window)   # from here on the fixture's resize
    np.testing.assert_array_equal(coefficients, ref["mscn_s2"])
    np.testing.assert_array_equal(scale_features(coefficients, BLOCK_SIZE // 2), ref["feat_s2"])
    assert pristine_distance(ref["distparam"]) == pytest.approx(float(ref["niqe"]), rel=1e-12)


def test_edge_cases_match_basicsr():
    """Where BasicSR raises (a torch RuntimeError, numpy's LinAlgError), NIQE is undefined; elsewhere equal."""
    cases = _reference()["edge_cases"]
    assert cases
    for name, case in cases.items():
        h, w, _ = case["shape"]
        image = np.full((h, w, 3), 128, np.uint8) if name.startswith("constant") else splitmix_noise(h, w)
        if "raises" in case:
            with pytest.raises(NIQEUndefined):
                niqe(image)
        else:
            assert niqe(image) == pytest.approx(case["value"], rel=NOISE_RTOL), name


# ---- without ../shared ------------------------------------------------------------------------------------

def test_pristine_model_is_basicsr_file():
    path = ROOT / "metric" / "niqe_pris_params.npz"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == PARAMS_SHA256
    mu, cov, window = pristine_model()
    assert mu.shape == (1, 36) and cov.shape == (36, 36) and window.shape == (7, 7)
    np.testing.assert_array_equal(cov, cov.T)
    assert np.linalg.eigvalsh(cov).min() > 0
    assert window.sum() == pytest.approx(1.0, abs=1e-15)


def _matlab_half_matrix(n):
    """(n/2, n) float64 matrix of MATLAB's imresize(., 0.5) along one axis, built from its definition: cubic
    kernel (a = -0.5) widened by 2 for antialiasing, output x at input u = 2x - 0.5 (1-based), symmetric
    (edge-repeating) borders, rows normalised to sum 1."""
    def cubic(d):
        d = np.abs(d)
        return np.where(d <= 1, 1.5 * d ** 3 - 2.5 * d ** 2 + 1,
                        np.where(d <= 2, -0.5 * d ** 3 + 2.5 * d ** 2 - 4 * d + 2, 0.0))
    scale, width = 0.5, 4 / 0.5
    u = np.arange(1, n // 2 + 1) / scale + 0.5 * (1 - 1 / scale)
    index = np.floor(u - width / 2)[:, None] + np.arange(int(math.ceil(width)) + 2)[None, :]
    weight = scale * cubic((u[:, None] - index) * scale)
    weight /= weight.sum(axis=1, keepdims=True)
    j = index.astype(int) - 1
    j = np.where(j < 0, -j - 1, np.where(j >= n, 2 * n - 1 - j, j))
    matrix = np.zeros((n // 2, n))
    np.add.at(matrix, (np.repeat(np.arange(n // 2), index.shape[1]), j.ravel()), weight.ravel())
    return matrix


def test_halve_is_matlab_imresize():
    rng = np.random.default_rng(0)
    img = rng.integers(16, 236, (96, 144)).astype(np.float32) / np.float32(255.0)
    exact = _matlab_half_matrix(96) @ img.astype(np.float64) @ _matlab_half_matrix(144).T
    ours = halve(img)
    assert ours.dtype == np.float32 and ours.shape == (48, 72)
    assert _ulps(ours, exact.astype(np.float32)).max() <= 4
    flat = halve(np.full((96, 96), 0.5, np.float32))
    np.testing.assert_allclose(flat, 0.5, rtol=2e-7)


def test_blocks_are_visited_column_by_column():
    """Feature row k is block (k mod n_h, k div n_h): the order of BasicSR's loops (width index outer)."""
    coefficients = normalised_coefficients(np.round(luma_y(splitmix_noise(192, 288))), pristine_model()[2])
    rows = scale_features(coefficients, BLOCK_SIZE)
    nh, nw = 2, 3
    assert rows.shape == (nh * nw, 18)
    for iw in range(nw):
        for ih in range(nh):
            block = coefficients[ih * 96:(ih + 1) * 96, iw * 96:(iw + 1) * 96]
            np.testing.assert_array_equal(rows[iw * nh + ih], scale_features(block, BLOCK_SIZE)[0])


def test_generated_image_is_finite_and_repeatable():
    image = splitmix_noise(192, 288)
    value = niqe(image)
    assert math.isfinite(value) and value > 0
    assert niqe(image) == value
    # The first step is a cast to float32, as in BasicSR: float copies give the same number.
    assert niqe(image.astype(np.float32)) == value and niqe(image.astype(np.float64)) == value
    # An HW plane is scored as it is: the rounded Y plane gives the same number.
    plane = np.round(luma_y(image))
    assert niqe_of_plane(plane) == value and niqe(plane) == value and niqe(plane[..., None]) == value
    gray = niqe(image, convert_to="gray")
    assert math.isfinite(gray) and gray != value
    assert niqe(image, crop_border=8) != value


@pytest.mark.parametrize("shape", [(64, 64), (95, 200), (200, 95), (96, 96), (191, 191)])
def test_too_small_images_are_undefined_with_one_line(shape):
    with pytest.raises(NIQEUndefined) as err:
        niqe(splitmix_noise(*shape))
    assert isinstance(err.value, UserError)   # an entry script prints it as one line if nobody catches it
    message = str(err.value)
    assert "\n" not in message and f"{shape[0]}x{shape[1]}" in message and "two 96x96 blocks" in message


def test_crop_border_can_leave_too_little():
    image = splitmix_noise(96, 192)
    assert math.isfinite(niqe(image))
    with pytest.raises(NIQEUndefined, match="94x190"):
        niqe(image, crop_border=1)


def test_flat_blocks_are_left_out_and_a_flat_image_is_undefined():
    with pytest.raises(NIQEUndefined, match="too flat"):
        niqe(np.full((192, 192, 3), 128, np.uint8))
    # Two flat blocks of four (flat a few pixels beyond them, so that no texture leaks in through the 7x7
    # window): their feature rows are NaN and left out of the covariance (BasicSR's nancov).
    image = splitmix_noise(192, 192)
    image[:, :100] = 128
    rows = plane_features(np.round(luma_y(image)))
    assert np.isnan(rows).any(axis=1).tolist() == [True, True, False, False]
    assert math.isfinite(niqe(image))
    # Two flat blocks of three: one textured block is not enough for a covariance.
    image = splitmix_noise(96, 288)
    image[:, 88:] = 128
    with pytest.raises(NIQEUndefined, match="only 1 of its 3 blocks"):
        niqe(image)


def test_bad_arguments():
    image = splitmix_noise(96, 192)
    with pytest.raises(ValueError, match="convert_to"):
        niqe(image, convert_to="rgb")
    with pytest.raises(ValueError, match="shape"):
        niqe(np.zeros((96, 192, 4), np.uint8))
    with pytest.raises(ValueError, match="crop_border"):
        niqe(image, crop_border=-1)


def test_summary_leaves_undefined_images_out_and_counts_them():
    summary = summarize_niqe([3.0, None, 5.0, math.nan])
    assert (summary.mean, summary.count, summary.undefined) == (4.0, 4, 2)
    assert "2 too small or too flat" in str(summary) and "over 2 images" in str(summary)
    assert summarize_niqe([4.5]).undefined == 0 and math.isnan(summarize_niqe([None]).mean)
