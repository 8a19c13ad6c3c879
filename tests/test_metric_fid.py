"""Frechet distance against analytic answers and pytorch-fid's values; statistics files; sample counts."""
import numpy as np
import pytest

import metric.fid as fid
from conftest import need_shared
from metric.fid import (FewSamplesWarning, check_sample_count, compute_statistics, frechet_distance,
                        load_statistics, save_statistics)
from utils.errors import UserError


@pytest.fixture(scope="module")
def ref():
    with np.load(need_shared("fixtures", "fid_inception", "fid_inception_ref.npz")) as data:
        return {k: data[k] for k in data.files if k.startswith("fid_")}


def test_equal_covariances_give_squared_mean_distance():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(16, 16))
    sigma = a @ a.T + 0.1 * np.eye(16)
    mu1, mu2 = rng.normal(size=16), rng.normal(size=16)
    assert frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(np.sum((mu1 - mu2) ** 2), abs=1e-9)
    assert frechet_distance(mu1, sigma, mu1, sigma) == pytest.approx(0.0, abs=1e-9)


def test_fixture_equal_covariances(ref):
    value = frechet_distance(ref["fid_a_mu1"], ref["fid_a_sigma1"], ref["fid_a_mu2"], ref["fid_a_sigma1"])
    assert value == pytest.approx(float(ref["fid_c_analytic"]), abs=1e-9)
    assert value == pytest.approx(float(ref["fid_c_fid"]), abs=1e-9)


@pytest.mark.parametrize("case", ["a", "b"])
def test_fixture_cases_match_pytorch_fid(ref, case):
    with pytest.warns(FewSamplesWarning):
        mu1, sigma1 = compute_statistics(ref[f"fid_{case}_x1"])
        mu2, sigma2 = compute_statistics(ref[f"fid_{case}_x2"])
    np.testing.assert_allclose(mu1, ref[f"fid_{case}_mu1"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(sigma2, ref[f"fid_{case}_sigma2"], rtol=0, atol=1e-12)
    # (b) is near-singular (rank 99 of 128): sqrtm's rounding there is ~1e-7 absolute.
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(float(ref[f"fid_{case}_fid"]), abs=1e-6)
    forced = frechet_distance(mu1, sigma1, mu2, sigma2, force_offset=True)
    assert forced == pytest.approx(float(ref[f"fid_{case}_fid_forced_eps"]), abs=1e-6)


def test_non_finite_root_takes_the_offset_branch(ref, monkeypatch):
    calls = []
    real_sqrtm = fid._sqrtm

    def failing_first(matrix):
        calls.append(matrix)
        return np.full_like(matrix, np.nan) if len(calls) == 1 else real_sqrtm(matrix)

    monkeypatch.setattr(fid, "_sqrtm", failing_first)
    args = (ref["fid_b_mu1"], ref["fid_b_sigma1"], ref["fid_b_mu2"], ref["fid_b_sigma2"])
    assert frechet_distance(*args) == pytest.approx(float(ref["fid_b_fid_forced_eps"]), abs=1e-6)
    assert len(calls) == 2
    offset = np.eye(128) * 1e-6
    np.testing.assert_array_equal(calls[1], (args[1] + offset) @ (args[3] + offset))


def test_large_imaginary_component_is_an_error(monkeypatch):
    monkeypatch.setattr(fid, "_sqrtm", lambda m: np.eye(m.shape[0]) * (1 + 0.01j))
    with pytest.raises(ValueError, match="imaginary"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(3))
    monkeypatch.setattr(fid, "_sqrtm", lambda m: np.eye(m.shape[0]) * (1 + 1e-5j))
    assert frechet_distance(np.zeros(3), 2 * np.eye(3), np.zeros(3), 2 * np.eye(3)) == pytest.approx(6.0)


def test_statistics_roundtrip_and_pytorch_fid_files(tmp_path):
    rng = np.random.default_rng(0)
    mu, sigma = rng.normal(size=5), np.cov(rng.normal(size=(20, 5)), rowvar=False)
    path = tmp_path / "stats" / "ref.npz"
    save_statistics(str(path), mu, sigma)
    loaded_mu, loaded_sigma = load_statistics(str(path))
    np.testing.assert_array_equal(loaded_mu, mu)
    np.testing.assert_array_equal(loaded_sigma, sigma)
    with np.load(path) as data:  # what pytorch-fid reads: f['mu'], f['sigma']
        assert sorted(data.files) == ["mu", "sigma"]
    # pytorch-fid writes float32 or float64 arrays with np.savez_compressed(path, mu=..., sigma=...).
    np.savez_compressed(tmp_path / "theirs.npz", mu=mu.astype(np.float32), sigma=sigma.astype(np.float32))
    their_mu, _ = load_statistics(str(tmp_path / "theirs.npz"))
    assert their_mu.dtype == np.float64


def test_statistics_file_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_statistics(str(tmp_path / "missing.npz"))
    np.savez(tmp_path / "wrong.npz", mean=np.zeros(3))
    with pytest.raises(UserError, match="'mu' and 'sigma'"):
        load_statistics(str(tmp_path / "wrong.npz"))
    (tmp_path / "text.npz").write_text("not numpy")
    with pytest.raises(UserError, match="not a readable"):
        load_statistics(str(tmp_path / "text.npz"))
    np.save(tmp_path / "array.npy", np.zeros(3))
    with pytest.raises(UserError, match="not FID statistics"):
        load_statistics(str(tmp_path / "array.npy"))
    np.savez(tmp_path / "shapes.npz", mu=np.zeros(3), sigma=np.eye(4))
    with pytest.raises(UserError, match="do not fit"):
        load_statistics(str(tmp_path / "shapes.npz"))


def test_sample_count_rules():
    with pytest.raises(UserError, match="at least 2"):
        check_sample_count(1)
    with pytest.raises(UserError, match="FID needs at least 2 images to estimate a covariance, got 1"):
        compute_statistics(np.zeros((1, 4)))
    with pytest.warns(FewSamplesWarning, match="2048"):
        check_sample_count(2047)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_sample_count(2048)


def test_mismatched_statistics_are_a_user_error():
    with pytest.raises(UserError, match="do not match"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
