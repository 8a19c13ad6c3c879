"""ParseNet and the authors' FaceParse / mask_postprocess (faces/parsenet.py) against the fixtures of
../shared/fixtures/upstream_suite (README section c), and loading the authors' file format without them."""
import collections
import json

import cv2
import numpy as np
import paddle
import pytest
from conftest import need_shared
from suite_fixtures import SUITE, compare_stored_map, decoded_sha256, stored_parts
from torch_format import save_torch

from faces.inference_ops import reflect_pad1, upsample_nearest2
from faces.parsenet import (NUM_CLASSES, PARSENET_WEIGHTS, FaceParse, ParseNet, labels_of, load_parsenet,
                            mask_of, mask_postprocess, network_input, parsenet_config, soft_mask)
from utils.errors import UserError

FACES = ("face0", "face1")
SOURCES = {"face0": "005735.jpg", "face1": "006930.jpg"}  # shared/data/celeba_hq, README (c)


@pytest.fixture(scope="module")
def suite():
    folder = need_shared(*SUITE)
    npz = np.load(folder / "parsenet_small.npz")
    manifest = json.load(open(folder / "manifest_suite.json"))["parse"]
    net = load_parsenet(str(folder / "parsenet_small.pth"))
    faces = [npz[f"{name}/input"] for name in FACES]
    with paddle.no_grad():  # both faces in one batch, as FaceParse.process_batch runs them
        logits, image = net(paddle.to_tensor(network_input(faces)))
    return dict(folder=folder, npz=npz, manifest=manifest, net=net, faces=faces, logits=logits.numpy(),
                image=image.numpy())


def top2_gap(logits):
    """top-1 minus top-2 logit per pixel, (C, H, W) -> (H, W)."""
    top = np.sort(logits, axis=0)[-2:]
    return top[1] - top[0]


def test_inputs_decode_and_normalise_as_upstream(suite):
    for i, name in enumerate(FACES):
        face = suite["faces"][i]
        source = cv2.imread(str(need_shared("data", "celeba_hq", SOURCES[name])), cv2.IMREAD_COLOR)
        resized = cv2.resize(source, face.shape[1::-1], interpolation=cv2.INTER_AREA)
        assert np.array_equal(resized, face), f"{name}: this OpenCV decodes/resizes the face differently"
        assert decoded_sha256(network_input([face])) == suite["manifest"]["faces"][i]["net_input_sha256"]


def test_parsenet_reads_the_small_fixture_architecture(suite):
    assert suite["net"].config == dict(base_ch=8, parsing_ch=19, res_depth=2, ch_range=(8, 32))


def test_logits_and_image_match_upstream(suite):
    for i, name in enumerate(FACES):
        compare_stored_map(suite["logits"][i:i + 1], suite["npz"], f"{name}/logits", 16)
        compare_stored_map(suite["image"][i:i + 1], suite["npz"], f"{name}/out_img", 8)


def test_predictor_matches_dygraph_and_upstream(suite):
    # strict: the predictor's first batch must agree with dygraph (deploy.checked.TOLERANCE)
    parser = FaceParse(suite["net"], backend="predictor", batch_size=2)
    logits = parser.logits(suite["faces"])
    assert parser.backend == "predictor"
    for i, name in enumerate(FACES):
        compare_stored_map(logits[i:i + 1], suite["npz"], f"{name}/logits", 16)
    masks = parser.process_batch(suite["faces"])
    assert [m.shape for m in masks] == [(512, 512)] * 2 and all(m.dtype == np.uint8 for m in masks)
    assert all(np.array_equal(m, mask_of(labels_of(logits[i:i + 1]))[0]) for i, m in enumerate(masks))


def test_labels_and_masks_flip_only_at_near_ties(suite):
    for i, name in enumerate(FACES):
        logits = suite["logits"][i]
        labels, ref_labels = labels_of(logits[None])[0], suite["npz"][f"{name}/label"]
        flipped = labels != ref_labels
        # Within the logits' tolerance (atol 1e-4 max|logits|) a label can only flip where the top two
        # logits are closer than twice that.
        near_tie = top2_gap(logits) < 2 * 1e-4 * np.abs(logits).max()
        assert not (flipped & ~near_tie).any(), f"{name}: {int((flipped & ~near_tie).sum())} flips off a near-tie"
        mask, ref_mask = mask_of(labels[None])[0], suite["npz"][f"{name}/mask"]
        assert not ((mask != ref_mask) & ~flipped).any()


def test_mask_postprocess_of_the_stored_mask(suite):
    for name in FACES:
        mask = suite["npz"][f"{name}/mask"]
        copy = mask.copy()
        ours = soft_mask(mask)
        assert ours.dtype == np.float32 and np.array_equal(mask, copy)
        for key, part in stored_parts(ours, 4).items():
            np.testing.assert_allclose(part, suite["npz"][f"{name}/mask_post/{key}"], rtol=0, atol=1e-6)


def test_real_parsenet_layout_loads(tmp_path):
    """The authors' ParseNet-latest.pth layout (shapes_parsenet_latest.json): its architecture read off
    the shapes, our module's keys and shapes equal to the file's (BatchNorm statistics renamed), and a
    file of that layout (zeros, 85 MB) loads."""
    doc = json.load(open(need_shared(*SUITE, "shapes_parsenet_latest.json")))
    state = collections.OrderedDict((e["key"], np.zeros(e["shape"], e["dtype"])) for e in doc["keys"])
    config = parsenet_config(state)
    assert config == dict(base_ch=64, parsing_ch=19, res_depth=10, ch_range=(64, 256))
    with paddle.LazyGuard():
        net = ParseNet(**config)
    ours = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert ours == {k: tuple(v.shape) for k, v in PARSENET_WEIGHTS.to_paddle(state).items()}
    path = tmp_path / "ParseNet-latest.pth"
    save_torch(state, str(path))
    assert load_parsenet(str(path)).config == config


