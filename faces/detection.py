"""Face detection with five landmarks: the common result type and the shared post-processing of every
detector (the factory that picks one is faces/detect.py).

Conventions: images are RGB uint8 HWC. Coordinates are in pixels of the image given to `detect`, with
pixel centres at integer positions (the convention of cv2.warpAffine). Landmarks are ordered as in the
alignment template: the eye on the image's left, the eye on the image's right, the nose tip, the mouth
corner on the image's left, the mouth corner on the image's right.
"""
from dataclasses import dataclass

import cv2
import numpy as np

from utils.errors import UserError

# Longest image side the detectors look at. Larger photos are detected on a copy shrunk to this size and
# the boxes are mapped back: bounds the detectors' memory and time on 24-megapixel photos while a face
# that is 40 px wide in a 6000 px photo is still 20 px wide, MTCNN's smallest face.
DEFAULT_MAX_SIDE = 3000


@dataclass
class Faces:
    """Detected faces: boxes (N,4) x1,y1,x2,y2; scores (N,); landmarks (N,5,2) x,y (see module doc)."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    @staticmethod
    def empty():
        return Faces(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))

    def __len__(self):
        return len(self.scores)

    def select(self, index):
        return Faces(self.boxes[index], self.scores[index], self.landmarks[index])

    def scaled(self, factor):
        """The same faces in an image `factor` times larger (pixel centres stay pixel centres)."""
        shift = 0.5 * (factor - 1.0)  # x_big = (x + 0.5) * factor - 0.5
        return Faces(self.boxes * factor + shift, self.scores.copy(), self.landmarks * factor + shift)

    @property
    def sizes(self):
        """Side of each face box: the larger of its width and height."""
        return np.maximum(self.boxes[:, 2] - self.boxes[:, 0], self.boxes[:, 3] - self.boxes[:, 1])


def box_overlap(boxes_a, boxes_b, mode="union"):
    """Pairwise overlap (len(a), len(b)): intersection over union, or over the smaller box ('min')."""
    a = np.asarray(boxes_a, np.float64)[:, None, :]
    b = np.asarray(boxes_b, np.float64)[None, :, :]
    inter = (np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
             * np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None))
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    denom = area_a + area_b - inter if mode == "union" else np.minimum(area_a, area_b)
    return inter / np.maximum(denom, 1e-9)


def nms(boxes, scores, threshold, mode="union"):
    """Greedy non-maximum suppression; indices of the kept boxes, best first. O(N * kept) memory."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep = []
    while order.size:
        best = order[0]
        keep.append(best)
        if order.size == 1:
            break
        overlap = box_overlap(boxes[best:best + 1], boxes[order[1:]], mode)[0]
        order = order[1:][overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)


class Detector:
    """Base of the face detectors: shrinks huge photos, filters by size, keeps at most `max_faces`.

    threshold: the detector's final score threshold (None: the detector's own default).
    min_face: smallest face side to report, in pixels of the input photo.
    max_faces: keep at most this many faces, the largest ones (0: all).
    max_side: longest side the detector looks at (see DEFAULT_MAX_SIDE).
    """

    name = "base"
    default_threshold = 0.5

    def __init__(self, threshold=None, min_face=20, max_faces=0, max_side=DEFAULT_MAX_SIDE):
        self.threshold = self.default_threshold if threshold is None else float(threshold)
        if not 0.0 < self.threshold < 1.0:
            raise UserError(f"face detection threshold must be in (0, 1), got {threshold}")
        self.min_face = float(min_face)
        self.max_faces = int(max_faces)
        self.max_side = int(max_side)
        self.last_scale = 1.0  # scale of the copy the last `detect` ran on (1: the photo itself)

    def _detect(self, image, min_face):
        """Subclasses: faces in `image` (RGB uint8) no smaller than `min_face` pixels."""
        raise NotImplementedError

    def detect(self, image):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"detect expects an RGB uint8 HWC image, got {image.dtype} {image.shape}")
        height, width = image.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        self.last_scale = scale
        if scale < 1.0:
            small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                               interpolation=cv2.INTER_AREA)
            faces = self._detect(small, self.min_face * scale).scaled(1.0 / scale)
        else:
            faces = self._detect(image, self.min_face)
        if len(faces):
            faces = faces.select(faces.sizes >= self.min_face)
        if self.max_faces > 0 and len(faces) > self.max_faces:
            faces = faces.select(np.sort(np.argsort(-faces.sizes, kind="stable")[:self.max_faces]))
        return faces

    __call__ = detect
