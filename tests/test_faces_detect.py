"""Face detection: the safe MTCNN weight reader, the Paddle port against a NumPy reference of the Keras
graph, recall on the shared wild photos, YuNet, the options, and memory on a huge photo."""
import math
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import EXAMPLES, need_mtcnn_package, need_shared

from faces.detect import build_detector
from faces.detection import Detector, Faces, nms
from tools.wild_truth import evaluate_photo, match_faces
from faces.mtcnn_weights import default_weight_dir, load_mtcnn_weights, read_joblib_lz4_arrays
from utils.errors import UserError
from utils.image_io import read_image

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def weights():
    need_mtcnn_package()
    return load_mtcnn_weights()


@pytest.fixture(scope="module")
def mtcnn():
    need_mtcnn_package()
    detector = build_detector()  # the default: MTCNN when no model file is given
    assert detector.name == "mtcnn"
    return detector


# --- the weight files --------------------------------------------------------------------------------
def test_weight_reader_gives_the_keras_weight_lists(weights):
    shapes = {net: [a.shape for a in arrays] for net, arrays in weights.items()}
    assert shapes["pnet"][:3] == [(3, 3, 3, 10), (10,), (1, 1, 10)]  # conv kernel HWIO, bias, PReLU slope
    assert shapes["rnet"][9] == (576, 128)  # dense kernel (in, out) after the 3x3x64 flatten
    assert shapes["onet"][12] == (1152, 256)
    assert [len(arrays) for arrays in weights.values()] == [13, 16, 21]
    assert all(a.dtype == np.float32 and np.isfinite(a).all() for arrays in weights.values() for a in arrays)


def test_weight_reader_agrees_with_joblib(weights):
    joblib = pytest.importorskip("joblib")
    reference = joblib.load(os.path.join(default_weight_dir(), "onet.lz4"))  # the package's own loader
    assert len(reference) == len(weights["onet"])
    assert all(np.array_equal(a, b) for a, b in zip(reference, weights["onet"]))


def test_weight_reader_runs_no_pickled_code(tmp_path):
    lz4_frame = pytest.importorskip("lz4.frame")

    marker = tmp_path / "executed"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.lz4"
    path.write_bytes(lz4_frame.compress(pickle.dumps([Evil()], protocol=4)))
    with pytest.raises(UserError, match=r"evil.lz4: refused to load: its pickle asks for '(posix|os).system'"):
        read_joblib_lz4_arrays(str(path))
    assert not marker.exists()


def test_missing_weight_folder_is_a_user_error(tmp_path):
    pytest.importorskip("lz4")
    with pytest.raises(UserError, match="weight file not found"):
        load_mtcnn_weights(str(tmp_path))


# --- the Paddle port against a NumPy reference of the Keras graph -------------------------------------
def _conv(x, kernel, bias):  # NHWC, HWIO, 'valid'
    kh, kw = kernel.shape[:2]
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))  # N,H',W',C,kh,kw
    return np.einsum("nhwcij,ijco->nhwo", windows, kernel, optimize=True) + bias


def _prelu(x, alpha):
    return np.where(x > 0, x, x * alpha.reshape(-1))


def _pool(x, k, s, same):  # TensorFlow max-pooling, NHWC
    n, h, w, c = x.shape
    if same:
        oh, ow = math.ceil(h / s), math.ceil(w / s)
        ph, pw = max((oh - 1) * s + k - h, 0), max((ow - 1) * s + k - w, 0)
        padded = np.full((n, h + ph, w + pw, c), -np.inf, x.dtype)
        padded[:, ph // 2:ph // 2 + h, pw // 2:pw // 2 + w] = x
        x = padded
    windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))[:, ::s, ::s]
    return windows.max(axis=(4, 5))


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _keras_reference(net, w, x):
    """The mtcnn package's Keras graphs, written out in NumPy (NHWC)."""
    if net == "pnet":
        x = _pool(_prelu(_conv(x, w[0], w[1]), w[2]), 2, 2, True)
        x = _prelu(_conv(x, w[3], w[4]), w[5])
        x = _prelu(_conv(x, w[6], w[7]), w[8])
        return [_conv(x, w[9], w[10]).transpose(0, 3, 1, 2), _softmax(_conv(x, w[11], w[12]))[..., 1]]
    if net == "rnet":
        x = _pool(_prelu(_conv(x, w[0], w[1]), w[2]), 3, 2, True)
        x = _pool(_prelu(_conv(x, w[3], w[4]), w[5]), 3, 2, False)
        x = _prelu(_conv(x, w[6], w[7]), w[8])
        x = _prelu(x.transpose(0, 2, 1, 3).reshape(len(x), -1) @ w[9] + w[10], w[11])  # Permute((2,1,3))
        return [x @ w[12] + w[13], _softmax(x @ w[14] + w[15])[:, 1]]
    x = _pool(_prelu(_conv(x, w[0], w[1]), w[2]), 3, 2, True)
    x = _pool(_prelu(_conv(x, w[3], w[4]), w[5]), 3, 2, False)
    x = _pool(_prelu(_conv(x, w[6], w[7]), w[8]), 2, 2, True)
    x = _prelu(_conv(x, w[9], w[10]), w[11])
    x = _prelu(x.transpose(0, 2, 1, 3).reshape(len(x), -1) @ w[12] + w[13], w[14])
    return [x @ w[15] + w[16], x @ w[17] + w[18], _softmax(x @ w[19] + w[20])[:, 1]]


