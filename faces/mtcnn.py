"""MTCNN (Zhang et al. 2016) in Paddle: P-Net proposes, R-Net filters, O-Net refines and adds landmarks.

The layers mirror the Keras definition of the `mtcnn` package 1.0.0 whose weights we load, because the
weights are only correct for that exact graph:
- input RGB, (pixel - 127.5) / 128, in normal (H, W) orientation;
- 'valid' convolutions; max-pooling with TensorFlow's 'same' padding (extra row/column at the end)
  where Keras says 'same';
- PReLU with one slope per channel;
- before the dense layers of R-Net and O-Net the NHWC feature map is permuted to (W, H, C) and then
  flattened: this keeps the dense weights that were trained in Caffe on transposed (W, H) images.
Layout changes done once when loading: conv kernels HWIO -> OIHW, PReLU slopes (1,1,C) -> (C,); Keras
dense kernels (in, out) are already Paddle's Linear layout.
"""
import math

import cv2
import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from faces.detection import Detector, Faces, nms
from faces.mtcnn_weights import load_mtcnn_weights

PNET_CELL = 12  # P-Net looks at 12x12 windows ...
PNET_STRIDE = 2  # ... every 2 pixels of the scaled image


def pool_same(x, kernel, stride):
    """Max-pooling with TensorFlow 'SAME' padding: output ceil(n / stride), padding mostly at the end."""
    pads = []
    for n in (x.shape[2], x.shape[3]):
        total = max((math.ceil(n / stride) - 1) * stride + kernel - n, 0)
        pads += [total // 2, total - total // 2]  # [top, bottom, left, right]
    return F.max_pool2d(x, kernel, stride, padding=pads)  # padded cells never win the max


def _flatten_keras_order(x):
    """NCHW -> the (W, H, C) flattening of the Keras graph (Permute((2, 1, 3)) then Flatten)."""
    return paddle.flatten(paddle.transpose(x, [0, 3, 2, 1]), 1)


class PNet(nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2D(3, 10, 3), nn.PReLU(10)
        self.conv2, self.prelu2 = nn.Conv2D(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2D(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2D(32, 4, 1)  # box regression
        self.conv4_2 = nn.Conv2D(32, 2, 1)  # face / not face

    def forward(self, x):
        x = pool_same(self.prelu1(self.conv1(x)), 2, 2)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_1(x), F.softmax(self.conv4_2(x), axis=1)[:, 1]


class RNet(nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2D(3, 28, 3), nn.PReLU(28)
        self.conv2, self.prelu2 = nn.Conv2D(28, 48, 3), nn.PReLU(48)
        self.conv3, self.prelu3 = nn.Conv2D(48, 64, 2), nn.PReLU(64)
        self.fc4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.fc5_1 = nn.Linear(128, 4)
        self.fc5_2 = nn.Linear(128, 2)

    def forward(self, x):
        x = pool_same(self.prelu1(self.conv1(x)), 3, 2)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2)
        x = self.prelu4(self.fc4(_flatten_keras_order(self.prelu3(self.conv3(x)))))
        return self.fc5_1(x), F.softmax(self.fc5_2(x), axis=1)[:, 1]


class ONet(nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2D(3, 32, 3), nn.PReLU(32)
        self.conv2, self.prelu2 = nn.Conv2D(32, 64, 3), nn.PReLU(64)
        self.conv3, self.prelu3 = nn.Conv2D(64, 64, 3), nn.PReLU(64)
        self.conv4, self.prelu4 = nn.Conv2D(64, 128, 2), nn.PReLU(128)
        self.fc5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.fc6_1 = nn.Linear(256, 4)  # box regression
        self.fc6_2 = nn.Linear(256, 10)  # landmarks: x1..x5, y1..y5 relative to the box
        self.fc6_3 = nn.Linear(256, 2)  # face / not face

    def forward(self, x):
        x = pool_same(self.prelu1(self.conv1(x)), 3, 2)
        x = F.max_pool2d(self.prelu2(self.conv2(x)), 3, 2)
        x = pool_same(self.prelu3(self.conv3(x)), 2, 2)
        x = self.prelu5(self.fc5(_flatten_keras_order(self.prelu4(self.conv4(x)))))
        return self.fc6_1(x), self.fc6_2(x), F.softmax(self.fc6_3(x), axis=1)[:, 1]


def load_keras_weights(net, arrays):
    """Copy the Keras `get_weights()` list into `net` (layers in definition order)."""
    params = []
    for layer in net.sublayers():
        if isinstance(layer, (nn.Conv2D, nn.Linear)):
            params += [(layer.weight, "kernel"), (layer.bias, "bias")]
        elif isinstance(layer, nn.PReLU):
            params.append((layer.parameters()[0], "alpha"))
    if len(params) != len(arrays):
        raise ValueError(f"{type(net).__name__}: {len(arrays)} weight arrays for {len(params)} parameters")
    for (param, kind), array in zip(params, arrays):
        if kind == "kernel" and array.ndim == 4:
            array = array.transpose(3, 2, 0, 1)  # HWIO -> OIHW
        elif kind == "alpha":
            array = array.reshape(-1)
        if tuple(param.shape) != array.shape:
            raise ValueError(f"{type(net).__name__}: weight of shape {array.shape} for a parameter "
                             f"of shape {tuple(param.shape)}")
        param.set_value(array.astype(np.float32))
    net.eval()
    return net


def normalize(pixels):
    """uint8 NHWC -> float32 NCHW in MTCNN's input range."""
    return ((pixels.astype(np.float32) - 127.5) / 128.0).transpose(0, 3, 1, 2)


def square(boxes):
    """Boxes grown to squares around the same centres."""
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=1)


def regress(boxes, offsets):
    """Apply the networks' box offsets (fractions of the box's width/height)."""
    size = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]] * 2, axis=1)
    return boxes + offsets * size


def crop_patches(image, boxes, size):
    """Square boxes cut from `image` (pixels round(x1) .. round(x2) - 1, same in y) and resized to
    size x size, uint8.

    Outside the image the patch is mid-gray, which normalises to 0 (the Keras code's extrapolation)."""
    height, width = image.shape[:2]
    patches = np.empty((len(boxes), size, size, 3), np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(np.round(boxes).astype(np.int64)):
        x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
        crop = image[max(y1, 0):min(y2, height), max(x1, 0):min(x2, width)]
        pad = (max(-y1, 0), max(y2 - height, 0), max(-x1, 0), max(x2 - width, 0))
        if crop.size == 0:
            patches[i] = 128
            continue
        if any(pad):
            crop = cv2.copyMakeBorder(crop, *pad, cv2.BORDER_CONSTANT, value=(128, 128, 128))
        # INTER_AREA also when enlarging small boxes: measured on the wild photos, INTER_LINEAR there
        # lets R-Net/O-Net pass a shoulder in the Solvay photo.
        patches[i] = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return patches


class MTCNNDetector(Detector):
    """The three-stage cascade. `threshold` is O-Net's (final) threshold; P-Net's and R-Net's are
    `stage_thresholds`. P-Net runs on tiles of at most `tile` x `tile` pixels so memory stays bounded."""

    name = "mtcnn"
    default_threshold = 0.8  # the mtcnn package's O-Net threshold

    def __init__(self, weight_dir=None, stage_thresholds=(0.6, 0.7), scale_factor=0.709, tile=1024,
                 batch=256, **common):
        super().__init__(**common)
        weights = load_mtcnn_weights(weight_dir)
        self.pnet = load_keras_weights(PNet(), weights["pnet"])
        self.rnet = load_keras_weights(RNet(), weights["rnet"])
        self.onet = load_keras_weights(ONet(), weights["onet"])
        self.stage_thresholds = tuple(stage_thresholds)
        self.scale_factor = scale_factor
        self.tile = int(tile)
        self.batch = int(batch)

    # P-Net over an image pyramid --------------------------------------------------------------------
    def _pnet_scale(self, image, scale):
        height, width = image.shape[:2]
        scaled_w, scaled_h = math.ceil(width * scale), math.ceil(height * scale)
        scaled = cv2.resize(image, (scaled_w, scaled_h), interpolation=cv2.INTER_AREA)
        # Tiles overlap by a window minus a stride and start on even pixels, so every 12x12 window of
        # the scaled image lies whole inside some tile.
        step = self.tile - (PNET_CELL - PNET_STRIDE)
        found = []
        for y0 in range(0, max(scaled_h - PNET_CELL, 0) + 1, step):
            for x0 in range(0, max(scaled_w - PNET_CELL, 0) + 1, step):
                tile = scaled[y0:y0 + self.tile, x0:x0 + self.tile]
                if min(tile.shape[:2]) < PNET_CELL:
                    continue
                offsets, prob = self.pnet(paddle.to_tensor(normalize(tile[None])))
                prob, offsets = prob.numpy()[0], offsets.numpy()[0]
                ys, xs = np.nonzero(prob > self.stage_thresholds[0])
                if not len(ys):
                    continue
                x1 = (x0 + xs * PNET_STRIDE).astype(np.float32)
                y1 = (y0 + ys * PNET_STRIDE).astype(np.float32)
                windows = np.stack([x1, y1, x1 + PNET_CELL, y1 + PNET_CELL], axis=1)
                boxes = regress(windows, offsets[:, ys, xs].T) / scale
                found.append(np.concatenate([boxes, prob[ys, xs, None]], axis=1))
        if not found:
            return np.zeros((0, 5), np.float32)
        found = np.concatenate(found)
        return found[nms(found[:, :4], found[:, 4], 0.5)]

    def _proposals(self, image, min_face):
        min_face = max(float(min_face), PNET_CELL)
        scale = PNET_CELL / min_face
        found = []
        while min(image.shape[:2]) * scale >= PNET_CELL:
            found.append(self._pnet_scale(image, scale))
            scale *= self.scale_factor
        found = np.concatenate(found) if found else np.zeros((0, 5), np.float32)
        return found[nms(found[:, :4], found[:, 4], 0.7)]

    def _run_batched(self, net, patches):
        outputs = []
        for start in range(0, len(patches), self.batch):
            result = net(paddle.to_tensor(normalize(patches[start:start + self.batch])))
            outputs.append([t.numpy() for t in result])
        return [np.concatenate(parts) for parts in zip(*outputs)]

    @paddle.no_grad()
    def _detect(self, image, min_face):
        boxes = self._proposals(image, min_face)
        if not len(boxes):
            return Faces.empty()
        # R-Net
        boxes = square(boxes[:, :4])
        offsets, prob = self._run_batched(self.rnet, crop_patches(image, boxes, 24))
        keep = prob > self.stage_thresholds[1]
        boxes, prob = regress(boxes[keep], offsets[keep]), prob[keep]
        boxes = boxes[nms(boxes, prob, 0.7)]
        if not len(boxes):
            return Faces.empty()
        # O-Net
        boxes = square(boxes)
        offsets, marks, prob = self._run_batched(self.onet, crop_patches(image, boxes, 48))
        side = (boxes[:, 2] - boxes[:, 0])[:, None]
        # Landmarks are fractions of the O-Net input box: pixel index = first pixel of the box + fraction * side.
        origin = np.round(boxes[:, :2])  # the first pixel crop_patches took
        landmarks = np.stack([origin[:, 0:1] + marks[:, :5] * side, origin[:, 1:2] + marks[:, 5:] * side], axis=2)
        boxes = regress(boxes, offsets)
        keep = prob > self.threshold
        boxes, prob, landmarks = boxes[keep], prob[keep], landmarks[keep]
        keep = nms(boxes, prob, 0.7, mode="min")
        return Faces(boxes[keep].astype(np.float32), prob[keep].astype(np.float32),
                     landmarks[keep].astype(np.float32))
