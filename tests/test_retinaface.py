"""RetinaFace (faces/retinaface.py): the authors' fixtures (../shared/fixtures/upstream_suite, sections (a)
and (b) of its README) for mobilenet0.25 and ResNet-50, the predictor against dygraph, our pipeline mode,
and, without ../shared, tiny random files written as the authors write theirs."""
import collections
import copy
import hashlib
import json

import cv2
import numpy as np
import pytest
from conftest import REQUIRE_SHARED, need_shared
from torch_format import save_torch

from faces.detect import build_detector
from faces.retinaface import (RetinaFace, RetinaFaceDetector, authors_net_input, decode, load_retinaface,
                              nms_plus_one, prior_boxes, select_detections)
from utils.errors import UserError

SUITE = ("fixtures", "upstream_suite")
MNET_PHOTOS = ("2008_002079.jpg", "bald_guys.jpg")  # p0, p1 of retinaface_mnet.npz (p1 is shrunk)
R50_PHOTO = "2009_004587.jpg"


def _sha256(array):
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def manifest():
    return json.loads(need_shared(*SUITE, "manifest_suite.json").read_text())


def _photo(name, facts):
    """The photo as the fixtures decoded it (BGR); skips (fails under GPEN_REQUIRE_SHARED=1) when this OpenCV
    decodes it differently."""
    image = cv2.imread(str(need_shared("data", "wild", name)), cv2.IMREAD_COLOR)
    if _sha256(image) != facts["decoded_sha256"]:
        reason = (f"{name} decodes differently with this OpenCV/libjpeg than in the fixtures; "
                  f"every number downstream would differ")
        if REQUIRE_SHARED:  # CI: the parity evidence may not vanish as a skip
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return image


def _assert_network_outputs(outputs, ref, photo):
    for name, ours in zip(("loc", "conf", "landms"), outputs):
        expected = ref[f"{photo}/{name}"]
        assert ours.shape == expected.shape, name
        np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max(), err_msg=name)


def _assert_same_detections(dets, landms, ref, photo):
    """The same set of boxes after NMS, in the same order, coordinates (and scores) within 1e-3."""
    assert dets.dtype == np.float32 and landms.dtype == np.float32
    assert dets.shape == ref[f"{photo}/dets"].shape and landms.shape == ref[f"{photo}/det_landms"].shape
    np.testing.assert_allclose(dets, ref[f"{photo}/dets"], rtol=0, atol=1e-3)
    np.testing.assert_allclose(landms, ref[f"{photo}/det_landms"], rtol=0, atol=1e-3)


def _assert_net_input(net_input, ss, ref, photo, facts):
    h, w = ref[f"{photo}/net_input_hw"]
    r, c = (h - 16) // 2, (w - 16) // 2
    assert net_input.shape == (1, 3, h, w) and ss == ref[f"{photo}/ss"]
    np.testing.assert_array_equal(net_input[..., :16, :16], ref[f"{photo}/net_input_win_tl"])
    np.testing.assert_array_equal(net_input[..., r:r + 16, c:c + 16], ref[f"{photo}/net_input_win_c"])
    assert _sha256(net_input) == facts["net_input_sha256"]


# --- (a) mobilenet0.25 --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mnet():
    """The fixture's mobilenet0.25 file as the authors store it ('module.' prefix, num_batches_tracked),
    served the default way (the checked oneDNN predictor on a CPU)."""
    return RetinaFaceDetector(need_shared(*SUITE, "retinaface_mnet.pth"))


@pytest.fixture(scope="module")
def mnet_ref():
    return np.load(need_shared(*SUITE, "retinaface_mnet.npz"))


@pytest.mark.parametrize("index", [0, 1], ids=["p0", "p1_shrunk"])
def test_mnet_matches_the_authors_detect(mnet, mnet_ref, manifest, index):
    facts, photo = manifest["mnet"]["photos"][index], f"p{index}"
    image = _photo(MNET_PHOTOS[index], facts)
    net_input, ss = authors_net_input(image)
    _assert_net_input(net_input, ss, mnet_ref, photo, facts)
    outputs = mnet.run_network(net_input)
    _assert_network_outputs(outputs, mnet_ref, photo)
    np.testing.assert_allclose(prior_boxes(*net_input.shape[2:]), mnet_ref[f"{photo}/priors"], rtol=0, atol=1e-6)
    dets, landms = mnet.detect_authors(image, confidence_threshold=float(mnet_ref[f"{photo}/threshold"]))
    _assert_same_detections(dets, landms, mnet_ref, photo)
    if ss != 1.0:  # the authors' quirk: the score column is divided by ss as well
        assert dets[:, 4].max() > 1.0


