"""The IR-SE50 port and the identity loss against the authors' code run by PyTorch
(../shared/fixtures/irse50/: random weights in the real file's format, float16-stored)."""
import logging

import numpy as np
import paddle
import pytest

from conftest import need_shared
from loss.arcface import IRSE50_WEIGHTS, Backbone, crop_box, face_input, load_backbone
from loss.id_loss import IDLoss, build_id_loss
from utils.errors import UserError
from utils.weights import check_state_dict, read_state_dict


@pytest.fixture(scope="module")
def weights_path():
    return need_shared("fixtures", "irse50", "model_ir_se50_random.pth")


@pytest.fixture(scope="module")
def ref():
    with np.load(need_shared("fixtures", "irse50", "irse50_ref.npz")) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def converted(weights_path):
    """The state dict as the reader returns it (our layout)."""
    return read_state_dict(weights_path, IRSE50_WEIGHTS).state


@pytest.fixture(scope="module")
def id_loss(weights_path):
    return IDLoss(weights_path)  # the 88 MB file is read once for the module


def _rel_l2(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# ----------------------------------------------------------------------------------------------
# Input path.

def test_crop_box_is_the_authors_at_multiples_of_256():
    for scale in (1, 2, 4):
        size = 256 * scale
        assert crop_box(size) == (35 * scale, size - 33 * scale, 32 * scale, size - 36 * scale)
    # Below 256 the margins scale with the size (rounded) instead of collapsing to an empty crop.
    assert crop_box(64) == (9, 56, 8, 55)


@pytest.mark.parametrize("size", [256, 512])
def test_crop_and_pooled_input(ref, size):
    images = ref[f"input_{size}"]
    top, bottom, left, right = crop_box(size)
    np.testing.assert_array_equal(images[:, :, top:bottom, left:right], ref[f"crop_{size}"])
    pooled = face_input(paddle.to_tensor(images)).numpy()
    assert np.abs(pooled - ref[f"pooled_{size}"]).max() <= 1e-6


# ----------------------------------------------------------------------------------------------
# Network.

def test_weights_load_by_name(converted):
    state = converted
    expected = Backbone().state_dict()
    assert sorted(state) == sorted(expected)  # zero missing, zero unexpected
    for key, tensor in expected.items():
        assert tuple(state[key].shape) == tuple(tensor.shape), key


def test_key_or_shape_mismatch_is_a_user_error(converted, id_loss):
    state = converted
    expected = id_loss.backbone.state_dict()
    check_state_dict(state, expected, "w.pth", "IR-SE50", "hint")  # the real layout passes

    missing = dict(state)
    del missing["body.5.res_layer.2.weight"]
    with pytest.raises(UserError,
                       match=r"w\.pth: IR-SE50 weights lack 'body\.5\.res_layer\.2\.weight' \(shape \[128\]\)"):
        check_state_dict(missing, expected, "w.pth", "IR-SE50", "hint")

    transposed = dict(state, **{"output_layer.3.weight": state["output_layer.3.weight"].T})
    with pytest.raises(UserError, match=r"weight 'output_layer\.3\.weight' has shape \[512, 25088\], expected \[25088, 512\]"):
        check_state_dict(transposed, expected, "w.pth", "IR-SE50", "hint")

    extra = dict(state, **{"output_layer.1.weight": np.zeros(3, np.float32)})
    with pytest.raises(UserError, match=r"unexpected key 'output_layer\.1\.weight' \(shape \[3\]\)"):
        check_state_dict(extra, expected, "w.pth", "IR-SE50", "hint")


def test_other_network_is_refused(tmp_path):
    path = tmp_path / "not_arcface.pdparams"
    paddle.save({"convs.0.0.weight": np.zeros(1, np.float32), "final_conv.0.weight": np.zeros(1, np.float32),
                 "final_linear.1.weight": np.zeros(1, np.float32)}, str(path))
    with pytest.raises(UserError, match=r"not_arcface.pdparams: not IR-SE50 \(ArcFace\) weights \(no .input_layer.0.weight."):
        load_backbone(path)


def test_stage_activations(id_loss, ref):
    out = id_loss.backbone.activations(paddle.to_tensor(ref["pooled_256"]))
    for name in ("input_layer", "stage1", "stage2", "stage3", "stage4"):
        want = ref[f"{name}_256"]
        got = out[name].numpy()
        assert got.shape == want.shape, name
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max(), name
    assert np.abs(out["pre_l2norm"].numpy() - ref["pre_l2norm_256"]).max() <= 1e-4
    assert np.abs(out["embedding"].numpy() - ref["embedding_256"]).max() <= 1e-5


@pytest.mark.parametrize("size", [256, 512])
def test_embeddings(id_loss, ref, size):
    embedding = id_loss.embed(paddle.to_tensor(ref[f"input_{size}"])).numpy()
    assert np.abs(embedding - ref[f"embedding_{size}"]).max() <= 1e-5
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-6)


