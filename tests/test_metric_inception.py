"""The Inception port against pytorch-fid's outputs (shared/fixtures/fid_inception, random weights).

Tolerances are the fixture README's, derived from float32 noise: resized and normalised input
<= 3e-5, pool3 from the stored network input <= 1e-3 absolute, end to end <= 3e-3.
"""
import numpy as np
import pytest

from utils.errors import UserError

paddle = pytest.importorskip("paddle")

from deploy.features import inception_features  # noqa: E402  (after paddle, whose absence skips the module)
from fid_helpers import SIZES, inception_ref, inception_weights  # noqa: E402,F401  (fixtures)
from metric.fid import extract_features  # noqa: E402
from metric.inception import WEIGHTS_HINT, load_inception  # noqa: E402

@pytest.fixture(scope="module")
def extractor(inception_weights):
    paddle.set_device("cpu")
    return inception_features(inception_weights, backend="dygraph")


@pytest.fixture(scope="module")
def network(extractor):
    return extractor.network


@pytest.mark.parametrize("size", SIZES)
def test_resized_normalised_input(network, inception_ref, size):
    prepared = network.prepare_input(paddle.to_tensor(inception_ref[f"input_{size}"])).numpy()
    assert prepared.shape == (3, 3, 299, 299)
    np.testing.assert_allclose(prepared, inception_ref[f"net_input_{size}"], rtol=0, atol=3e-5)


@pytest.mark.parametrize("size", SIZES)
def test_pool3_from_stored_network_input(network, inception_ref, size):
    with paddle.no_grad():
        pool3 = network.pool3(paddle.to_tensor(inception_ref[f"net_input_{size}"])).numpy()
    np.testing.assert_allclose(pool3, inception_ref[f"pool3_{size}"], rtol=0, atol=1e-3)


def test_blocks_at_256(network, inception_ref):
    with paddle.no_grad():
        blocks = network.blocks(network.prepare_input(paddle.to_tensor(inception_ref["input_256"])))
    # block 2 sits before the final average and carries the most float32 noise (README: 2.1e-3
    # float32 vs float64 there), so its bound is the end-to-end one.
    for index, atol in enumerate((1e-3, 1e-3, 3e-3, 3e-3)):
        expected = inception_ref[f"block{index}_256"]
        assert tuple(blocks[index].shape) == expected.shape
        np.testing.assert_allclose(blocks[index].numpy(), expected, rtol=0, atol=atol)


@pytest.mark.parametrize("size", SIZES)
def test_end_to_end_from_uint8_and_float_inputs(extractor, inception_ref, size):
    from_uint8 = extract_features(extractor, inception_ref[f"images_uint8_{size}"], 3)
    assert from_uint8.shape == (3, 2048) and from_uint8.dtype == np.float64
    np.testing.assert_allclose(from_uint8, inception_ref[f"pool3_{size}"], rtol=0, atol=3e-3)
    if size == 256:
        # input_* is exactly uint8 / 255, so both input conventions give the same numbers.
        np.testing.assert_array_equal(extract_features(extractor, inception_ref["input_256"], 3), from_uint8)


def test_features_do_not_depend_on_batch_size(extractor, inception_ref):
    images = inception_ref["images_uint8_64"]
    np.testing.assert_array_equal(extract_features(extractor, images, 1), extract_features(extractor, images, 2))


def test_fc_logits_catch_a_transposed_weight(network, inception_ref):
    assert tuple(network.fc.weight.shape) == (2048, 1008)
    with paddle.no_grad():
        logits = network.logits(paddle.to_tensor(inception_ref["pool3_256"])).numpy()
    np.testing.assert_allclose(logits, inception_ref["fc_logits_256"], rtol=0, atol=1e-4)


def test_converted_pdparams_load_the_same(network, tmp_path):
    path = str(tmp_path / "inception.pdparams")
    paddle.save(network.state_dict(), path)
    reloaded = load_inception(path)
    for key, value in network.state_dict().items():
        np.testing.assert_array_equal(reloaded.state_dict()[key].numpy(), value.numpy(), err_msg=key)


def test_missing_weights_say_what_fid_needs(tmp_path):
    with pytest.raises(UserError) as err:
        inception_features("")
    assert str(err.value) == WEIGHTS_HINT
    assert "tools/convert_weights.py pt_inception-2015-12-05-6726825d.pth inception.pdparams" in WEIGHTS_HINT
    assert "\n" not in WEIGHTS_HINT
    with pytest.raises(UserError, match="not found.*convert_weights"):
        load_inception(str(tmp_path / "nothing.pth"))


# The predictor's agreement with pytorch-fid and dygraph: tests/test_deploy_features.py.
