"""The authors' FaceEnhancement (faces/enhance.py) and their alignment (faces/align.py) against the
fixtures made by their code (../shared/fixtures/upstream_suite, section (f)).

The OpenCV/numpy stages are run on the authors' STORED inputs and must give their arrays bit for bit;
the whole procedure with stand-in networks that return the stored network outputs must give their
photos bit for bit; with our networks end to end the README's bounds apply. "Bit for bit" holds on the
OpenCV release the fixtures were made with (manifest `versions.opencv`); another release rounds its warps
and blurs differently, so there `same_as_opencv_made_it` allows that release's rounding and no more."""
import json

import numpy as np
import pytest
from conftest import need_shared

from faces.align import authors_crops, authors_transforms, points_from_retinaface, template
from faces.enhance import (FaceEnhancer, is_small, kept_faces, mix_faces, paste_back, paste_masks)
from utils.errors import UserError

SUITE = ("fixtures", "upstream_suite")
KEPT = [0, 1, 2]  # the detections scoring >= 0.9 (README (f))


@pytest.fixture(scope="module")
def fx():
    return np.load(str(need_shared(*SUITE, "enhance.npz")))


@pytest.fixture(scope="module")
def fixture_opencv():
    return json.loads(need_shared(*SUITE, "manifest_suite.json").read_text())["versions"]["opencv"]


def same_as_opencv_made_it(ours, theirs, fixture_opencv):
    """Equal bit for bit on the fixtures' OpenCV. On another release (OpenCV 5.1 moves 1e-4 of a warp's
    bytes by 1 and the blurred masks by 1e-11), uint8 may differ by 1 on at most 1e-3 of the elements and
    floats by 1e-6 of the array's largest value: a wrong flag, border, size or kernel moves far more."""
    import cv2

    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype, (ours.shape, ours.dtype, theirs.dtype)
    if cv2.__version__ == fixture_opencv:
        np.testing.assert_array_equal(ours, theirs)
        return
    assert cv2.__version__.split(".")[0] == fixture_opencv.split(".")[0], (
        f"OpenCV {cv2.__version__}: the fixtures were made with OpenCV {fixture_opencv} and another major release "
        f"warps differently (4.14: 10 % of the crop bytes by up to 3); for these checks "
        f"pip install -U 'opencv-python>={fixture_opencv.split('.')[0]}'")
    if theirs.dtype == np.uint8:
        diff = np.abs(ours.astype(np.int16) - theirs)
        assert diff.max() <= 1 and (diff > 0).mean() <= 1e-3, (cv2.__version__, diff.max(), (diff > 0).mean())
    else:
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6 * np.abs(theirs).max())


def rgb(image):
    """The fixtures are BGR; our procedure works on RGB (every OpenCV step is per channel)."""
    return np.ascontiguousarray(image[..., ::-1])


def _landmarks(fx, case):
    return [points_from_retinaface(fx[f"{case}/given_landms"][i]) for i in KEPT]


def _resized_photo(fx):
    import cv2

    height, width = fx["sr_x2/out"].shape[:2]  # the SR image's size (751 x 1000: the authors' crop quirk)
    return cv2.resize(fx["photo"], (width, height))


# --- alignment --------------------------------------------------------------------------------------
def test_reference_points_are_the_authors(fx):
    for size in (256, 512):
        np.testing.assert_array_equal(template(size), fx[f"align/ref_{size}"])


def test_warp_512_is_the_authors(fx, fixture_opencv):
    crops, inverses = authors_crops(fx["photo"], [points_from_retinaface(fx["landms"][1])], 512)
    same_as_opencv_made_it(crops[0], fx["align/crop512"], fixture_opencv)
    np.testing.assert_array_equal(inverses[0], fx["align/tfm_inv512"])


@pytest.mark.parametrize("case", ["nosr", "sr_x2"])
def test_crops_and_inverses_from_given_landmarks(fx, case, fixture_opencv):
    photo = fx["photo"] if case == "nosr" else _resized_photo(fx)
    crops, inverses = authors_crops(photo, _landmarks(fx, case), 256)
    same_as_opencv_made_it(crops, fx[f"{case}/orig_faces"], fixture_opencv)
    np.testing.assert_array_equal(inverses, fx[f"{case}/tfm_inv"])


def test_inverse_maps_the_template_back_onto_the_landmarks(fx):
    points = points_from_retinaface(fx["landms"][0])
    forward, inverse = authors_transforms(points, 256)
    on_template = points @ forward[:, :2].T + forward[:, 2]
    back = on_template @ inverse[:, :2].T + inverse[:, 2]
    np.testing.assert_allclose(back, points, atol=1e-3)
    with pytest.raises(ValueError, match="degenerate"):
        authors_transforms(np.ones((5, 2)), 256)


# --- the OpenCV stages on the stored inputs ---------------------------------------------------------
@pytest.mark.parametrize("case", ["nosr", "sr_x2"])
def test_masks_from_stored_parse_masks(fx, case, fixture_opencv):
    masks = paste_masks(list(fx[f"{case}/parse_masks"]), 256)
    same_as_opencv_made_it(masks, fx[f"{case}/masks_prewarp"], fixture_opencv)


