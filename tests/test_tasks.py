"""The authors' colorization, inpainting and segmentation-to-face (faces/tasks.py) against their outputs
(../shared/fixtures/upstream_suite/tasks.npz, section (g): the generator gpen_bfr256_small.pth), with the
README's uint8 rule: at most 1e-3 of the elements differ, by at most 4, the rest identical. The pure
OpenCV/numpy steps (the colorization's YUV swap, the brush strokes) are checked bit-exactly.
The fixtures are BGR; the tasks take and return RGB."""
import numpy as np
import pytest
from conftest import need_shared

from faces.tasks import (FaceGenerator, brush_strokes, colorize, inpaint, load_face_generator,
                         missing_from_mask_image, paint_missing, segmentation_to_face)
from utils.errors import UserError


def rgb(bgr):
    return np.ascontiguousarray(bgr[..., ::-1])


def assert_uint8_close(ours, ref, max_diff=4, max_fraction=1e-3):
    assert ours.shape == ref.shape and ours.dtype == np.uint8
    diff = np.abs(ours.astype(np.int16) - ref.astype(np.int16))
    assert diff.max() <= max_diff and (diff > 0).mean() <= max_fraction, \
        f"{(diff > 0).sum()} of {diff.size} elements differ, max {diff.max()}"


@pytest.fixture(scope="module")
def folder():
    return need_shared("fixtures", "upstream_suite")


@pytest.fixture(scope="module")
def data(folder):
    return np.load(folder / "tasks.npz")


@pytest.fixture(scope="module")
def face_generator(folder):
    """The fixture's generator, in dygraph (exporting it takes 20-40 s on a busy CI machine; the predictor
    path is checked on the smaller SR generator below)."""
    return FaceGenerator(load_face_generator(str(folder / "gpen_bfr256_small.pth"), in_size=256), backend="dygraph")


def small_sr_generator(folder):
    from model.generator import FullGenerator
    from model.loading import GENERATOR_WEIGHTS, set_weights
    from utils.weights import read_state_dict

    state = read_state_dict(str(folder / "gpen_sr_small.pth"), GENERATOR_WEIGHTS).state
    g = FullGenerator(128, 64, 8, channel_multiplier=1, narrow=0.03125, in_size=64)
    set_weights(g, state, "gpen_sr_small.pth")
    return g


def test_colorization_at_the_generator_size_and_at_another(face_generator, data):
    assert_uint8_close(rgb(colorize(face_generator, rgb(data["color256/gray"]))), data["color256/out"])
    assert_uint8_close(rgb(face_generator(rgb(data["color300/gray"]))), data["color300/gan_out"])
    assert_uint8_close(rgb(colorize(face_generator, rgb(data["color300/gray"]))), data["color300/out"], max_diff=3)


def test_colorization_luminance_swap_is_bit_exact(data):
    """On the stored network output: resize, the gray input's Y channel, back to RGB."""
    stored_output = rgb(data["color300/gan_out"])
    out = colorize(lambda gray: stored_output, rgb(data["color300/gray"]))
    np.testing.assert_array_equal(rgb(out), data["color300/out"])


def test_brush_strokes_reproduce_the_authors_with_their_seed(data):
    """np.random.seed(7707) + demo.brush_stroke_mask on the 256-px face == RandomState(7707) here."""
    import cv2

    photo = cv2.imread(str(need_shared("data", "celeba_hq", "021612.jpg")), cv2.IMREAD_COLOR)
    face = rgb(cv2.resize(photo, (256, 256), interpolation=cv2.INTER_AREA))
    missing = brush_strokes(256, 256, np.random.RandomState(7707))
    np.testing.assert_array_equal(rgb(paint_missing(face, missing)), data["inpaint/masked"])
    assert missing.mean() == pytest.approx(data["inpaint/stroke"].mean())


def test_inpainting(face_generator, data):
    assert_uint8_close(rgb(inpaint(face_generator, rgb(data["inpaint/masked"]))), data["inpaint/out"])


def test_segmentation_to_face(face_generator, data):
    assert_uint8_close(rgb(segmentation_to_face(face_generator, rgb(data["seg/input"]))), data["seg/out"])


def test_default_backend_is_the_checked_predictor_and_agrees_with_dygraph(folder):
    g = small_sr_generator(folder)
    faces = rgb(np.load(folder / "gpen_sr_small.npz")["input_u8"])
    served = FaceGenerator(g)
    assert_uint8_close(served(faces), FaceGenerator(g, backend="dygraph")(faces))
    assert served.backend == "predictor"  # checked against dygraph on that first batch, no fallback


def test_batches_equal_single_faces(face_generator, data):
    faces = np.stack([rgb(data["inpaint/masked"]), rgb(data["color256/gray"])])
    batch = face_generator(faces)
    assert batch.shape == (2, 256, 256, 3)
    for face, out in zip(faces, batch):
        assert_uint8_close(face_generator(face), out, max_diff=1)


def test_strokes_axes_on_a_wide_image():
    """The authors read PIL's (width, height) as (h, w): on a wide image their strokes stay within x <=
    height (plus half a stroke); ours cover the width."""
    reach = {}
    for authors_axes in (True, False):
        columns = np.zeros(256, bool)
        for seed in range(20):
            columns |= brush_strokes(64, 256, np.random.RandomState(seed), authors_axes=authors_axes).any(axis=0)
        reach[authors_axes] = np.flatnonzero(columns).max()
    assert reach[True] <= 64 + 40 < reach[False]


def test_mask_image_white_is_missing_and_is_resized():
    mask = np.zeros((8, 8, 3), np.uint8)
    mask[:4, :] = 255
    missing = missing_from_mask_image(mask, (16, 16, 3))
    assert missing.shape == (16, 16) and missing[:8].all() and not missing[8:].any()
    image = np.full((16, 16, 3), 7, np.uint8)
    painted = paint_missing(image, missing)
    assert (painted[:8] == 255).all() and (painted[8:] == 7).all() and (image == 7).all()


def test_a_file_of_other_sizes_is_one_user_error(folder):
    with pytest.raises(UserError, match="in_size 256, out_size 256.*--in_size 256"):
        load_face_generator(str(folder / "gpen_bfr256_small.pth"), in_size=512)


def test_fresh_noise_mode_changes_the_sr_output_between_calls(folder):
    """The authors' unseeded noise (noise_rng given) differs from call to call; the default does not."""
    g = small_sr_generator(folder)
    faces = rgb(np.load(folder / "gpen_sr_small.npz")["input_u8"])
    seeded = FaceGenerator(g, backend="dygraph")
    fresh = FaceGenerator(g, noise_rng=np.random.default_rng())
    assert seeded(faces).shape == (2, 128, 128, 3)
    np.testing.assert_array_equal(seeded(faces), seeded(faces))
    assert (fresh(faces) != fresh(faces)).mean() > 0.01
