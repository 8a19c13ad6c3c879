"""RetinaFace (Deng et al., CVPR 2020) in Paddle, read from the weight files GPEN's authors use.

GPEN's authors find faces with RetinaFace: a backbone (ResNet-50 in their `RetinaFace-R50.pth`, or
MobileNet-0.25 in the widely used `mobilenet0.25_Final.pth`), a feature pyramid over its strides 8, 16
and 32, an SSH context module per level, and three 1x1 heads per level that score, box and landmark
two square anchors per feature-map cell. The network takes a BGR image minus the mean (104, 117, 123),
unscaled, at any size. The backbone and the pyramid width are read off the file.

Two ways in, one network:

* `RetinaFaceDetector.detect(rgb) -> Faces` is a detector of our pipeline (`--detector retinaface
  --detector_model FILE`, see faces/detect.py).
* `RetinaFaceDetector.detect_authors(bgr, ...) -> (dets, landms)` returns what the authors'
  `RetinaFaceDetection.detect` returns, number for number (checked against their fixtures): `dets`
  (K, 5) x1, y1, x2, y2, score and `landms` (K, 10) x0..x4, y0..y4, float32.

Their `detect` has quirks; which mode keeps which:

| the authors' `detect`                                      | authors' mode | our mode (`detect`)          |
|------------------------------------------------------------|---------------|------------------------------|
| a photo over 1500 px is shrunk to 1000 px on its long side  | kept          | kept (anchors stop at 512 px) |
| ... by `cv2.resize(fx=ss, fy=ss)`, bilinear on float32     | kept          | same size and grid, INTER_AREA |
| ... and mapped back by dividing by ss                      | kept          | pixel centres: (x + 0.5)/ss - 0.5 |
| the score column divided by ss too (scores > 1)            | kept          | the face probability         |
| landmarks returned as x0..x4, y0..y4                       | kept          | (N, 5, 2) x, y (`Faces`)     |
| score > threshold in float32; top 5000 before, 750 after NMS | kept        | kept                         |
| NMS with +1-pixel box areas, IoU > 0.4 dropped             | kept          | kept                         |

Prior boxes and decoding are the authors' in both modes: anchors at ((j + 0.5)·step, (i + 0.5)·step)
of a ceil(h/step) x ceil(w/step) map, not clipped, decoded with the variances 0.1 (centres, landmarks)
and 0.2 (log sizes).

The network is served by `deploy.checked.checked_layer` with a dynamic height and width: the oneDNN
predictor on a CPU (its first photo checked against dygraph), dygraph on a GPU. Leaky ReLUs are written
as max(x, slope·x), a form oneDNN's fuse passes accept (its conv + leaky_relu fuse crashes).
"""
import math

import cv2
import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from faces.detection import Detector, Faces
from utils.errors import UserError
from utils.weights import WeightKind, check_state_dict, read_state_dict

# The authors' cfg_re50 / cfg_mnet (face_detect/data/config.py); both backbones share these.
PRIOR_STEPS = (8, 16, 32)                        # strides of the three pyramid levels
ANCHOR_SIZES = ((16, 32), (64, 128), (256, 512))  # anchor sides per level, in net-input pixels
VARIANCES = (0.1, 0.2)                           # centre and log-size scales of the regression
BGR_MEAN = (104, 117, 123)                       # subtracted from the BGR pixels; no scaling
SHRINK_ABOVE, SHRINK_TO = 1500, 1000             # detect(): a photo longer than 1500 px is run at 1000 px
ANCHORS_PER_CELL = 2

RETINAFACE_WEIGHTS = WeightKind(
    name="RetinaFace",
    markers=("fpn.output1.0.weight", "ClassHead.0.conv1x1.weight"),
    hint="expected a RetinaFace state dict such as the GPEN authors' RetinaFace-R50.pth or mobilenet0.25_Final.pth",
    entries=("state_dict",),  # the authors' loader also accepts {'state_dict': ...}
    batchnorm=True,
)

# ----------------------------------------------------------------------------------------------
# The network. Attribute names are the authors' so their state-dict keys map by name.


class Leaky(nn.Layer):
    """Leaky ReLU as max(x, slope·x) (slope 0: ReLU); the oneDNN predictor's fuse passes accept this form."""

    def __init__(self, slope):
        super().__init__()
        self.slope = slope

    def forward(self, x):
        return F.relu(x) if self.slope == 0 else paddle.maximum(x, x * self.slope)