@pytest.mark.parametrize("net, shape", [("pnet", (2, 31, 26, 3)), ("rnet", (3, 24, 24, 3)), ("onet", (3, 48, 48, 3))])
def test_paddle_networks_match_the_keras_graph(weights, mtcnn, net, shape):
    import paddle

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, shape).astype(np.float32)
    with paddle.no_grad():
        ours = [t.numpy() for t in getattr(mtcnn, net)(paddle.to_tensor(x.transpose(0, 3, 1, 2)))]
    reference = _keras_reference(net, [a.astype(np.float64) for a in weights[net]], x.astype(np.float64))
    for got, want in zip(ours, reference):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=2e-4, rtol=1e-3)


def test_pnet_tiles_give_the_same_proposals(mtcnn):
    photo = np.random.default_rng(0).integers(0, 256, (150, 190, 3), dtype=np.uint8)
    face = read_image(str(EXAMPLES / "test" / "celebahq_005735.jpg"))[60:200, 58:198]  # a face, 140 px
    photo[40:110, 60:120] = cv2.resize(face, (60, 70), interpolation=cv2.INTER_AREA)
    default_tile = mtcnn.tile
    try:
        mtcnn.tile = 4096
        whole = mtcnn._pnet_scale(photo, 0.6)
        mtcnn.tile = 40  # the 114 x 90 scaled image in 40-px tiles
        tiled = mtcnn._pnet_scale(photo, 0.6)
    finally:
        mtcnn.tile = default_tile
    assert len(whole) > 0
    order = lambda a: a[np.lexsort(a.T)]  # noqa: E731
    np.testing.assert_allclose(order(tiled), order(whole), rtol=1e-4, atol=1e-3)


# --- detection on the shared photos -------------------------------------------------------------------
def _photo(name):
    return read_image(str(need_shared("data", "wild", name)))


def test_default_detector_finds_the_solvay_faces(mtcnn):
    faces = mtcnn(_photo("Solvay_conference_1927.png"))
    hits, _, false_pos = evaluate_photo(faces, "Solvay_conference_1927.png")
    assert hits >= 27, f"{hits} of 29 faces"
    assert false_pos <= 1
    # landmarks in template order: eyes above the mouth, image-left before image-right
    eyes, mouth = faces.landmarks[:, :2], faces.landmarks[:, 3:]
    assert (eyes[:, 0, 0] < eyes[:, 1, 0]).all() and (mouth[:, 0, 0] < mouth[:, 1, 0]).all()
    assert (eyes[:, :, 1].max(1) < mouth[:, :, 1].min(1)).all()
    inside = ((faces.landmarks >= faces.boxes[:, None, :2] - 2) & (faces.landmarks <= faces.boxes[:, None, 2:] + 2))
    assert inside.all()


def test_default_detector_finds_the_bald_guys(mtcnn):
    hits, _, false_pos = evaluate_photo(mtcnn(_photo("bald_guys.jpg")), "bald_guys.jpg")
    assert hits >= 20, f"{hits} of 24 faces"
    assert false_pos <= 2


def test_size_and_count_options(mtcnn):
    photo = _photo("2009_004587.jpg")  # two faces, boxes about 97 and 69 px
    all_faces = mtcnn(photo)
    assert len(all_faces) >= 2
    largest = build_detector("mtcnn", max_faces=1)(photo)
    assert len(largest) == 1 and largest.sizes[0] == pytest.approx(all_faces.sizes.max(), rel=1e-3)
    big_only = build_detector("mtcnn", min_face=80)(photo)
    assert len(big_only) >= 1 and (big_only.sizes >= 80).all() and len(big_only) < len(all_faces)


@pytest.mark.parametrize("model", ["yunet_n_dynamic.onnx", "yunet_s_640_640.onnx"])
def test_yunet_finds_the_solvay_faces(model):
    path = need_shared("weights", "yunet", model)
    faces = build_detector("yunet", str(path))(_photo("Solvay_conference_1927.png"))
    hits, _, false_pos = evaluate_photo(faces, "Solvay_conference_1927.png")
    assert hits >= 27 and false_pos <= 1
    assert (faces.landmarks[:, 0, 0] < faces.landmarks[:, 1, 0]).all()  # mapped to template order


