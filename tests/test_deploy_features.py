"""The FID feature function (deploy/features.py): pytorch-fid's Inception served by the checked predictor,
against pytorch-fid's outputs (../shared/fixtures/fid_inception, random weights) and against dygraph.

Tolerances: the fixture README's end-to-end bound for the network, 3e-3 absolute; predictor vs dygraph
within deploy.checked.TOLERANCE of the largest value (the one policy of every checked network).
"""
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from fid_helpers import SIZES, inception_ref, inception_weights  # noqa: F401  (fixtures)

from deploy.checked import TOLERANCE, agreement_gap
from deploy.features import inception_features
from metric.fid import extract_features
from utils.errors import UserError

@pytest.fixture(scope="module")
def dygraph(inception_weights):
    return inception_features(inception_weights, backend="dygraph")


@pytest.fixture(scope="module")
def predictor(inception_weights):
    return inception_features(inception_weights, backend="predictor")  # strict: a disagreement raises


@pytest.mark.parametrize("size", SIZES)
def test_predictor_matches_pytorch_fid_and_dygraph(predictor, dygraph, inception_ref, size):
    assert predictor.backend == "predictor" and dygraph.backend == "dygraph"
    images = inception_ref[f"images_uint8_{size}"]
    fast, reference = extract_features(predictor, images, 3), extract_features(dygraph, images, 3)
    assert fast.shape == (3, 2048) and fast.dtype == np.float64 and np.isfinite(fast).all()
    np.testing.assert_allclose(fast, inception_ref[f"pool3_{size}"], rtol=0, atol=3e-3)
    np.testing.assert_allclose(reference, inception_ref[f"pool3_{size}"], rtol=0, atol=3e-3)
    assert agreement_gap(fast, reference) <= TOLERANCE
    # Every batch of the predictor is checked, not only the first: still the predictor afterwards.
    np.testing.assert_array_equal(extract_features(predictor, images, 1)[:1], extract_features(predictor, images[:1], 1))
    assert predictor.backend == "predictor"


def test_running_the_predictor_leaves_dygraph_results_unchanged(inception_weights, dygraph, inception_ref):
    # A oneDNN run used to leave MKL at one thread for the caller, which changes dygraph's last bits.
    images = inception_ref["images_uint8_256"]
    before = extract_features(dygraph, images, 3)
    extract_features(inception_features(inception_weights, backend="predictor"), images, 3)
    np.testing.assert_array_equal(extract_features(dygraph, images, 3), before)


def test_uint8_and_unit_float_inputs_give_the_same_features(dygraph, inception_ref):
    # input_256 is exactly uint8 / 255: the two input conventions of extract_features agree.
    np.testing.assert_array_equal(extract_features(dygraph, inception_ref["input_256"], 3),
                                  extract_features(dygraph, inception_ref["images_uint8_256"], 3))


def test_dygraph_features_do_not_depend_on_the_batch(dygraph, inception_ref):
    images = inception_ref["images_uint8_64"]
    np.testing.assert_array_equal(extract_features(dygraph, images, 1), extract_features(dygraph, images, 2))


def test_missing_weights_say_what_fid_needs():
    from metric.inception import WEIGHTS_HINT

    with pytest.raises(UserError) as err:
        inception_features("")
    assert str(err.value) == WEIGHTS_HINT


def test_the_fid_metric_does_not_import_deploy():
    """metric/ receives the feature function; it never builds a network server itself."""
    code = ("import sys, metric.fid, metric.evaluation; "
            "print(sorted(m for m in sys.modules if m == 'deploy' or m.startswith('deploy.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