def test_small_faces_and_mixing_from_stored_faces(fx, fixture_opencv):
    dets = fx["nosr/given_dets"]
    assert kept_faces(dets, fx["nosr/given_landms"]) == KEPT
    small = [is_small(dets[i]) for i in KEPT]
    assert small == [True, True, True]
    mixed = mix_faces(rgb(fx["nosr/enhanced_faces"]), rgb(fx["nosr/orig_faces"]), small, 0.6)
    same_as_opencv_made_it(rgb(mixed), fx["nosr_a06/faces_prewarp"], fixture_opencv)


@pytest.mark.parametrize("case,alpha", [("nosr_a1", 1.0), ("nosr_a06", 0.6)])
def test_paste_back_from_stored_faces_and_masks(fx, case, alpha, fixture_opencv):
    faces = mix_faces(fx["nosr/enhanced_faces"], fx["nosr/orig_faces"], [True] * 3, alpha)
    out = paste_back(fx["photo"], faces, fx["nosr/masks_prewarp"], fx["nosr/tfm_inv"])
    same_as_opencv_made_it(out, fx[f"{case}/out"], fixture_opencv)


def _authors_paste_back(base, faces, masks, inverses):
    """Their loop as written: whole-image warps, np.where, the blend over the whole image."""
    import cv2

    height, width = base.shape[:2]
    full_mask = np.zeros((height, width), np.float32)
    full_img = np.zeros(base.shape, np.uint8)
    for face, mask, inverse in zip(faces, masks, inverses):
        tmp_mask = cv2.warpAffine(mask, inverse, (width, height), flags=3)
        tmp_img = cv2.warpAffine(face, inverse, (width, height), flags=3)
        where = np.where(tmp_mask - full_mask > 0)
        full_mask[where] = tmp_mask[where]
        full_img[where] = tmp_img[where]
    full_mask = full_mask[:, :, None]
    return cv2.convertScaleAbs(base * (1 - full_mask) + full_img * full_mask)


