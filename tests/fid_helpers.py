"""What the FID tests share: the Inception fixture files (../shared/fixtures/fid_inception) and a fast
stand-in for FID's matrix square root in tests of the evaluation pipeline.

scipy's sqrtm of a 2048x2048 product takes minutes on 2 shared cores. A test set of a few faces has
covariances of rank n - 1, so the product sigma1 @ sigma2 maps everything into a subspace of that
dimension; its square root there is a sqrtm of an r x r matrix, and its trace (all FID uses) is the same
number. The stand-in refuses a product that is not of low rank. The real sqrtm is tested against
pytorch-fid's and BasicSR's values in test_metric_fid.py and test_fid_stats.py.
"""
import numpy as np
import pytest
from conftest import need_shared
from scipy import linalg

SIZES = (256, 299, 64)  # input sides of the fixture's images


@pytest.fixture(scope="module")
def inception_weights():
    """pytorch-fid's Inception with random weights, in the real file's format."""
    return str(need_shared("fixtures", "fid_inception", "pt_inception_random.pth"))


@pytest.fixture(scope="module")
def inception_ref():
    """The fixture's inputs and pytorch-fid's outputs for them (the fid_* Fréchet cases left out)."""
    with np.load(need_shared("fixtures", "fid_inception", "fid_inception_ref.npz")) as data:
        return {k: data[k] for k in data.files if not k.startswith("fid_")}


def low_rank_sqrtm(matrix, probes=64):
    rng = np.random.default_rng(0)
    u, s, _ = np.linalg.svd(matrix @ rng.standard_normal((matrix.shape[0], probes)), full_matrices=False)
    basis = u[:, s > s[0] * 1e-9]
    if basis.shape[1] >= probes // 2:
        raise AssertionError(f"low_rank_sqrtm: the product has rank >= {basis.shape[1]}; use the real sqrtm")
    outside = matrix - basis @ (basis.T @ matrix)
    assert np.abs(outside).max() <= 1e-9 * np.abs(matrix).max(), "the product's range is not in the probed subspace"
    return basis @ linalg.sqrtm(basis.T @ matrix @ basis) @ basis.T


@pytest.fixture
def fast_sqrtm(monkeypatch):
    import metric.fid

    monkeypatch.setattr(metric.fid, "_sqrtm", low_rank_sqrtm)
