"""The photo pipeline around an abstract restorer: alignment, batching, paste-back, options, outputs."""
import numpy as np
import pytest
from conftest import EXAMPLES, need_mtcnn_package

from faces import (NO_FACE_NOTICE, Faces, feather_mask, identity_restorer, looks_aligned, make_comparison,
                   paste_faces, restore_aligned, restore_photo, similarity_transform, template, write_outputs)
from faces.align import align_faces, warp_region
from faces.blend import soften_small_face
from faces.restorer import array_restorer
from utils.imaging import to_images, to_network
from utils.image_io import read_image

SOLVAY = "solvay_1927.jpg"  # the repo's 800-px copy of the 1927 Solvay photo (examples/README.md)


@pytest.fixture(scope="module")
def solvay():
    """The Solvay photo and its faces, found once by the default detector."""
    from faces import build_detector

    photo = read_image(str(EXAMPLES / "photo" / SOLVAY))
    need_mtcnn_package()
    detector = build_detector("mtcnn")
    return photo, detector(photo), detector


class _NoDetector:
    def __call__(self, image):
        raise AssertionError("detection should not run when faces are given")


# --- alignment ---------------------------------------------------------------------------------------
def test_template_is_the_authors_reference_scaled_to_size():
    # Worked by hand from align_faces.py: 96x112 points, +8 in x (square), +28 (25 % padding of 112),
    # times size/168.  Left eye at 512: (30.2946 + 36) * 512/168 = 202.041, (51.6963 + 28) * 512/168 = 242.884.
    points = template(512)
    np.testing.assert_allclose(points[0], [202.041, 242.884], atol=1e-3)
    np.testing.assert_allclose(points[2], [256.077, 303.959], atol=1e-3)
    np.testing.assert_allclose(template(256), points / 2)