def test_training_flag_changes_nothing(id_loss, ref):
    """A parent's .train() must not switch BatchNorm to batch statistics or Dropout on."""
    backbone = id_loss.backbone
    images = paddle.to_tensor(ref["pooled_256"])
    before = backbone(images).numpy()
    statistics = {key: value.numpy().copy() for key, value in backbone.state_dict().items()
                  if key.endswith(("_mean", "_variance"))}
    backbone.train()
    try:
        after = backbone(images).numpy()
    finally:
        backbone.eval()
    np.testing.assert_array_equal(after, before)
    for key, value in backbone.state_dict().items():
        if key in statistics:
            np.testing.assert_array_equal(value.numpy(), statistics[key], err_msg=key)


# ----------------------------------------------------------------------------------------------
# The loss.

@pytest.mark.parametrize("prefix", ["", "b2_"])
def test_loss_logs_and_gradient(id_loss, ref, prefix):
    if prefix:
        y_hat, y, x = ref["b2_y_hat"], ref["b2_y"], ref["b2_x"]
    else:  # IDLoss(y_hat = face 0, y = face 1, x = face 0)
        faces = ref["input_256"]
        y_hat, y, x = faces[:1], faces[1:], faces[:1]
    y_hat = paddle.to_tensor(y_hat, stop_gradient=False)
    y = paddle.to_tensor(y, stop_gradient=False)  # must get no gradient: the target is detached
    result = id_loss(y_hat, y, paddle.to_tensor(x))
    loss, sim_improvement, id_logs = result  # unpacks like the authors' triple
    assert abs(loss.item() - float(ref[f"{prefix}loss"])) <= 1e-6
    assert abs(sim_improvement.item() - float(ref[f"{prefix}sim_improvement"])) <= 1e-6
    assert np.abs(id_logs.numpy() - ref[f"{prefix}id_logs"]).max() <= 1e-6
    loss.backward()
    grad = y_hat.grad.numpy()
    assert _rel_l2(grad, ref[f"{prefix}grad_y_hat"]) <= 1e-2
    assert y.grad is None
    # frozen: no weight of the recogniser received a gradient
    assert all(param.grad is None for param in id_loss.backbone.parameters())
    assert all(param.stop_gradient for param in id_loss.backbone.parameters())


def test_training_call_without_x(id_loss, ref):
    y_hat = paddle.to_tensor(ref["b2_y_hat"], stop_gradient=False)
    result = id_loss(y_hat, paddle.to_tensor(ref["b2_y"]))
    assert result.sim_improvement is None and result.id_logs is None
    assert abs(result.loss.item() - float(ref["b2_loss"])) <= 1e-6
    result.loss.backward()
    assert _rel_l2(y_hat.grad.numpy(), ref["b2_grad_y_hat"]) <= 1e-2


def test_similarity_is_the_cosine_of_embeddings(id_loss, ref):
    faces = paddle.to_tensor(ref["input_256"])
    cosine = id_loss.similarity(faces[:1], faces[1:]).numpy()
    want = (ref["embedding_256"][0] * ref["embedding_256"][1]).sum()
    assert abs(cosine[0] - want) <= 1e-5


def test_small_images_use_the_scaled_crop(id_loss):
    rng = np.random.default_rng(0)
    y_hat = paddle.to_tensor(rng.uniform(-1, 1, (2, 3, 64, 64)).astype("float32"), stop_gradient=False)
    y = paddle.to_tensor(rng.uniform(-1, 1, (2, 3, 64, 64)).astype("float32"))
    loss = id_loss(y_hat, y).loss
    assert np.isfinite(loss.item())
    loss.backward()
    grad = np.abs(y_hat.grad.numpy()).sum(axis=(0, 1))
    top, bottom, left, right = crop_box(64)
    inside = np.zeros_like(grad, dtype=bool)
    inside[top:bottom, left:right] = True
    assert (grad[inside] > 0).all() and (grad[~inside] == 0).all()


def test_not_a_parameter_of_its_owner(id_loss):
    """Held by a Layer (the training step), its weights reach neither the optimizer nor checkpoints."""
    owner = paddle.nn.Layer()
    owner.id_loss = id_loss
    owner.head = paddle.nn.Linear(2, 2)
    assert len(owner.parameters()) == 2
    assert all(not key.startswith("id_loss") for key in owner.state_dict())


def test_converted_pdparams_loads(id_loss, tmp_path):
    # As a converter writes it: the arrays of read_state_dict, already in our layout.
    path = tmp_path / "model_ir_se50.pdparams"
    paddle.save({key: value.numpy() for key, value in id_loss.backbone.state_dict().items()}, str(path))
    reloaded = load_backbone(path)
    for key, value in id_loss.backbone.state_dict().items():
        np.testing.assert_array_equal(reloaded.state_dict()[key].numpy(), value.numpy(), err_msg=key)


def test_off_without_weights(caplog):
    with caplog.at_level(logging.INFO, logger="loss.id_loss"):
        assert build_id_loss("") is None
    assert "identity loss off: no train.id_weights given" in caplog.text


def test_missing_weights_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        IDLoss(tmp_path / "model_ir_se50.pth")
