"""Restore every face of an ordinary photo: detect -> align -> restore in batches -> paste back.

The network is an abstract `restorer`: a callable taking aligned faces, uint8 (N, S, S, 3) RGB, and
returning restored faces of the same shape and type (see faces.restorer for Paddle generators and
exported predictors). It is called once per batch of at most `batch_size` faces.
"""
import os
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from faces.align import align_faces, template
from faces.blend import SMALL_FACE, paste_faces
from faces.detection import Faces
from utils.image_io import write_image

NO_FACE_NOTICE = "no face found: the photo is returned unchanged"


@dataclass
class PhotoResult:
    """What `restore_photo` produced. Coordinates are in pixels of the output photo."""

    image: np.ndarray  # the restored photo, uint8 RGB, input size times `upscale`
    crops_in: np.ndarray  # (N, S, S, 3) aligned faces given to the restorer
    crops_out: np.ndarray  # (N, S, S, 3) what the restorer returned
    boxes: np.ndarray  # (N, 4) face boxes x1, y1, x2, y2
    landmarks: np.ndarray  # (N, 5, 2)
    scores: np.ndarray  # (N,) detector scores
    regions: list = field(default_factory=list)  # (x0, y0, x1, y1) rectangles that may differ from the background
    notice: str = ""  # for people, e.g. NO_FACE_NOTICE; empty when all went as expected
    timings: dict = field(default_factory=dict)  # seconds: detect, align, restore, blend

    @property
    def num_faces(self):
        return len(self.crops_in)


def resize_background(image, upscale):
    """The photo scaled by `upscale` with a plain resize (the photo itself when upscale is 1)."""
    if upscale == 1:
        return image
    height, width = image.shape[:2]
    out_w, out_h = max(1, round(width * upscale)), max(1, round(height * upscale))
    method = cv2.INTER_CUBIC if upscale > 1 else cv2.INTER_AREA
    return cv2.resize(image, (out_w, out_h), interpolation=method)


def run_restorer(restorer, crops, batch_size):
    """Restored crops, the restorer called once per batch of at most `batch_size` faces."""
    restored = np.empty_like(crops)
    for start in range(0, len(crops), batch_size):
        batch = crops[start:start + batch_size]
        out = np.asarray(restorer(batch))
        if out.shape != batch.shape or out.dtype != np.uint8:
            raise ValueError(f"the restorer must return uint8 {batch.shape}, got {out.dtype} {out.shape}")
        restored[start:start + batch_size] = out
    return restored