def conv_bn(cin, cout, kernel=3, stride=1, groups=1, slope=None):
    """[conv (no bias), BatchNorm] plus a leaky ReLU unless slope is None: the layers of one unit."""
    layers = [nn.Conv2D(cin, cout, kernel, stride, padding=kernel // 2, groups=groups, bias_attr=False),
              nn.BatchNorm2D(cout)]
    return layers + ([Leaky(slope)] if slope is not None else [])


def unit(*layers):
    return nn.Sequential(*layers)


# MobileNet-0.25 body: (in, out, stride) of each depthwise-separable block after the 3 -> 8 stem.
MOBILENET_STAGES = (
    ((8, 16, 1), (16, 32, 2), (32, 32, 1), (32, 64, 2), (64, 64, 1)),
    ((64, 128, 2),) + ((128, 128, 1),) * 5,
    ((128, 256, 2), (256, 256, 1)),
)
MOBILENET_SLOPE = 0.1


class MobileNetBody(nn.Layer):
    """MobileNetV1 at width 0.25 up to its stride-32 stage; returns the three stage outputs (64, 128, 256 ch)."""

    out_channels = (64, 128, 256)

    def __init__(self):
        super().__init__()
        stages = []
        for index, blocks in enumerate(MOBILENET_STAGES):
            units = [unit(*conv_bn(3, 8, stride=2, slope=MOBILENET_SLOPE))] if index == 0 else []
            for cin, cout, stride in blocks:  # depthwise 3x3, then pointwise 1x1
                units.append(unit(*conv_bn(cin, cin, 3, stride, groups=cin, slope=MOBILENET_SLOPE),
                                  *conv_bn(cin, cout, 1, slope=MOBILENET_SLOPE)))
            stages.append(nn.Sequential(*units))
        self.stage1, self.stage2, self.stage3 = stages

    def forward(self, x):
        c1 = self.stage1(x)
        c2 = self.stage2(c1)
        return c1, c2, self.stage3(c2)


class Bottleneck(nn.Layer):
    """torchvision's ResNet bottleneck (stride on the 3x3 conv): 1x1 -> 3x3 -> 1x1 (x4 width) + shortcut."""

    def __init__(self, cin, width, stride):
        super().__init__()
        cout = 4 * width
        self.conv1, self.bn1 = conv_bn(cin, width, 1)
        self.conv2, self.bn2 = conv_bn(width, width, 3, stride)
        self.conv3, self.bn3 = conv_bn(width, cout, 1)
        self.downsample = unit(*conv_bn(cin, cout, 1, stride)) if stride != 1 or cin != cout else None

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


RESNET50_LAYERS = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (width, blocks, stride) of layer1..4


class ResNet50Body(nn.Layer):
    """torchvision's resnet50 without avgpool/fc; returns layer2, layer3, layer4 (512, 1024, 2048 ch)."""

    out_channels = (512, 1024, 2048)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2D(3, 64, 7, 2, padding=3, bias_attr=False)
        self.bn1 = nn.BatchNorm2D(64)
        self.maxpool = nn.MaxPool2D(3, 2, padding=1)
        cin = 64
        for index, (width, blocks, stride) in enumerate(RESNET50_LAYERS, start=1):
            layers = []
            for b in range(blocks):
                layers.append(Bottleneck(cin, width, stride if b == 0 else 1))
                cin = 4 * width
            setattr(self, f"layer{index}", nn.Sequential(*layers))

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        c2 = self.layer2(self.layer1(x))
        c3 = self.layer3(c2)
        return c2, c3, self.layer4(c3)


BACKBONES = {"mobilenet0.25": MobileNetBody, "resnet50": ResNet50Body}


def pyramid_slope(channels):
    """The authors' rule for the FPN and SSH activations: leaky 0.1 up to 64 channels, ReLU above."""
    return 0.1 if channels <= 64 else 0.0


def upsample_like(x, like):
    """Nearest upsampling of x to like's height and width, where x's size is like's halved and rounded up.

    For those sizes torch's nearest interpolation picks source row floor(i / 2) (and column floor(j / 2)),
    so this is every row and column repeated twice, cut to size. (Paddle's nearest_interp carries a
    float-list attribute that the oneDNN predictor cannot run.)"""
    size = paddle.shape(like)
    doubled = paddle.repeat_interleave(paddle.repeat_interleave(x, 2, axis=2), 2, axis=3)
    return doubled[:, :, :size[2], :size[3]]


class FPN(nn.Layer):
    """Lateral 1x1 convs to `channels`, top-down nearest upsampling + add, a 3x3 merge on the two finer levels."""

    def __init__(self, in_channels, channels):
        super().__init__()
        slope = pyramid_slope(channels)
        self.output1, self.output2, self.output3 = (unit(*conv_bn(c, channels, 1, slope=slope)) for c in in_channels)
        self.merge1 = unit(*conv_bn(channels, channels, slope=slope))
        self.merge2 = unit(*conv_bn(channels, channels, slope=slope))

    def forward(self, c1, c2, c3):
        p3 = self.output3(c3)
        p2 = self.merge2(self.output2(c2) + upsample_like(p3, c2))
        p1 = self.merge1(self.output1(c1) + upsample_like(p2, c1))
        return p1, p2, p3


class SSH(nn.Layer):
    """Single-stage headless context module: 3x3, 5x5 and 7x7 receptive fields (stacked 3x3s), concatenated."""

    def __init__(self, channels):
        super().__init__()
        if channels % 4:
            raise ValueError(f"SSH needs a channel count divisible by 4, got {channels}")
        slope, quarter = pyramid_slope(channels), channels // 4
        self.conv3X3 = unit(*conv_bn(channels, channels // 2))
        self.conv5X5_1 = unit(*conv_bn(channels, quarter, slope=slope))
        self.conv5X5_2 = unit(*conv_bn(quarter, quarter))
        self.conv7X7_2 = unit(*conv_bn(quarter, quarter, slope=slope))
        self.conv7x7_3 = unit(*conv_bn(quarter, quarter))

    def forward(self, x):
        branch5 = self.conv5X5_1(x)
        branch7 = self.conv7x7_3(self.conv7X7_2(branch5))
        # relu(concat) written as concat(relu): the same numbers; oneDNN's conv + concat + activation fuse
        # pass fails to build the predictor on the first form.
        return paddle.concat([F.relu(self.conv3X3(x)), F.relu(self.conv5X5_2(branch5)), F.relu(branch7)], axis=1)


class Head(nn.Layer):
    """A 1x1 conv giving `values` numbers per anchor, as rows (N, H·W·anchors, values) in row-major cell order."""

    def __init__(self, channels, values, anchors=ANCHORS_PER_CELL):
        super().__init__()
        self.values = values
        self.conv1x1 = nn.Conv2D(channels, anchors * values, 1)

    def forward(self, x):
        return paddle.transpose(self.conv1x1(x), [0, 2, 3, 1]).reshape([0, -1, self.values])


class RetinaFace(nn.Layer):
    """backbone -> FPN -> SSH per level -> heads. forward(x) -> (loc (N,P,4), conf (N,P,2) softmaxed, landms (N,P,10))
    for x = BGR - BGR_MEAN, NCHW, any size; P runs over the levels (stride 8, 16, 32), cells, anchors."""

    def __init__(self, backbone="resnet50", channels=256):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown RetinaFace backbone {backbone!r}")
        self.backbone = backbone
        self.body = BACKBONES[backbone]()
        self.fpn = FPN(self.body.out_channels, channels)
        self.ssh1, self.ssh2, self.ssh3 = SSH(channels), SSH(channels), SSH(channels)
        self.ClassHead = nn.LayerList([Head(channels, 2) for _ in PRIOR_STEPS])
        self.BboxHead = nn.LayerList([Head(channels, 4) for _ in PRIOR_STEPS])
        self.LandmarkHead = nn.LayerList([Head(channels, 10) for _ in PRIOR_STEPS])

    def forward(self, x):
        p1, p2, p3 = self.fpn(*self.body(x))
        features = (self.ssh1(p1), self.ssh2(p2), self.ssh3(p3))

        def rows(heads):
            return paddle.concat([head(f) for head, f in zip(heads, features)], axis=1)

        # The authors' test phase: face/background probabilities, not logits.
        return rows(self.BboxHead), F.softmax(rows(self.ClassHead), axis=-1), rows(self.LandmarkHead)


class PackedOutputs(nn.Layer):
    """The network with its three outputs side by side (N, P, 4 + 2 + 10): the predictor serves one output."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return paddle.concat(self.net(x), axis=-1)


def unpack_outputs(packed):
    """(N, P, 16) -> loc (N,P,4), conf (N,P,2), landms (N,P,10)."""
    return packed[..., :4], packed[..., 4:6], packed[..., 6:]


# ----------------------------------------------------------------------------------------------
# Reading the authors' files.


def architecture_of(state, path):
    """(backbone, pyramid channels) of a RetinaFace state dict in our layout."""
    if "body.layer1.0.conv1.weight" in state:
        backbone = "resnet50"
    elif "body.stage1.0.0.weight" in state:
        backbone = "mobilenet0.25"
    else:
        raise UserError(f"{path}: a RetinaFace file with an unknown backbone (neither ResNet-50's body.layer1 nor "
                        f"MobileNet-0.25's body.stage1); {RETINAFACE_WEIGHTS.hint}")
    return backbone, int(state["fpn.output1.0.weight"].shape[0])


def load_retinaface(path):
    """The RetinaFace network of a weight file (.pth as the authors save it, `module.` prefix or not, BatchNorm
    `num_batches_tracked` or not; or a .pdparams of ours), in eval mode. A wrong file: one UserError."""
    weights = read_state_dict(path, RETINAFACE_WEIGHTS)
    backbone, channels = architecture_of(weights.state, path)
    if channels % 4:
        raise UserError(f"{path}: RetinaFace pyramid width {channels} is not a multiple of 4; "
                        f"{RETINAFACE_WEIGHTS.hint}")
    net = RetinaFace(backbone, channels)
    own = net.state_dict()
    check_state_dict(weights.state, own, path, f"RetinaFace ({backbone}, {channels} channels)",
                     RETINAFACE_WEIGHTS.hint)
    net.set_state_dict({key: paddle.to_tensor(weights.state[key]) for key in own})
    net.eval()
    return net


# ----------------------------------------------------------------------------------------------
# Anchors and decoding (both modes).


def prior_boxes(height, width):
    """(P, 4) float32 anchors (cx, cy, w, h) as fractions of the net input's width/height, in the heads' row
    order. Computed in float64 in the authors' operation order, so the float32 values are theirs."""
    levels = []
    for step, sizes in zip(PRIOR_STEPS, ANCHOR_SIZES):
        rows, cols = math.ceil(height / step), math.ceil(width / step)
        cy, cx = np.meshgrid((np.arange(rows) + 0.5) * step / height, (np.arange(cols) + 0.5) * step / width,
                             indexing="ij")
        anchors = [np.stack([cx, cy, np.full_like(cx, s / width), np.full_like(cy, s / height)], axis=-1)
                   for s in sizes]
        levels.append(np.stack(anchors, axis=2).reshape(-1, 4))  # cell-major, then anchor
    return np.concatenate(levels).astype(np.float32)


def decode(loc, landms, priors, height, width):
    """Raw regressions (P,4), (P,10) -> boxes (P,4) x1,y1,x2,y2 and landmarks (P,10) x0,y0,...,x4,y4 in
    net-input pixels; float32 arithmetic in the authors' order."""
    centre_scale, size_scale = np.float32(VARIANCES[0]), np.float32(VARIANCES[1])
    centre, size = priors[:, :2], priors[:, 2:]
    box_centre = centre + loc[:, :2] * centre_scale * size
    box_size = size * np.exp(loc[:, 2:] * size_scale)
    top_left = box_centre - box_size / 2
    boxes = np.concatenate([top_left, box_size + top_left], axis=1) * np.float32([width, height] * 2)
    points = np.concatenate([centre + landms[:, 2 * k:2 * k + 2] * centre_scale * size for k in range(5)], axis=1)
    return boxes, points * np.float32([width, height] * 5)


def nms_plus_one(dets, threshold):
    """The authors' greedy NMS on float32 rows x1,y1,x2,y2,score: areas counted with +1 pixel per side,
    a box dropped when its IoU with a kept one exceeds `threshold`. Indices kept, best first."""
    x1, y1, x2, y2, scores = (dets[:, c] for c in range(5))
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]  # the same unstable sort as theirs, so equal scores tie-break alike
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        inter = (np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
                 * np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1))
        iou = inter / (areas[best] + areas[rest] - inter)
        order = rest[iou <= np.float32(threshold)]
    return keep


def select_detections(loc, conf, landms, height, width, confidence_threshold=0.9, nms_threshold=0.4, top_k=5000,
                      keep_top_k=750):
    """The authors' post-processing of raw outputs (P,·) for a net input of height x width: decode, keep
    scores > threshold (float32), the best top_k, their +1-pixel NMS, at most keep_top_k.
    Returns dets (K,5) x1,y1,x2,y2,score and landmarks (K,10) x0,y0,...,x4,y4 in net-input pixels."""
    boxes, points = decode(loc, landms, prior_boxes(height, width), height, width)
    scores = conf[:, 1]
    above = np.where(scores > np.float32(confidence_threshold))[0]
    boxes, points, scores = boxes[above], points[above], scores[above]
    order = scores.argsort()[::-1][:top_k]
    dets = np.hstack((boxes[order], scores[order, None])).astype(np.float32, copy=False)
    keep = nms_plus_one(dets, nms_threshold)[:keep_top_k]
    return dets[keep], points[order][keep]


def shrink_factor(height, width):
    """The authors' detect(): photos longer than SHRINK_ABOVE px run at SHRINK_TO px on the long side."""
    return SHRINK_TO / max(height, width) if max(height, width) > SHRINK_ABOVE else 1.0


def authors_net_input(image_bgr):
    """The authors' network input (1, 3, h, w) float32 for a BGR uint8 photo, and their shrink factor ss."""
    image = np.float32(image_bgr)
    ss = shrink_factor(*image.shape[:2])
    if ss != 1.0:
        # OpenCV rounds the output size (half to even) but samples with fx/fy themselves.
        image = cv2.resize(image, (0, 0), fx=ss, fy=ss)
    image -= BGR_MEAN
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None]), ss