def test_predictor_agrees_with_dygraph_on_the_fixture_photos(mnet, manifest):
    from deploy.checked import TOLERANCE, agreement_gap, dygraph_function
    from faces.retinaface import PackedOutputs

    reference = dygraph_function(PackedOutputs(mnet.net))
    for name, facts in zip(MNET_PHOTOS, manifest["mnet"]["photos"]):
        net_input, _ = authors_net_input(_photo(name, facts))
        fast = np.concatenate(mnet.run_network(net_input), axis=-1)
        assert agreement_gap(fast, reference(net_input)) <= TOLERANCE, name
    assert mnet._served.backend == "predictor"  # no fallback to dygraph on either input size


def test_our_mode_keeps_probabilities_and_maps_the_shrink_back(mnet, manifest):
    """Our detect() on p0 (RGB) gives the authors' faces; on a photo twice as large (a 2x nearest enlargement
    shrunk back exactly by ss = 0.5) the same faces at pixel-centre-mapped positions, scores still
    probabilities, where the authors' mode doubles the scores and divides the corners by ss."""
    bgr = cv2.resize(_photo(MNET_PHOTOS[0], manifest["mnet"]["photos"][0]), None, fx=2, fy=2,
                     interpolation=cv2.INTER_NEAREST)  # 750 x 1000: not shrunk
    big = cv2.resize(bgr, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)  # 1500 x 2000: shrunk by 0.5
    detector = copy.copy(mnet)  # the same network and predictor, our mode's options changed
    detector.threshold, detector.min_face = 0.75, 0.0
    dets, landms = detector.detect_authors(bgr, confidence_threshold=0.75)
    assert len(dets) >= 5
    faces = detector.detect(np.ascontiguousarray(bgr[:, :, ::-1]))
    np.testing.assert_array_equal(faces.boxes, dets[:, :4])
    np.testing.assert_array_equal(faces.scores, dets[:, 4])
    np.testing.assert_array_equal(faces.landmarks, landms.reshape(-1, 2, 5).transpose(0, 2, 1))

    big_faces = detector.detect(np.ascontiguousarray(big[:, :, ::-1]))
    np.testing.assert_array_equal(big_faces.scores, faces.scores)
    np.testing.assert_allclose(big_faces.boxes, faces.boxes * 2 + 0.5, rtol=0, atol=1e-3)
    np.testing.assert_allclose(big_faces.landmarks, faces.landmarks * 2 + 0.5, rtol=0, atol=1e-3)
    big_dets, big_landms = detector.detect_authors(big, confidence_threshold=0.75)
    np.testing.assert_allclose(big_dets, dets * 2, rtol=0, atol=1e-3)
    np.testing.assert_allclose(big_landms, landms * 2, rtol=0, atol=1e-3)


# --- (b) ResNet-50 ------------------------------------------------------------------------------------
def fill_state(entries, seed, gain=1.0, stem_div=128.0):
    """The fixtures' fill rule (README (b)): per entry k its own generator default_rng([seed, k]), float64
    draws cast to float32; conv weights N(0,1)·gain/sqrt(fan_in) (the stem also / stem_div), BatchNorm
    gamma 1 + 0.1 N, beta and biases 0.1 N, running mean 0.1 N, running var 0.5 + U[0,1), counters 0."""
    state, stem = collections.OrderedDict(), True
    for k, (key, shape, dtype) in enumerate(entries):
        rng, kind = np.random.default_rng([seed, k]), key.rsplit(".", 1)[-1]
        if dtype == "int64":
            state[key] = np.zeros(shape, np.int64)
            continue
        if len(shape) == 4:
            values = rng.standard_normal(shape) * gain / np.sqrt(np.prod(shape[1:]))
            values, stem = (values / stem_div if stem else values), False
        else:
            values = {"weight": lambda: 1.0 + 0.1 * rng.standard_normal(shape),
                      "bias": lambda: 0.1 * rng.standard_normal(shape),
                      "running_mean": lambda: 0.1 * rng.standard_normal(shape),
                      "running_var": lambda: 0.5 + rng.random(shape)}[kind]()
        state[key] = values.astype(np.float32)
    return state


@pytest.fixture(scope="module")
def r50_listing():
    return json.loads(need_shared(*SUITE, "shapes_retinaface_r50.json").read_text())


def _as_ours(key):
    """An authors' state-dict key in our layout (prefix stripped, paddle's BatchNorm statistics names)."""
    key = key.removeprefix("module.")
    return key.replace(".running_mean", "._mean").replace(".running_var", "._variance")


def test_r50_keys_and_shapes_match_the_authors_listing(r50_listing):
    ours = {k: tuple(v.shape) for k, v in RetinaFace("resnet50", 256).state_dict().items()}
    theirs = {_as_ours(e["key"]): tuple(e["shape"]) for e in r50_listing["keys"]
              if not e["key"].endswith("num_batches_tracked")}
    assert ours == theirs
    assert len(r50_listing["keys"]) == 456