def test_paste_back_windows_change_nothing():
    """Faces overlapping each other and the photo's edges, large and small, rotated: the windowed
    comparison and blend equal the authors' whole-image loop."""
    import cv2

    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (150, 220, 3), dtype=np.uint8)
    size = 64
    mask = cv2.GaussianBlur(np.pad(np.ones((size - 16, size - 16), np.float32), 8), (0, 0), 4)
    faces, masks, inverses = [], [], []
    for centre, scale, angle in [((30, 40), 0.8, 0.3), ((60, 50), 1.7, -0.5), ((215, 140), 0.5, 2.0),
                                 ((110, 75), 3.0, 0.1), ((-5, 148), 1.0, 0.0)]:
        rotation = cv2.getRotationMatrix2D((size / 2, size / 2), np.degrees(angle), scale)
        rotation[:, 2] += np.array(centre) - size / 2
        inverses.append(rotation)
        faces.append(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        masks.append(mask * rng.uniform(0.5, 1.0))
    faces, masks, inverses = np.stack(faces), np.stack(masks).astype(np.float32), np.stack(inverses)
    out = paste_back(base, faces, masks, inverses)
    np.testing.assert_array_equal(out, _authors_paste_back(base, faces, masks, inverses))
    assert (out != base).any()


# --- the whole procedure with stand-in networks that return the stored outputs ------------------------
class _Stored:
    """Stand-ins for the networks: check their input is the authors' and return the authors' output."""

    def __init__(self, fx, case, fixture_opencv):
        self.fx, self.case, self.fixture_opencv, self.calls = fx, case, fixture_opencv, []

    def detect(self, image):
        return self.fx[f"{self.case}/given_dets"], self.fx[f"{self.case}/given_landms"]

    def restore(self, crops):
        self.calls.append(("gpen", len(crops)))
        same_as_opencv_made_it(rgb(crops), self.fx[f"{self.case}/orig_faces"], self.fixture_opencv)
        return rgb(self.fx[f"{self.case}/enhanced_faces"])

    def parse(self, faces):
        self.calls.append(("parse", len(faces)))
        np.testing.assert_array_equal(rgb(np.stack(faces)), self.fx[f"{self.case}/enhanced_faces"])
        return list(self.fx[f"{self.case}/parse_masks"])


@pytest.mark.parametrize("case,alpha", [("nosr_a1", 1.0), ("nosr_a06", 0.6)])
def test_procedure_with_stored_network_outputs_is_bit_exact(fx, case, alpha, fixture_opencv):
    stored = _Stored(fx, "nosr", fixture_opencv)
    enhancer = FaceEnhancer(stored.detect, stored.restore, stored.parse, in_size=256, alpha=alpha, batch_size=8)
    result = enhancer.process(rgb(fx["photo"]))
    same_as_opencv_made_it(rgb(result.image), fx[f"{case}/out"], fixture_opencv)
    np.testing.assert_array_equal(result.inverses, fx["nosr/tfm_inv"])
    assert stored.calls == [("gpen", 3), ("parse", 3)]  # one call per batch, not one per face
    assert set(result.timings) == {"sr", "detect", "align", "gpen", "parse", "paste"}


def test_faces_are_batched_by_batch_size(fx, fixture_opencv):
    calls = []

    def restore(crops):
        calls.append(len(crops))
        return crops.copy()

    full = lambda faces: [np.full((512, 512), 255, np.uint8)] * len(faces)  # noqa: E731
    enhancer = FaceEnhancer(_Stored(fx, "nosr", fixture_opencv).detect, restore, full, in_size=256, batch_size=2)
    assert enhancer.process(rgb(fx["photo"])).num_faces == 3
    assert calls == [2, 1]


def test_no_face_returns_the_photo(fx):
    nothing = (np.zeros((0, 5), np.float32), np.zeros((0, 10), np.float32))
    enhancer = FaceEnhancer(lambda image: nothing, None, None, in_size=256)
    result = enhancer.process(rgb(fx["photo"]))
    np.testing.assert_array_equal(result.image, rgb(fx["photo"]))
    assert result.num_faces == 0 and "no face" in result.notice


def test_generator_larger_than_the_crop(fx, fixture_opencv):
    """out_size != in_size: the default resizes the restored faces to the crop size before mixing;
    the authors' code would fail in cv2.addWeighted, so their mode refuses it with one line."""
    import cv2

    stored = _Stored(fx, "nosr", fixture_opencv)
    doubled = lambda crops: np.stack([cv2.resize(c, (512, 512)) for c in crops])  # noqa: E731
    full = lambda faces: [np.full((512, 512), 255, np.uint8)] * len(faces)  # noqa: E731
    result = FaceEnhancer(stored.detect, doubled, full, in_size=256, out_size=512).process(rgb(fx["photo"]))
    assert result.enhanced_faces.shape == (3, 512, 512, 3) and result.image.shape == fx["photo"].shape
    with pytest.raises(UserError, match="authors' FaceEnhancement"):
        FaceEnhancer(stored.detect, doubled, full, in_size=256, out_size=512, authors=True)


# --- end to end with our networks (README (f) bounds) -------------------------------------------------
@pytest.fixture(scope="module")
def networks():
    from faces.parsenet import FaceParse
    from faces.realesrnet import RealESRNet
    from faces.tasks import FaceGenerator, load_face_generator

    folder = need_shared(*SUITE)
    generator = FaceGenerator(load_face_generator(str(folder / "gpen_bfr256_small.pth")), backend="dygraph")
    parse = FaceParse(str(folder / "parsenet_small.pth"), backend="dygraph")
    # The authors' RealESRNet: whole photo (their --tile_size 0) and their crop, which keeps a padded row.
    sr = RealESRNet(str(folder / "realesrnet_small_x2.pth"), scale=2, tile_size=0, authors_mode=True,
                    backend="dygraph")
    return generator, parse, sr


def _check_single_network_rule(ours, theirs):
    """uint8 after one network: at most 1e-3 of the elements differ, by at most 4 (README)."""
    diff = np.abs(ours.astype(np.int16) - theirs)
    assert (diff > 0).mean() <= 1e-3 and diff.max() <= 4, ((diff > 0).mean(), diff.max())


def _check_output_rule(ours, theirs):
    """The whole photo: at most 1% of the elements differ and at most 5e-4 of them by more than 2."""
    assert ours.shape == theirs.shape
    diff = np.abs(ours.astype(np.int16) - theirs)
    assert (diff > 0).mean() <= 1e-2 and (diff > 2).mean() <= 5e-4, ((diff > 0).mean(), (diff > 2).mean())


def test_end_to_end_against_the_authors(fx, networks, fixture_opencv):
    from faces.enhance import parser_of, sr_of

    generator, parse, sr = networks
    memo = {}

    def cached(name, run):  # the alpha 0.6 run sees the same crops: reuse the network outputs
        def call(x):
            key = (name, np.asarray(x).tobytes())
            if key not in memo:
                memo[key] = run(x)
            return memo[key]
        return call

    restore, parser = cached("gpen", generator), cached("parse", parser_of(parse))
    for case, stored, alpha, use_sr in [("nosr_a1", "nosr", 1.0, False), ("nosr_a06", "nosr", 0.6, False),
                                        ("sr_x2", "sr_x2", 1.0, True)]:
        enhancer = FaceEnhancer(_Stored(fx, stored, fixture_opencv).detect, restore, parser, sr=sr_of(sr) if use_sr else None,
                                in_size=256, alpha=alpha)
        result = enhancer.process(rgb(fx["photo"]))
        _check_single_network_rule(rgb(result.enhanced_faces), fx[f"{stored}/enhanced_faces"])
        flipped = (np.stack(result.parse_masks) != fx[f"{stored}/parse_masks"]).mean()
        assert flipped <= 1e-3, flipped
        _check_output_rule(rgb(result.image), fx[f"{case}/out"])
