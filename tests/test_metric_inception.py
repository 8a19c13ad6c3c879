"""The Inception port against pytorch-fid's outputs (shared/fixtures/fid_inception, random weights).

Tolerances are the fixture README's, derived from float32 noise: resized and normalised input
<= 3e-5, pool3 from the stored network input <= 1e-3 absolute, end to end <= 3e-3.
"""
import numpy as np
import pytest

from conftest import need_shared
from utils.errors import UserError

paddle = pytest.importorskip("paddle")

from metric.fid import InceptionFeatures  # noqa: E402  (after paddle, whose absence skips the module)
from metric.inception import WEIGHTS_HINT, load_inception  # noqa: E402

SIZES = (256, 299, 64)


@pytest.fixture(scope="module")
def weights_path():
    return str(need_shared("fixtures", "fid_inception", "pt_inception_random.pth"))


@pytest.fixture(scope="module")
def ref():
    with np.load(need_shared("fixtures", "fid_inception", "fid_inception_ref.npz")) as data:
        return {k: data[k] for k in data.files if not k.startswith("fid_")}


@pytest.fixture(scope="module")
def extractor(weights_path):
    paddle.set_device("cpu")
    return InceptionFeatures(weights_path, backend="dygraph")


@pytest.fixture(scope="module")
def network(extractor):
    return extractor.network


@pytest.mark.parametrize("size", SIZES)
def test_resized_normalised_input(network, ref, size):
    prepared = network.prepare_input(paddle.to_tensor(ref[f"input_{size}"])).numpy()
    assert prepared.shape == (3, 3, 299, 299)
    np.testing.assert_allclose(prepared, ref[f"net_input_{size}"], rtol=0, atol=3e-5)


@pytest.mark.parametrize("size", SIZES)
def test_pool3_from_stored_network_input(network, ref, size):
    with paddle.no_grad():
        pool3 = network.pool3(paddle.to_tensor(ref[f"net_input_{size}"])).numpy()
    np.testing.assert_allclose(pool3, ref[f"pool3_{size}"], rtol=0, atol=1e-3)


def test_blocks_at_256(network, ref):
    with paddle.no_grad():
        blocks = network.blocks(network.prepare_input(paddle.to_tensor(ref["input_256"])))
    # block 2 sits before the final average and carries the most float32 noise (README: 2.1e-3
    # float32 vs float64 there), so its bound is the end-to-end one.
    for index, atol in enumerate((1e-3, 1e-3, 3e-3, 3e-3)):
        expected = ref[f"block{index}_256"]
        assert tuple(blocks[index].shape) == expected.shape
        np.testing.assert_allclose(blocks[index].numpy(), expected, rtol=0, atol=atol)


@pytest.mark.parametrize("size", SIZES)
def test_end_to_end_from_uint8_and_float_inputs(extractor, ref, size):
    from_uint8 = extractor.extract_features(ref[f"images_uint8_{size}"], batch_size=3)
    assert from_uint8.shape == (3, 2048) and from_uint8.dtype == np.float64
    np.testing.assert_allclose(from_uint8, ref[f"pool3_{size}"], rtol=0, atol=3e-3)
    if size == 256:
        # input_* is exactly uint8 / 255, so both input conventions give the same numbers.
        np.testing.assert_array_equal(extractor.extract_features(ref["input_256"], batch_size=3), from_uint8)


def test_features_do_not_depend_on_batch_size(extractor, ref):
    images = ref["images_uint8_64"]
    np.testing.assert_array_equal(extractor.extract_features(images, batch_size=1),
                                  extractor.extract_features(images, batch_size=2))


def test_fc_logits_catch_a_transposed_weight(network, ref):
    assert tuple(network.fc.weight.shape) == (2048, 1008)
    with paddle.no_grad():
        logits = network.logits(paddle.to_tensor(ref["pool3_256"])).numpy()
    np.testing.assert_allclose(logits, ref["fc_logits_256"], rtol=0, atol=1e-4)


def test_converted_pdparams_load_the_same(network, tmp_path):
    path = str(tmp_path / "inception.pdparams")
    paddle.save(network.state_dict(), path)
    reloaded = load_inception(path)
    for key, value in network.state_dict().items():
        np.testing.assert_array_equal(reloaded.state_dict()[key].numpy(), value.numpy(), err_msg=key)


def test_missing_weights_say_what_fid_needs(tmp_path):
    with pytest.raises(UserError) as err:
        InceptionFeatures("")
    assert str(err.value) == WEIGHTS_HINT
    assert "tools/convert_weights.py pt_inception-2015-12-05-6726825d.pth inception.pdparams" in WEIGHTS_HINT
    assert "\n" not in WEIGHTS_HINT
    with pytest.raises(UserError, match="not found.*convert_weights"):
        load_inception(str(tmp_path / "nothing.pth"))


@pytest.fixture
def reuse_network(network, monkeypatch):
    """Further extractors get the already loaded network instead of reading the weights again."""
    import metric.inception

    monkeypatch.setattr(metric.inception, "load_inception", lambda path: network)


def test_predictor_matches_fixture_and_dygraph(weights_path, extractor, ref, reuse_network):
    images = ref["images_uint8_256"]
    dygraph_before = extractor.extract_features(images, batch_size=3)
    predictor = InceptionFeatures(weights_path, backend="predictor")
    assert predictor.backend == "predictor"
    features = predictor.extract_features(images, batch_size=3)
    assert np.isfinite(features).all()
    np.testing.assert_allclose(features, ref["pool3_256"], rtol=0, atol=3e-3)
    np.testing.assert_allclose(features, dygraph_before, rtol=0, atol=1e-3)
    np.testing.assert_array_equal(predictor.extract_features(images, batch_size=1), features)
    # Running the predictor must not change dygraph's results (it used to leave MKL at 1 thread).
    np.testing.assert_array_equal(extractor.extract_features(images, batch_size=3), dygraph_before)


def test_auto_backend_falls_back_to_dygraph_when_the_predictor_fails(weights_path, reuse_network, monkeypatch):
    from deploy.predictor import Predictor

    def broken(*args, **kwargs):
        raise RuntimeError("simulated oneDNN pass failure")

    monkeypatch.setattr(Predictor, "from_layer", broken)
    with pytest.warns(RuntimeWarning, match="simulated"):
        extractor = InceptionFeatures(weights_path, backend="auto")
    assert extractor.backend == "dygraph"
    with pytest.raises(RuntimeError, match="simulated"):
        InceptionFeatures(weights_path, backend="predictor")
