"""pytorch-fid's Inception-v3 (the FID feature network), ported to Paddle.

What FID means in the field is the pool3 feature of *this* network: torchvision's Inception-v3 with
1008 classes, its Mixed_5b-5d, 6b-6e and 7b average-pool branches replaced by pools that do not count
the padded zeros, and Mixed_7c's pool branch a 3x3 max pool, with the weights pytorch-fid converted
from the 2015-12-05 TensorFlow graph (`pt_inception-2015-12-05-6726825d.pth`).

Conventions:
* `FIDInceptionV3.forward(x)` takes float32 NCHW **RGB** images in [0, 1] of any size, resizes them to
  299x299 by bilinear interpolation (align_corners=False, no antialiasing, as torch's
  `F.interpolate` in pytorch-fid), maps [0, 1] to [-1, 1] by 2x - 1, and returns pool3: (N, 2048) float32.
* Every convolution is conv (no bias) -> BatchNorm (eps 1e-3, running statistics) -> ReLU; the model
  is only ever used in eval mode and without gradients.
* Sub-layer names are pytorch-fid's, so the state dict that `utils.weights.read_state_dict(path,
  kind='inception')` returns loads by name (BatchNorm buffers as `_mean`/`_variance`, `fc.weight`
  stored (2048, 1008) as paddle's Linear keeps it). `fc` is not part of FID; `logits()` exposes it so
  that a transposed weight can be caught.
"""
import os

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from utils.weights import WeightKind, check_state_dict, read_state_dict
from utils.errors import UserError

INPUT_SIZE = 299
FEATURE_DIM = 2048
NUM_CLASSES = 1008
WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + WEIGHTS_FILE
WEIGHTS_HINT = (f"FID needs pytorch-fid's Inception weights: download {WEIGHTS_FILE} ({WEIGHTS_URL}), "
                f"convert them with `python tools/convert_weights.py {WEIGHTS_FILE} inception.pdparams` "
                f"and pass that file as --inception_weights")
# pytorch-fid's file: torch BatchNorm statistics and a Linear classifier (out, in) become paddle's.
INCEPTION_WEIGHTS = WeightKind("pytorch-fid Inception", markers=("Conv2d_1a_3x3.conv.weight",
                                                                 "Mixed_7c.branch_pool.conv.weight"),
                               hint=f"expected {WEIGHTS_FILE} or its conversion", transposed=("fc.weight",),
                               batchnorm=True)


class BasicConv2d(nn.Layer):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                              bias_attr=False)
        self.bn = nn.BatchNorm2D(out_channels, epsilon=1e-3)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_3x3(x):
    # exclusive=True: border windows are divided by the number of real pixels (count_include_pad=False).
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, exclusive=True)


def _max_pool_3x3_s2(x):
    return F.max_pool2d(x, kernel_size=3, stride=2, padding=0)


class InceptionA(nn.Layer):
    """Mixed_5b/5c/5d: 1x1 | 5x5 | double 3x3 | avg pool + 1x1."""

    def __init__(self, in_channels, pool_features):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, 1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, 1)

    def forward(self, x):
        return paddle.concat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg_pool_3x3(x)),
        ], axis=1)


class InceptionB(nn.Layer):
    """Mixed_6a (grid reduction 35 -> 17): 3x3 stride 2 | double 3x3 stride 2 | max pool."""

    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x):
        return paddle.concat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            _max_pool_3x3_s2(x),
        ], axis=1)


class InceptionC(nn.Layer):
    """Mixed_6b-6e: 1x1 | 1x7,7x1 | 7x1,1x7,7x1,1x7 | avg pool + 1x1."""

    def __init__(self, in_channels, channels_7x7):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d7 = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d7 = layer(d7)
        return paddle.concat([self.branch1x1(x), b7, d7, self.branch_pool(_avg_pool_3x3(x))], axis=1)


class InceptionD(nn.Layer):
    """Mixed_7a (grid reduction 17 -> 8): 1x1,3x3 s2 | 1x1,1x7,7x1,3x3 s2 | max pool."""

    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        return paddle.concat([b3, b7, _max_pool_3x3_s2(x)], axis=1)


class InceptionE(nn.Layer):
    """Mixed_7b/7c: 1x1 | 1x1 -> (1x3, 3x1) | 1x1,3x3 -> (1x3, 3x1) | pool + 1x1.

    The pool is pytorch-fid's: average without the padded zeros in 7b, 3x3 max in 7c.
    """

    def __init__(self, in_channels, pool):
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 320, 1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        d3 = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        if self.pool == "avg":
            pooled = _avg_pool_3x3(x)
        else:
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return paddle.concat([
            self.branch1x1(x),
            self.branch3x3_2a(b3), self.branch3x3_2b(b3),
            self.branch3x3dbl_3a(d3), self.branch3x3dbl_3b(d3),
            self.branch_pool(pooled),
        ], axis=1)


class FIDInceptionV3(nn.Layer):
    """pytorch-fid's InceptionV3 wrapper with resize_input=True, normalize_input=True, FID blocks."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    @staticmethod
    def prepare_input(x):
        """[0, 1] NCHW of any size -> the 299x299 [-1, 1] tensor that enters block 0."""
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                          align_mode=0)
        return 2.0 * x - 1.0

    def blocks(self, x):
        """The four outputs pytorch-fid calls blocks 0-3, from an already prepared input."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        block0 = _max_pool_3x3_s2(x)
        block1 = _max_pool_3x3_s2(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(block0)))
        x = block1
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                     "Mixed_6e"):
            x = getattr(self, name)(x)
        block2 = x
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(block2)))
        block3 = paddle.mean(x, axis=[2, 3], keepdim=True)  # adaptive average pool to 1x1
        return [block0, block1, block2, block3]

    def pool3(self, prepared):
        """pool3 features (N, 2048) from an already prepared (resized, [-1, 1]) input."""
        return paddle.flatten(self.blocks(prepared)[3], start_axis=1)

    def forward(self, x):
        """[0, 1] RGB NCHW float32 images of any size -> pool3 features (N, 2048)."""
        return self.pool3(self.prepare_input(x))

    def logits(self, pool3):
        """The 1008-way classifier on pool3 (not used by FID)."""
        return self.fc(pool3)


class Pool3FromPrepared(nn.Layer):
    """The exportable part: prepared (N, 3, 299, 299) input in [-1, 1] -> pool3 (N, 2048).

    Used for the Paddle Inference predictor, whose oneDNN executor in Paddle 3.3 cannot run the
    resize (its bilinear_interp attributes are rejected), so the resize stays in dygraph.
    """

    def __init__(self, network):
        super().__init__()
        self.network = network

    def forward(self, prepared):
        return self.network.pool3(prepared)


def load_inception(path):
    """FIDInceptionV3 in eval mode with the weights at `path` (pytorch-fid's .pth or our .pdparams).

    A missing path raises a UserError whose message is `WEIGHTS_HINT`; a file of another network or
    with missing/unexpected keys raises a UserError naming the file.
    """
    if not path:
        raise UserError(WEIGHTS_HINT)
    if not os.path.isfile(path):
        raise UserError(f"Inception weights not found: {path}. {WEIGHTS_HINT}")
    state = read_state_dict(path, INCEPTION_WEIGHTS).state
    model = FIDInceptionV3()
    check_state_dict(state, model.state_dict(), path, "pytorch-fid Inception",
                     "is this pt_inception-2015-12-05-6726825d.pth or its conversion?")
    model.set_state_dict(state)
    model.eval()
    for param in model.parameters():
        param.stop_gradient = True
    return model