def test_auto_picks_yunet_for_an_onnx_file():
    path = need_shared("weights", "yunet", "yunet_n_dynamic.onnx")
    assert build_detector("auto", str(path)).name == "yunet"


def test_yunet_tiles_agree_with_a_single_pass():
    path = need_shared("weights", "yunet", "yunet_n_dynamic.onnx")
    photo = _photo("Solvay_conference_1927.png")
    whole = build_detector("yunet", str(path))
    whole.tile = 4096
    tiled = build_detector("yunet", str(path))
    tiled.tile = 400  # 1328 x 568 in 400-px tiles, plus the pyramid levels
    fixed = build_detector("yunet", str(path))
    fixed.fixed_size = fixed.tile = 640  # as for a model that only takes its export size: padded tiles
    a = whole(photo)
    for other in (tiled(photo), fixed(photo)):
        hits, missed, extra = match_faces(other.boxes, other.scores, a.boxes, iou=0.5)
        assert missed <= 1 and extra <= 1


def test_detector_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="unknown face detector"):
        build_detector("haar")
    with pytest.raises(UserError, match="needs --detector_model"):
        build_detector("yunet")
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"not a model")
    with pytest.raises(UserError, match="not a YuNet"):
        build_detector("yunet", str(bogus))
    with pytest.raises(UserError, match=r"threshold must be in \(0, 1\), got 1.5"):  # checked before the file
        build_detector("yunet", str(bogus), threshold=1.5)


# --- helpers -----------------------------------------------------------------------------------------
def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 5, 5]], np.float32)
    scores = np.array([0.8, 0.9, 0.7, 0.6])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2, 3]
    assert nms(boxes, scores, 0.5, mode="min").tolist() == [1, 2]  # the small box lies inside box 1


def test_matching_counts_hits_misses_and_ignored():
    truth = [[0, 0, 10, 10], [20, 0, 30, 10]]
    boxes = [[1, 1, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60], [100, 100, 110, 110]]
    assert match_faces(boxes, [0.9, 0.8, 0.7, 0.6], truth, ignore=[[95, 95, 120, 120]]) == (1, 1, 2)


class _FixedDetector(Detector):
    def __init__(self, faces, **common):
        super().__init__(**common)
        self.faces, self.seen = faces, []

    def _detect(self, image, min_face):
        self.seen.append(image.shape)
        return self.faces


def test_huge_photos_are_detected_on_a_shrunk_copy():
    faces = Faces(np.array([[10, 10, 40, 40]], np.float32), np.ones(1, np.float32), np.full((1, 5, 2), 25, np.float32))
    detector = _FixedDetector(faces, max_side=1000)
    found = detector(np.zeros((2000, 4000, 3), np.uint8))
    assert detector.seen == [(500, 1000, 3)] and detector.last_scale == 0.25
    # boxes come back in the photo's pixels: x_big = (x + 0.5) * 4 - 0.5
    np.testing.assert_allclose(found.boxes[0], [41.5, 41.5, 161.5, 161.5])


def test_huge_photo_memory_stays_bounded():
    """A 6000 x 4000 photo through the default detector and the whole pipeline, in a fresh process so
    the peak resident memory is this run's. Detecting at full size with untiled P-Net peaks above
    2 GB; the size cap and the tiles keep the growth well under 1 GB."""
    source = need_shared("data", "wild", "bald_guys.jpg")
    need_mtcnn_package()
    script = textwrap.dedent(f"""
        from utils.runtime import prepare_cpu
        prepare_cpu(2)
        import resource, cv2, numpy as np, paddle
        from utils.image_io import read_image
        from faces import build_detector, identity_restorer, restore_photo
        detector = build_detector("mtcnn")
        start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        canvas = np.empty((4000, 6000, 3), np.uint8)
        canvas[:] = np.linspace(40, 200, 6000).astype(np.uint8)[None, :, None]
        face = read_image({str(source)!r})[0:400, 500:800]
        canvas[1500:2300, 2500:3100] = cv2.resize(face, (600, 800), interpolation=cv2.INTER_CUBIC)
        result = restore_photo(canvas, identity_restorer, detector, 512)
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start) / 1024
        print(result.num_faces, result.image.shape == canvas.shape, detector.last_scale, round(grown))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    faces, same_shape, scale, grown_mb = out.stdout.split()[-4:]
    assert int(faces) == 1 and same_shape == "True" and float(scale) < 1
    assert int(grown_mb) < 1024, f"peak memory grew by {grown_mb} MB"