# ----------------------------------------------------------------------------------------------
# The detector.


class RetinaFaceDetector(Detector):
    """RetinaFace from a weight file (see the module doc for the two modes).

    model_path: RetinaFace-R50.pth, mobilenet0.25_Final.pth or any RetinaFace state dict of these
    architectures. backend/threads: how the network is served (deploy.checked.checked_layer).
    nms_threshold: IoU above which the weaker of two boxes is dropped (the authors' 0.4).
    """

    name = "retinaface"
    default_threshold = 0.9  # the authors' detect() default, which their FaceEnhancement uses
    top_k, keep_top_k = 5000, 750

    def __init__(self, model_path, backend="auto", threads=0, nms_threshold=0.4, **common):
        super().__init__(**common)
        self.model_path = str(model_path)
        self.net = load_retinaface(self.model_path)
        self.backend, self.threads = backend, threads
        self.nms_threshold = float(nms_threshold)
        self._served = None

    def run_network(self, net_input):
        """Raw outputs loc (1,P,4), conf (1,P,2), landms (1,P,10) for a net input (1,3,h,w) (numpy)."""
        if self._served is None:  # exported on first use; H and W stay dynamic
            from deploy.checked import checked_layer

            self._served = checked_layer(PackedOutputs(self.net), (3, None, None), "RetinaFace detector",
                                         backend=self.backend, threads=self.threads)
        return unpack_outputs(self._served(net_input))

    def detect_authors(self, image_bgr, confidence_threshold=0.9, nms_threshold=0.4, top_k=5000, keep_top_k=750):
        """Exactly the authors' `RetinaFaceDetection.detect(image_bgr, confidence_threshold=...)`: BGR uint8 in,
        (dets (K,5) x1,y1,x2,y2,score, landms (K,10) x0..x4,y0..y4) float32 out, BOTH divided by the shrink
        factor ss (so after a shrink the scores exceed 1). The detector's own threshold is not used."""
        net_input, ss = authors_net_input(image_bgr)
        loc, conf, landms = self.run_network(net_input)
        dets, points = select_detections(loc[0], conf[0], landms[0], *net_input.shape[2:],
                                         confidence_threshold, nms_threshold, top_k, keep_top_k)
        points = points.reshape(-1, 5, 2).transpose(0, 2, 1).reshape(-1, 10)  # their x0..x4, y0..y4 layout
        return dets / ss, points / ss

    def _detect(self, image, min_face):
        bgr = np.ascontiguousarray(image[:, :, ::-1])  # the network was trained on BGR
        ss = shrink_factor(*image.shape[:2])
        if ss != 1.0:  # the authors' output size and sampling grid, but area-averaged (no aliasing)
            bgr = cv2.resize(bgr, (0, 0), fx=ss, fy=ss, interpolation=cv2.INTER_AREA)
        net_input = np.ascontiguousarray((bgr - np.float32(BGR_MEAN)).transpose(2, 0, 1)[None])
        loc, conf, landms = self.run_network(net_input)
        dets, points = select_detections(loc[0], conf[0], landms[0], *bgr.shape[:2], self.threshold,
                                         self.nms_threshold, self.top_k, self.keep_top_k)
        faces = Faces(dets[:, :4], dets[:, 4], points.reshape(-1, 5, 2))
        return faces.scaled(1.0 / ss) if ss != 1.0 else faces  # scores stay probabilities