def _umeyama(src, dst):
    """Closed-form least-squares similarity (what the authors' align_faces.py computes)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    cov = (dst - mu_d).T @ (src - mu_s) / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.diag([1, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ d @ vt
    scale = np.trace(np.diag(s) @ d) / ((src - mu_s) ** 2).sum(1).mean()
    return np.hstack([scale * rotation, (mu_d - scale * rotation @ mu_s)[:, None]])


def test_similarity_is_the_least_squares_fit():
    rng = np.random.default_rng(1)
    for _ in range(5):
        angle, scale = rng.uniform(-0.6, 0.6), rng.uniform(0.1, 4)
        rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        landmarks = (template(512) - rng.uniform(0, 300, 2)) @ np.linalg.inv(rot).T + rng.normal(0, 2, (5, 2))
        matrix = similarity_transform(landmarks, 512)
        np.testing.assert_allclose(matrix, _umeyama(landmarks, template(512)), atol=2e-3 * scale + 1e-3)
        assert abs(matrix[0, 0] - matrix[1, 1]) < 1e-9 and abs(matrix[0, 1] + matrix[1, 0]) < 1e-9


def test_aligned_landmarks_land_on_the_template():
    landmarks = template(512) * 0.1 + [40, 30]  # a 51 px face, exactly similar to the template
    matrix = similarity_transform(landmarks, 256)
    mapped = landmarks @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(mapped, template(256), atol=1e-3)


# --- the round trip and the untouched background ------------------------------------------------------
@pytest.mark.parametrize("size", [256, 512])
def test_identity_round_trip_reproduces_the_faces(solvay, size):
    photo, faces, _ = solvay
    result = restore_photo(photo, identity_restorer, _NoDetector(), size, faces=faces)
    assert result.image.shape == photo.shape and result.num_faces == len(faces)
    for x1, y1, x2, y2 in np.round(result.boxes).astype(int):
        diff = np.abs(result.image[y1:y2, x1:x2].astype(int) - photo[y1:y2, x1:x2].astype(int))
        assert diff.mean() <= 2.0 and np.percentile(diff, 95) <= 2, (size, diff.mean())


def test_background_is_bit_identical_beyond_the_feathering_margin(solvay):
    photo, faces, _ = solvay
    rng = np.random.default_rng(0)

    def noise_restorer(batch):  # the worst a restorer can do
        return rng.integers(0, 256, batch.shape, dtype=np.uint8)

    result = restore_photo(photo, noise_restorer, _NoDetector(), 256, faces=faces)
    touched = np.zeros(photo.shape[:2], bool)
    for (x0, y0, x1, y1), (bx1, by1, bx2, by2) in zip(result.regions, result.boxes):
        touched[y0:y1, x0:x1] = True
        # the margin (the warped crop square) stays within 1.5 face sides of the face box
        side = max(bx2 - bx1, by2 - by1)
        assert x0 >= bx1 - 1.5 * side and x1 <= bx2 + 1.5 * side and y0 >= by1 - 1.5 * side and y1 <= by2 + 1.5 * side
    assert np.array_equal(result.image[~touched], photo[~touched])
    assert 0.05 < touched.mean() < 0.9
    # ... and the faces themselves did change
    x1, y1, x2, y2 = np.round(result.boxes[0]).astype(int)
    assert np.abs(result.image[y1:y2, x1:x2].astype(int) - photo[y1:y2, x1:x2]).mean() > 20


def test_upscaled_output_size_and_background(solvay):
    import cv2

    photo, faces, _ = solvay
    result = restore_photo(photo, identity_restorer, _NoDetector(), 256, upscale=2, faces=faces)
    assert result.image.shape == (2 * photo.shape[0], 2 * photo.shape[1], 3)
    plain = cv2.resize(photo, (2 * photo.shape[1], 2 * photo.shape[0]), interpolation=cv2.INTER_CUBIC)
    touched = np.zeros(plain.shape[:2], bool)
    for x0, y0, x1, y1 in result.regions:
        touched[y0:y1, x0:x1] = True
    assert np.array_equal(result.image[~touched], plain[~touched])
    # boxes are reported in output pixels
    np.testing.assert_allclose(result.boxes[0], (faces.boxes[0] + 0.5) * 2 - 0.5, atol=1e-3)
    odd = restore_photo(photo, identity_restorer, _NoDetector(), 256, upscale=1.5, faces=faces)
    assert odd.image.shape == (round(1.5 * photo.shape[0]), round(1.5 * photo.shape[1]), 3)


def test_alpha_zero_keeps_the_photo(solvay):
    photo, faces, _ = solvay
    result = restore_photo(photo, lambda b: 255 - b, _NoDetector(), 256, alpha=0.0, faces=faces)
    assert np.array_equal(result.image, photo)
    half = restore_photo(photo, lambda b: 255 - b, _NoDetector(), 256, alpha=0.5, faces=faces)
    full = restore_photo(photo, lambda b: 255 - b, _NoDetector(), 256, alpha=1.0, faces=faces)
    change_half = np.abs(half.image.astype(int) - photo).sum()
    change_full = np.abs(full.image.astype(int) - photo).sum()
    assert 0.4 < change_half / change_full < 0.6


def test_restorer_is_called_once_per_batch(solvay):
    photo, faces, _ = solvay
    calls = []

    def counting(batch):
        calls.append(len(batch))
        return batch.copy()

    restore_photo(photo, counting, _NoDetector(), 256, batch_size=4, faces=faces)
    assert sum(calls) == len(faces) and max(calls) <= 4 and len(calls) == -(-len(faces) // 4)
    with pytest.raises(ValueError, match="restorer must return"):
        restore_photo(photo, lambda b: b[:, ::2], _NoDetector(), 256, faces=faces)


def test_photo_without_faces_comes_back_unchanged(solvay):
    _, _, detector = solvay
    flat = np.tile(np.linspace(30, 220, 640).astype(np.uint8)[None, :, None], (480, 1, 3))
    result = restore_photo(flat, identity_restorer, detector, 512)
    assert result.notice == NO_FACE_NOTICE and result.num_faces == 0
    assert np.array_equal(result.image, flat) and result.image is not flat
    assert restore_photo(flat, identity_restorer, detector, 512, upscale=2).image.shape == (960, 1280, 3)


# --- blending ----------------------------------------------------------------------------------------
def test_overlapping_faces_are_not_darkened_or_brightened():
    size = 64
    background = np.full((200, 200, 3), 100, np.uint8)
    faces = np.full((2, size, size, 3), 200, np.uint8)
    # two crops mapped to the photo at scale 1, 20 px apart: they overlap over most of their area
    matrices = np.array([[[1, 0, -60], [0, 1, -60]], [[1, 0, -80], [0, 1, -60]]], np.float64)
    out, _ = paste_faces(background, faces, matrices)
    assert out.min() >= 100 and out.max() <= 200
    assert (out[95:110, 100:125] == 200).all()  # inside both masks: exactly the face colour
    single, _ = paste_faces(background, faces[:1], matrices[:1])
    assert np.array_equal(out[:, :85], single[:, :85])  # left of the second face nothing changes


def test_mask_is_zero_at_the_edge_and_one_inside():
    mask = feather_mask(256)
    assert mask[0].max() == 0 and mask[:, -1].max() == 0 and mask[128, 128] == 1
    assert mask[128, 40] == 1 and 0 < mask[128, 15] < 1
    assert np.all(np.diff(mask[128, :128]) >= 0)  # rises monotonically


def test_small_faces_are_softened():
    size = 64
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    background = np.zeros((100, 100, 3), np.uint8)
    matrices = np.array([[[1, 0, -10], [0, 1, -10]]], np.float64)
    small, _ = paste_faces(background, faces, matrices, face_sizes=[40])
    large, _ = paste_faces(background, faces, matrices, face_sizes=[400])
    centre = (slice(40, 60), slice(40, 60))
    def roughness(image):
        return np.abs(np.diff(image[centre].astype(int), axis=1)).mean()

    assert roughness(small) < 0.8 * roughness(large)
    flat = np.full((size, size, 3), 77, np.uint8)
    assert np.array_equal(soften_small_face(flat), flat)


def test_big_faces_are_shrunk_before_warping():
    """A face four times larger than the crop: area averaging keeps a fine stripe pattern gray instead
    of aliasing it into a coarse false pattern."""
    stripes = np.zeros((1024, 1024, 3), np.uint8)
    stripes[:, ::2] = 255
    crops, matrices = align_faces(stripes, [template(256) * 4 + 1.5], 256)  # photo -> crop at scale 1/4
    np.testing.assert_allclose(matrices[0], [[0.25, 0, -0.375], [0, 0.25, -0.375]], atol=1e-6)
    inner = crops[0][32:-32, 32:-32].astype(float)
    assert abs(inner.mean() - 127.5) < 3 and inner.std() < 10
    assert warp_region(matrices[0], 256, stripes.shape) == (0, 0, 1024, 1024)


# --- aligned inputs, outputs, restorers --------------------------------------------------------------
def test_aligned_face_detection_heuristic(solvay):
    photo, faces, detector = solvay
    crops, _ = align_faces(photo, faces.landmarks[:1], 512)
    assert looks_aligned(crops[0], detector)
    assert not looks_aligned(photo, detector)  # not square
    assert not looks_aligned(photo[:, :568], detector)  # square, many faces off the template
    assert looks_aligned(np.zeros((512, 512, 3), np.uint8))
    assert not looks_aligned(np.zeros((300, 300, 3), np.uint8))


def test_restore_aligned_keeps_the_size():
    face = np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    result = restore_aligned(face, identity_restorer, 256)
    assert result.image.shape == face.shape and result.crops_in.shape == (1, 256, 256, 3)
    assert np.array_equal(restore_aligned(face, lambda b: 255 - b, 300, alpha=0.0).image, face)


def test_outputs_are_written(solvay, tmp_path):
    photo, faces, _ = solvay
    result = restore_photo(photo, identity_restorer, _NoDetector(), 256, faces=faces.select(np.arange(2)))
    paths = write_outputs(str(tmp_path), "solvay", photo, result, save_faces=True)
    names = [p.split("/")[-1] for p in paths]
    assert names == ["solvay.png", "solvay_compare.jpg", "solvay_face00.png", "solvay_face01.png"]
    assert read_image(paths[2]).shape == (256, 512, 3)
    assert make_comparison(photo[::2, ::2], photo).shape == (photo.shape[0], 2 * photo.shape[1], 3)


def test_restorer_conversions():
    faces = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    x = to_network(faces)
    assert x.shape == (3, 3, 8, 8) and x.min() >= -1 and x.max() <= 1
    assert np.array_equal(to_images(x), faces)
    assert np.array_equal(array_restorer(lambda a: -a)(faces), 255 - faces)
    assert np.array_equal(to_images(np.full((1, 3, 2, 2), 3.0)), np.full((1, 2, 2, 3), 255))


def test_generator_restorer_runs_a_paddle_layer():
    import paddle

    from faces.restorer import generator_restorer

    class Negate(paddle.nn.Layer):
        def forward(self, x):
            return -x, None

    faces = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    assert np.array_equal(generator_restorer(Negate())(faces), 255 - faces)


def test_faces_select_and_scale():
    faces = Faces(np.array([[0, 0, 10, 20]], np.float32), np.ones(1, np.float32), np.zeros((1, 5, 2), np.float32))
    assert faces.sizes.tolist() == [20]
    np.testing.assert_allclose(faces.scaled(2).boxes, [[0.5, 0.5, 20.5, 40.5]])
