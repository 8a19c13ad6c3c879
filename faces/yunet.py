"""YuNet (OpenCV's cv2.FaceDetectorYN) with a model file the user passes.

The network never sees more than `tile` x `tile` pixels, so its memory does not grow with the photo.
It runs over a pyramid: the photo, then halved, ..., down to a single tile; each level is cut into
tiles that overlap by a quarter tile. A face touching an inner tile edge is dropped there: faces up to
the overlap lie whole in a neighbouring tile, and larger ones lie whole at a coarser level. Duplicates
from neighbouring tiles and levels are merged by non-maximum suppression. A model that rejects input
sizes other than the one it was exported with is fed padded 640 x 640 tiles.
"""
import os

import cv2
import numpy as np

from faces.detection import Detector, Faces, nms
from utils.errors import UserError

FIXED_INPUT = 640  # input side of the YuNet models exported with a fixed size


class YuNetDetector(Detector):
    name = "yunet"
    default_threshold = 0.7

    def __init__(self, model_path, tile=1024, nms_threshold=0.3, **common):
        super().__init__(**common)
        if not os.path.isfile(model_path):
            raise UserError(f"YuNet model file not found: {model_path}")
        self.model_path = model_path
        self.nms_threshold = nms_threshold
        try:
            # The network's own score threshold sits below ours: scores are filtered after merging.
            self.net = cv2.FaceDetectorYN.create(model_path, "", (320, 320), min(self.threshold, 0.5),
                                                 nms_threshold, 5000)
        except cv2.error as err:
            raise UserError(f"not a YuNet face detection model (.onnx): {model_path} "
                            f"({str(err).strip().splitlines()[-1]})") from None
        self.tile = int(tile)
        self.fixed_size = None if self._accepts_any_size() else FIXED_INPUT
        if self.fixed_size:
            self.tile = min(self.tile, self.fixed_size)

    def _accepts_any_size(self):
        try:
            self.net.setInputSize((96, 64))
            self.net.detect(np.zeros((64, 96, 3), np.uint8))
            return True
        except cv2.error:
            return False

    def _run(self, image_bgr):
        """Raw detections (M, 15) of one tile."""
        height, width = image_bgr.shape[:2]
        if self.fixed_size:
            side = self.fixed_size
            image_bgr = cv2.copyMakeBorder(image_bgr, 0, side - height, 0, side - width, cv2.BORDER_CONSTANT)
            height = width = side
        self.net.setInputSize((width, height))
        result = self.net.detect(image_bgr)[1]
        return np.zeros((0, 15), np.float32) if result is None else np.asarray(result, np.float32)

    def _level(self, image_bgr, scale):
        """Detections (M, 15: x1, y1, x2, y2, 5 landmarks, score) of one pyramid level, in photo pixels."""
        height, width = image_bgr.shape[:2]
        overlap = self.tile // 4
        step = self.tile - overlap
        xs = list(range(0, max(width - self.tile, 0) + 1, step))
        ys = list(range(0, max(height - self.tile, 0) + 1, step))
        # Last tile flush with the far edge.
        if xs[-1] + self.tile < width:
            xs.append(width - self.tile)
        if ys[-1] + self.tile < height:
            ys.append(height - self.tile)
        found = []
        for y0 in ys:
            for x0 in xs:
                tile = image_bgr[y0:y0 + self.tile, x0:x0 + self.tile]
                rows = self._run(np.ascontiguousarray(tile))
                if not len(rows):
                    continue
                th, tw = tile.shape[:2]
                x1, y1 = rows[:, 0], rows[:, 1]
                x2, y2 = x1 + rows[:, 2], y1 + rows[:, 3]
                margin = 2.0
                cut = (((x1 < margin) & (x0 > 0)) | ((y1 < margin) & (y0 > 0))
                       | ((x2 > tw - margin) & (x0 + tw < width)) | ((y2 > th - margin) & (y0 + th < height)))
                rows = rows[~cut].copy()
                rows[:, 2] += rows[:, 0]  # x, y, w, h -> x1, y1, x2, y2
                rows[:, 3] += rows[:, 1]
                rows[:, 0:14:2] += x0
                rows[:, 1:14:2] += y0
                found.append(rows)
        if not found:
            return np.zeros((0, 15), np.float32)
        found = np.concatenate(found)
        found[:, 0:14] = (found[:, 0:14] + 0.5) / scale - 0.5  # level pixels -> photo pixels
        return found

    def _detect(self, image, min_face):
        image_bgr = np.ascontiguousarray(image[:, :, ::-1])
        found, scale, level = [], 1.0, image_bgr
        while True:
            found.append(self._level(level, scale))
            if max(level.shape[:2]) <= self.tile:
                break
            level = cv2.resize(level, (max(1, round(level.shape[1] / 2)), max(1, round(level.shape[0] / 2))),
                               interpolation=cv2.INTER_AREA)
            scale = level.shape[1] / image_bgr.shape[1]
        rows = np.concatenate(found)
        rows = rows[rows[:, 14] >= self.threshold]
        if not len(rows):
            return Faces.empty()
        boxes = rows[:, 0:4]
        keep = nms(boxes, rows[:, 14], self.nms_threshold)
        # YuNet's landmark order (subject's right eye, left eye, nose, right and left mouth corner) is,
        # in image terms, left eye, right eye, nose, left corner, right corner: the template's order.
        return Faces(boxes[keep].astype(np.float32), rows[keep, 14].astype(np.float32),
                     rows[keep, 4:14].reshape(-1, 5, 2).astype(np.float32))