def test_r50_matches_the_authors_detect(r50_listing, manifest, tmp_path):
    facts = manifest["r50"]["photos"][0]
    image = _photo(R50_PHOTO, facts)
    ref = np.load(need_shared(*SUITE, "retinaface_r50.npz"))
    state = fill_state([(e["key"], e["shape"], e["dtype"]) for e in r50_listing["keys"]], seed=2202, gain=1.0)
    # the oracle is the fixtures' own weights: every entry hashes as the manifest says
    assert all(_sha256(v)[:16] == manifest["r50"]["fill_sha256"][k] for k, v in state.items())
    path = tmp_path / "RetinaFace-R50.pth"
    save_torch(state, str(path))  # as the released file: 'module.' prefix, num_batches_tracked
    detector = RetinaFaceDetector(path, backend="dygraph")  # the predictor export would double the time
    assert detector.net.backbone == "resnet50"

    net_input, ss = authors_net_input(image)
    _assert_net_input(net_input, ss, ref, "p0", facts)
    loc, conf, landms = detector.run_network(net_input)
    _assert_network_outputs((loc, conf, landms), ref, "p0")
    np.testing.assert_allclose(prior_boxes(*net_input.shape[2:]), ref["p0/priors"], rtol=0, atol=1e-6)
    # detect_authors would run the network again: the same selection on these outputs
    dets, points = select_detections(loc[0], conf[0], landms[0], *net_input.shape[2:], float(ref["p0/threshold"]))
    _assert_same_detections(dets, points.reshape(-1, 5, 2).transpose(0, 2, 1).reshape(-1, 10), ref, "p0")


# --- the procedure's pieces on numbers worked out by hand ------------------------------------------------
def test_prior_boxes_order_and_values():
    priors = prior_boxes(16, 24)  # stride 8: 2 x 3 cells, 16: 1 x 2, 32: 1 x 1; two anchors each
    assert priors.shape == ((6 + 2 + 1) * 2, 4)
    np.testing.assert_allclose(priors[0], [4 / 24, 4 / 16, 16 / 24, 16 / 16])  # cell (0, 0), anchor 16
    np.testing.assert_allclose(priors[1], [4 / 24, 4 / 16, 32 / 24, 32 / 16])  # same cell, anchor 32
    np.testing.assert_allclose(priors[2], [12 / 24, 4 / 16, 16 / 24, 16 / 16])  # next column
    np.testing.assert_allclose(priors[6], [4 / 24, 12 / 16, 16 / 24, 16 / 16])  # next row
    np.testing.assert_allclose(priors[12], [8 / 24, 8 / 16, 64 / 24, 64 / 16])  # stride 16, first cell
    np.testing.assert_allclose(priors[-1], [16 / 24, 16 / 16, 512 / 24, 512 / 16])  # stride 32, not clipped


def test_decode_uses_the_variances():
    priors = np.float32([[0.5, 0.25, 0.2, 0.1]])
    loc = np.float32([[1.0, -2.0, 0.0, np.log(2) / 0.2]])  # centre moves 0.1 w right, 0.2 h up; height x2
    landms = np.float32([[0, 0, 10, 0, 0, 10, 0, 0, 0, 0]])
    boxes, points = decode(loc, landms, priors, height=100, width=200)
    np.testing.assert_allclose(boxes, [[200 * (0.52 - 0.1), 100 * (0.23 - 0.1), 200 * (0.52 + 0.1),
                                        100 * (0.23 + 0.1)]], rtol=1e-6)
    np.testing.assert_allclose(points.reshape(5, 2), [[100, 25], [140, 25], [100, 35], [100, 25], [100, 25]],
                               rtol=1e-6)


def test_nms_counts_one_extra_pixel():
    # [0,0,4,4] and [0,2,4,6]: with +1 areas 25 and overlap 15 (IoU 0.43 > 0.4: dropped); plain 8/24 = 0.33
    dets = np.float32([[0, 0, 4, 4, 0.9], [0, 2, 4, 6, 0.8], [10, 10, 20, 20, 0.95]])
    assert nms_plus_one(dets, 0.4) == [2, 0]
    assert nms_plus_one(dets, 0.45) == [2, 0, 1]


def test_score_threshold_is_a_float32_comparison():
    score = np.float32(0.9)
    count = len(prior_boxes(8, 16))
    conf = np.tile(np.float32([1, 0]), (count, 1))
    conf[:2, 1] = score, np.nextafter(score, np.float32(1))
    threshold = float(score) - 1e-9  # below the first score in float64, equal to it in float32
    dets, _ = select_detections(np.zeros((count, 4), np.float32), conf, np.zeros((count, 10), np.float32),
                                8, 16, confidence_threshold=threshold)
    assert len(dets) == 1 and dets[0, 4] > score