# ----------------------------------------------------------------------------------------------
# Without ../shared.

def authors_layout(net):
    """Our ParseNet's state dict in the authors' layout (torch BatchNorm names and counters)."""
    out = collections.OrderedDict()
    for key, value in net.state_dict().items():
        value = value.numpy()
        if key.endswith("._mean"):
            out[key[:-len("_mean")] + "running_mean"] = value
        elif key.endswith("._variance"):
            out[key[:-len("_variance")] + "running_var"] = value
            out[key[:-len("_variance")] + "num_batches_tracked"] = np.array(1, np.int64)
        else:
            out[key] = value
    return out


@pytest.mark.parametrize("config", [dict(base_ch=4, parsing_ch=19, res_depth=1, ch_range=(4, 16)),
                                    dict(base_ch=2, parsing_ch=5, res_depth=3, ch_range=(2, 16))])
def test_authors_format_file_loads_with_its_architecture(tmp_path, config):
    paddle.seed(1)
    net = ParseNet(**config)
    state = authors_layout(net)
    for key in state:  # every entry distinct, so a misplaced one is seen
        if state[key].dtype == np.float32:
            state[key] = np.random.default_rng(len(key)).uniform(0.5, 1.5, state[key].shape).astype(np.float32)
    path = tmp_path / "ParseNet-latest.pth"
    save_torch(state, str(path))
    loaded = load_parsenet(str(path))
    assert loaded.config == config
    for key, value in authors_layout(loaded).items():
        np.testing.assert_array_equal(value, state[key], err_msg=key)


def test_wrong_files_are_refused_in_one_line(tmp_path):
    paddle.seed(2)
    state = authors_layout(ParseNet(base_ch=2, res_depth=1, ch_range=(2, 8)))
    other = tmp_path / "GPEN-BFR-512.pth"
    save_torch({"ecd0.0.0.weight": np.zeros((4, 3, 1, 1), np.float32)}, str(other))
    with pytest.raises(UserError, match=r"GPEN-BFR-512.pth: not ParseNet \(face parsing\) weights .*"
                                        r"expected the authors' ParseNet-latest.pth") as err:
        load_parsenet(str(other))
    assert "\n" not in str(err.value)
    nested = tmp_path / "realesrnet_x2.pth"
    save_torch({"params_ema": {"conv_first.weight": np.zeros((4, 12, 3, 3), np.float32)}}, str(nested))
    with pytest.raises(UserError, match="realesrnet_x2.pth: holds no state dict") as err:
        load_parsenet(str(nested))
    assert "\n" not in str(err.value)
    del state["body.0.conv1.conv2d.weight"]
    broken = tmp_path / "broken.pth"
    save_torch(state, str(broken))
    with pytest.raises(UserError, match="ParseNet weights lack 'body.0.conv1.conv2d.weight'") as err:
        load_parsenet(str(broken))
    assert "\n" not in str(err.value)


def test_colour_map_and_first_maximum_on_ties():
    # FaceParse.MASK_COLORMAP as the authors write it, class by class
    colormap = [0, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 0, 255, 255, 255, 0]
    assert mask_of(np.arange(NUM_CLASSES, dtype=np.uint8)).tolist() == colormap
    logits = np.zeros((1, NUM_CLASSES, 1, 3), np.float32)
    logits[0, [3, 14], 0, 0] = 2.0   # tie between 3 and 14: the first (3) wins
    logits[0, [0, 1], 0, 1] = 1.0    # tie between 0 and 1: 0
    logits[0, 18, 0, 2] = 1.0
    assert labels_of(logits).tolist() == [[[3, 0, 18]]]


def test_mask_postprocess_border_blur_and_input_untouched():
    mask = np.ones((512, 512))
    soft = mask_postprocess(mask)
    assert soft.dtype == np.float32 and (mask == 1).all()
    assert abs(soft[256, 256] - 1) < 1e-6          # far from the zeroed border: the blur of ones
    assert soft[0, 0] < 1e-3 and soft[26:-26, 26:-26].min() > 0.2
    # the blur is the authors' two float64 GaussianBlur(101, sigma 4) passes after zeroing 26 px
    expected = np.ones((512, 512))
    expected[:26], expected[-26:], expected[:, :26], expected[:, -26:] = 0, 0, 0, 0
    for _ in range(2):
        expected = cv2.GaussianBlur(expected, (101, 101), 4)
    np.testing.assert_array_equal(soft, expected.astype(np.float32))


def test_reflect_pad_and_nearest_upsampling_equal_numpy():
    x = np.random.default_rng(3).standard_normal((2, 3, 5, 7)).astype(np.float32)
    padded = reflect_pad1(paddle.to_tensor(x)).numpy()
    np.testing.assert_array_equal(padded, np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect"))
    up = upsample_nearest2(paddle.to_tensor(x)).numpy()
    np.testing.assert_array_equal(up, x.repeat(2, axis=2).repeat(2, axis=3))