def restore_photo(image, restorer, detector, size, batch_size=4, alpha=1.0, upscale=1.0,
                  small_face=SMALL_FACE, faces=None):
    """Restore every face of `image` (uint8 RGB HWC) and blend it back; returns a PhotoResult.

    detector: a faces.detection.Detector (or any callable image -> Faces); unused when `faces` is given.
    size: the restorer's face size (256, 512, ...). alpha: 1 = restored faces, 0 = original.
    upscale: factor for the output photo (the background is resized plainly, faces come from the
    full-resolution crops). small_face: faces smaller than this (output pixels) get a light blur.
    A photo without faces comes back unchanged (resized by `upscale`) with `notice` = NO_FACE_NOTICE.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"restore_photo expects an RGB uint8 HWC image, got {image.dtype} {image.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if upscale <= 0:
        raise ValueError(f"upscale must be positive, got {upscale}")
    timings = {}
    start = time.perf_counter()
    faces = detector(image) if faces is None else faces
    timings["detect"] = time.perf_counter() - start

    background = resize_background(image, upscale)
    height, width = image.shape[:2]
    sx, sy = width / background.shape[1], height / background.shape[0]
    # output pixel q -> input pixel p = (q + 0.5) * s - 0.5 (pixel centres map to pixel centres)
    out_to_in = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
    scale_out = np.array([1 / sx, 1 / sy])

    def to_output(points):
        return (points + 0.5) * scale_out - 0.5

    empty = np.zeros((0, size, size, 3), np.uint8)
    if len(faces) == 0:
        unchanged = background.copy() if background is image else background
        return PhotoResult(unchanged, empty, empty.copy(), np.zeros((0, 4), np.float32),
                           np.zeros((0, 5, 2), np.float32), np.zeros((0,), np.float32),
                           notice=NO_FACE_NOTICE, timings=dict(timings, align=0.0, restore=0.0, blend=0.0))

    start = time.perf_counter()
    crops, matrices = align_faces(image, faces.landmarks, size)
    timings["align"] = time.perf_counter() - start

    start = time.perf_counter()
    restored = run_restorer(restorer, crops, batch_size)
    timings["restore"] = time.perf_counter() - start

    start = time.perf_counter()
    boxes = to_output(faces.boxes.reshape(-1, 2, 2)).reshape(-1, 4)
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    # paste_faces returns a new array: `image` is never modified
    photo, regions = paste_faces(background, restored, matrices @ out_to_in, face_sizes=sides,
                                 alpha=alpha, small_face=small_face)
    timings["blend"] = time.perf_counter() - start
    return PhotoResult(photo, crops, restored, boxes.astype(np.float32),
                       to_output(faces.landmarks).astype(np.float32), faces.scores.copy(),
                       regions=regions, timings=timings)


def restore_aligned(image, restorer, size, alpha=1.0):
    """Restore a photo that already is an aligned face: resized to `size`, restored, resized back,
    mixed with the input by `alpha` (1 = restored only)."""
    height, width = image.shape[:2]
    crop = image if (height, width) == (size, size) else cv2.resize(
        image, (size, size), interpolation=cv2.INTER_AREA if height > size else cv2.INTER_CUBIC)
    out = run_restorer(restorer, crop[None], 1)[0]
    photo = out if (height, width) == (size, size) else cv2.resize(out, (width, height), interpolation=cv2.INTER_CUBIC)
    if alpha < 1.0:
        mixed = alpha * photo.astype(np.float32) + (1.0 - alpha) * image.astype(np.float32)
        photo = np.clip(np.round(mixed), 0, 255).astype(np.uint8)
    boxes = np.array([[0, 0, width, height]], np.float32)
    landmarks = (template(size) + 0.5) * [width / size, height / size] - 0.5
    return PhotoResult(photo, crop[None], out[None], boxes, landmarks[None].astype(np.float32),
                       np.ones(1, np.float32), regions=[(0, 0, width, height)])


ALIGNED_SIDES = (128, 256, 512, 1024, 2048)


def looks_aligned(image, detector=None, tolerance=0.1):
    """Guess whether `image` already is an aligned face crop (what the training data look like).

    Heuristic: the image must be square. With a detector, the largest face it finds must have its five
    landmarks within `tolerance` x side (mean distance) of the alignment template scaled to the image;
    when it finds no face (heavily degraded crops defeat detectors) or no detector is given, the side
    must be one of ALIGNED_SIDES, the sizes aligned-face data sets come in. A CLI flag overrides this.
    """
    height, width = image.shape[:2]
    if height != width:
        return False
    if detector is not None:
        faces = detector(image)
        if len(faces):
            largest = int(np.argmax(faces.sizes))
            error = np.linalg.norm(faces.landmarks[largest] - template(width), axis=1).mean()
            return bool(error <= tolerance * width)
    return width in ALIGNED_SIDES


def make_comparison(before, after):
    """Before | after side by side at the size of `after` (a plain resize of `before` when needed)."""
    if before.shape[:2] != after.shape[:2]:
        before = cv2.resize(before, (after.shape[1], after.shape[0]), interpolation=cv2.INTER_CUBIC)
    return np.concatenate([before, after], axis=1)


def write_outputs(folder, stem, before, result, save_faces=False, ext=".png"):
    """Write <stem>.<ext> (restored photo), <stem>_compare.jpg (before | after) and, with `save_faces`,
    <stem>_face00.<ext>, ... (aligned input | restored crop). Returns the written paths."""
    paths = [os.path.join(folder, stem + ext), os.path.join(folder, stem + "_compare.jpg")]
    write_image(paths[0], result.image)
    write_image(paths[1], make_comparison(before, result.image))
    if save_faces:
        for i, (crop_in, crop_out) in enumerate(zip(result.crops_in, result.crops_out)):
            paths.append(os.path.join(folder, f"{stem}_face{i:02d}{ext}"))
            write_image(paths[-1], np.concatenate([crop_in, crop_out], axis=1))
    return paths