def test_the_shrink_rounds_the_size_as_opencv_does():
    net_input, ss = authors_net_input(np.zeros((1080, 1920, 3), np.uint8))
    assert ss == 1000 / 1920 and net_input.shape == (1, 3, 562, 1000)  # 562.5 rounds half to even
    net_input, ss = authors_net_input(np.zeros((1500, 1000, 3), np.uint8))
    assert ss == 1.0 and net_input.shape == (1, 3, 1500, 1000)  # 1500 is not above 1500
    np.testing.assert_array_equal(net_input[0, :, 0, 0], [-104, -117, -123])  # BGR minus the mean, unscaled


# --- files without ../shared ----------------------------------------------------------------------------
def _authors_keys(net):
    """Our network's state in the authors' layout: 'module.' prefix, torch BatchNorm names + counters."""
    state = collections.OrderedDict()
    for key, value in net.state_dict().items():
        base = "module." + key
        if key.endswith("._mean"):
            state[base[:-len("_mean")] + "running_mean"] = value.numpy()
        elif key.endswith("._variance"):
            state[base[:-len("_variance")] + "running_var"] = value.numpy()
            state[base[:-len("_variance")] + "num_batches_tracked"] = np.zeros((), np.int64)
        else:
            state[base] = value.numpy()
    return state


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    """A random mobilenet0.25 RetinaFace with a 16-channel pyramid, written as the authors' .pth."""
    import paddle

    paddle.seed(3)
    net = RetinaFace("mobilenet0.25", 16)
    rng = np.random.default_rng(0)
    for key, value in net.state_dict().items():  # statistics that make eval-mode BatchNorm no identity
        if key.endswith("._variance"):
            value.set_value(paddle.to_tensor(rng.uniform(0.5, 1.5, value.shape).astype(np.float32)))
    path = tmp_path_factory.mktemp("retinaface") / "mobilenet0.25_Final.pth"
    state = _authors_keys(net)
    save_torch(state, str(path))
    return path, state


def test_a_tiny_authors_file_loads_with_its_architecture(tiny_file, tmp_path):
    path, state = tiny_file
    net = load_retinaface(path)
    assert net.backbone == "mobilenet0.25" and net.fpn.output1[0].weight.shape[0] == 16
    np.testing.assert_array_equal(net.state_dict()["fpn.merge1.1._variance"].numpy(),
                                  state["module.fpn.merge1.1.running_var"])
    # without the prefix and the counters, in the pre-1.6 container, nested under 'state_dict'
    bare = {k.removeprefix("module."): v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    save_torch({"state_dict": bare}, str(tmp_path / "bare.pth"), legacy=True)
    other = load_retinaface(tmp_path / "bare.pth")
    np.testing.assert_array_equal(other.state_dict()["ssh3.conv7x7_3.0.weight"].numpy(),
                                  state["module.ssh3.conv7x7_3.0.weight"])

    assert isinstance(build_detector("auto", str(path)), RetinaFaceDetector)  # a .pth: RetinaFace
    detector = RetinaFaceDetector(path, backend="dygraph")  # (the predictor is tested on mobilenet0.25 above)
    image = np.random.default_rng(1).integers(0, 256, (40, 56, 3), np.uint8)
    loc, conf, landms = detector.run_network(authors_net_input(image)[0])
    assert loc.shape == (1, len(prior_boxes(40, 56)), 4) and conf.shape[2] == 2 and landms.shape[2] == 10
    np.testing.assert_allclose(conf.sum(-1), 1, atol=1e-6)
    dets, points = detector.detect_authors(image, confidence_threshold=0.0)
    assert dets.shape[1] == 5 and points.shape == (len(dets), 10) and len(dets) > 0


def test_wrong_files_are_refused_in_one_line(tiny_file, tmp_path):
    _, state = tiny_file
    cases = {
        "other_network.pth": {"generator.conv1.weight": np.zeros((4, 4), np.float32)},
        "wrong_shape.pth": {**state, "module.ClassHead.1.conv1x1.weight": np.zeros((6, 16, 1, 1), np.float32)},
        "missing_key.pth": {k: v for k, v in state.items() if "LandmarkHead.2" not in k},
        "unknown_backbone.pth": {k: v for k, v in state.items() if ".body." not in k},
    }
    expected = {"other_network.pth": "not RetinaFace weights", "wrong_shape.pth": "ClassHead.1.conv1x1.weight",
                "missing_key.pth": "LandmarkHead.2", "unknown_backbone.pth": "unknown backbone"}
    for name, content in cases.items():
        save_torch(content, str(tmp_path / name))
        with pytest.raises(UserError) as err:
            load_retinaface(tmp_path / name)
        message = str(err.value)
        assert name in message and expected[name] in message and "\n" not in message, message
    with pytest.raises(UserError, match="needs --detector_model"):
        build_detector("retinaface")
