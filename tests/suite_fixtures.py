"""Comparing with ../shared/fixtures/upstream_suite (read its README): large float maps are stored in
part (three 32x32 windows, a subsample and the float64 means over H, W), uint8 results follow the
README's rule for a single network followed by rounding."""
import hashlib

import numpy as np

SUITE = ("fixtures", "upstream_suite")

# README "Observed float32 noise": allclose(rtol=1e-4, atol=1e-4 * max|ref|) per array (group).
FLOAT_RTOL = 1e-4
# uint8 outputs of one network + rounding: a max difference of 4 on at most 1e-3 of the elements, the
# rest identical.
UINT8_MAX_DIFF = 4
UINT8_MAX_FRACTION = 1e-3


def decoded_sha256(image):
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


def stored_parts(full, sub):
    """The parts the fixture stores of an array (..., H, W) (README "Conventions")."""
    h, w = full.shape[-2:]
    r, c = (h - 32) // 2, (w - 32) // 2
    return {"win_tl": full[..., :32, :32], "win_c": full[..., r:r + 32, c:c + 32],
            "win_br": full[..., h - 32:, w - 32:], f"sub{sub}": full[..., 1::sub, 2::sub],
            "mean_hw": full.astype(np.float64).mean(axis=(-2, -1))}


def compare_stored_map(full, npz, name, sub):
    """Check `full` against the stored parts `name/*` with the README's tolerance (atol relative to
    the largest stored value of the group); returns max |diff| / max |ref| over the group."""
    parts = stored_parts(full, sub)
    scale = max(float(np.abs(npz[f"{name}/{key}"]).max()) for key in parts if key != "mean_hw")
    worst = 0.0
    for key, ours in parts.items():
        ref = npz[f"{name}/{key}"]
        assert ours.shape == ref.shape, f"{name}/{key}: shape {ours.shape} != {ref.shape}"
        np.testing.assert_allclose(ours, ref, rtol=FLOAT_RTOL, atol=FLOAT_RTOL * scale, err_msg=f"{name}/{key}")
        worst = max(worst, float(np.abs(ours - ref).max()) / scale)
    return worst


def compare_uint8(ours, ref, what):
    """The README's uint8 rule; returns (number of differing elements, max difference)."""
    assert ours is not None, f"{what}: no output"
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != {ref.shape}"
    diff = np.abs(ours.astype(np.int16) - ref.astype(np.int16))
    differing = int((diff > 0).sum())
    assert diff.max() <= UINT8_MAX_DIFF, f"{what}: max difference {diff.max()}"
    assert differing <= UINT8_MAX_FRACTION * diff.size, f"{what}: {differing} of {diff.size} elements differ"
    return differing, int(diff.max())
