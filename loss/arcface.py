"""The IR-SE50 ArcFace face recogniser that GPEN's identity loss compares faces with, ported to Paddle.

The network is the one of the authors' `training/loss/model_irse.py` (TreB1eN's InsightFace model as
used by pSp): `Backbone(input_size=112, num_layers=50, mode='ir_se')`. The attribute names follow
theirs, so `model_ir_se50.pth` loads by name through `utils.weights.read_state_dict(path, IRSE50_WEIGHTS)`.

The network is only ever used frozen and in inference mode (`Backbone` takes no gradient for its
weights and ignores `.train()`):
* every BatchNorm normalises with its running statistics whatever the layer's `training` flag, and
  never updates them (`FrozenBatchNorm2D/1D`);
* the authors' Dropout(0.6) before the Linear layer is the identity in eval mode, so it is an
  `Identity` here (it has no weights; its slot keeps the Linear at index 3 as in their key names).

Input convention of `face_input`: image batches (N, 3, H, W), RGB in [-1, 1], H == W.
"""
import math

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from utils.weights import WeightKind, check_state_dict, read_state_dict
from utils.errors import UserError

EMBEDDING_DIM = 512
INPUT_SIZE = 112  # the recogniser's input side; its last feature map is 7x7 for 112

# (in channels, depth, number of units) of the four stages of IR-50 (get_blocks(50) of the authors'
# helpers.py); the first unit of each stage halves the resolution: 112 -> 56 -> 28 -> 14 -> 7.
STAGES = ((64, 64, 3), (64, 128, 4), (128, 256, 14), (256, 512, 3))
SE_REDUCTION = 16
BN_EPSILON = 1e-5  # PyTorch's BatchNorm default, which the weights were trained with

# The face region the authors crop from a 256x256 aligned face before pooling it to 112x112:
# rows 35 .. 256-33, columns 32 .. 256-36 (id_loss.py, `extract_feats`); other sizes: `crop_box`.
CROP_AT_256 = (35, 33, 32, 36)  # top, bottom, left, right margins


class _InferenceBatchNorm:
    """BatchNorm that always normalises with its running statistics and never updates them,
    whatever its `training` flag says (paddle's own layers warn on every call in training mode)."""

    def forward(self, x):
        return F.batch_norm(x, self._mean, self._variance, weight=self.weight, bias=self.bias, training=False,
                            epsilon=self._epsilon, data_format=self._data_format, use_global_stats=True)


class FrozenBatchNorm2D(_InferenceBatchNorm, nn.BatchNorm2D):
    pass


class FrozenBatchNorm1D(_InferenceBatchNorm, nn.BatchNorm1D):
    pass


def _batch_norm(channels, two_d=True):
    layer = FrozenBatchNorm2D if two_d else FrozenBatchNorm1D
    return layer(channels, epsilon=BN_EPSILON, use_global_stats=True)


def _conv(in_channels, out_channels, kernel, stride=1):
    return nn.Conv2D(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias_attr=False)


class PReLU(nn.Layer):
    """Per-channel PReLU whose slope parameter is called `weight`, as in the authors' state dict
    (paddle.nn.PReLU names it `_weight`)."""

    def __init__(self, channels):
        super().__init__()
        self.weight = self.create_parameter([channels], default_initializer=nn.initializer.Constant(0.25))

    def forward(self, x):
        return F.prelu(x, self.weight)


class SqueezeExcite(nn.Layer):
    """x * sigmoid(fc2(relu(fc1(mean over H, W of x)))), the fc layers being bias-free 1x1 convs."""

    def __init__(self, channels, reduction=SE_REDUCTION):
        super().__init__()
        self.fc1 = _conv(channels, channels // reduction, 1)
        self.fc2 = _conv(channels // reduction, channels, 1)

    def forward(self, x):
        gate = x.mean(axis=[2, 3], keepdim=True)
        gate = F.sigmoid(self.fc2(F.relu(self.fc1(gate))))
        return x * gate


class BottleneckIRSE(nn.Layer):
    """out = res(x) + shortcut(x); res = BN, conv3x3, PReLU, conv3x3 (stride), BN, SE.

    The shortcut subsamples (the authors' MaxPool2d(1, stride), which has no weights) when the
    channel count is kept, and is conv1x1 (stride) + BN when it changes.
    """

    def __init__(self, in_channels, depth, stride):
        super().__init__()
        self.stride = stride
        if in_channels == depth:
            self.shortcut_layer = None
        else:
            self.shortcut_layer = nn.Sequential(_conv(in_channels, depth, 1, stride), _batch_norm(depth))
        self.res_layer = nn.Sequential(
            _batch_norm(in_channels),
            _conv(in_channels, depth, 3),
            PReLU(depth),
            _conv(depth, depth, 3, stride),
            _batch_norm(depth),
            SqueezeExcite(depth),
        )

    def forward(self, x):
        if self.shortcut_layer is not None:
            shortcut = self.shortcut_layer(x)
        elif self.stride > 1:
            shortcut = x[:, :, ::self.stride, ::self.stride]
        else:
            shortcut = x
        return self.res_layer(x) + shortcut


class Backbone(nn.Layer):
    """IR-SE50 at 112x112 input: (N, 3, 112, 112) -> unit-norm embeddings (N, 512)."""

    def __init__(self):
        super().__init__()
        self.input_layer = nn.Sequential(_conv(3, 64, 3), _batch_norm(64), PReLU(64))
        units = []
        for in_channels, depth, count in STAGES:
            units.append(BottleneckIRSE(in_channels, depth, 2))
            units.extend(BottleneckIRSE(depth, depth, 1) for _ in range(count - 1))
        self.body = nn.Sequential(*units)
        side = INPUT_SIZE // 16
        self.output_layer = nn.Sequential(
            _batch_norm(512),
            nn.Identity(),  # the authors' Dropout(0.6): the identity in eval mode, the only mode used
            nn.Flatten(),   # (C, H, W) order, as torch's view(N, -1)
            nn.Linear(512 * side * side, EMBEDDING_DIM),
            _batch_norm(EMBEDDING_DIM, two_d=False),
        )
        self.freeze()

    def freeze(self):
        """No gradient for the weights (gradients still flow through to the input) and eval mode."""
        for param in self.parameters():
            param.stop_gradient = True
        self.eval()

    def _check_input(self, x):
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != INPUT_SIZE or x.shape[3] != INPUT_SIZE:
            raise ValueError(f"IR-SE50 takes (N, 3, {INPUT_SIZE}, {INPUT_SIZE}) input, got {list(x.shape)}")

    def forward(self, x):
        self._check_input(x)
        return l2_normalize(self.output_layer(self.body(self.input_layer(x))))

    def activations(self, x):
        """The intermediate results the reference fixtures pin down, keyed by their names there:
        input_layer, stage1 .. stage4 (after units 2, 6, 20, 23), pre_l2norm, embedding."""
        self._check_input(x)
        out = {}
        x = self.input_layer(x)
        out["input_layer"] = x
        last_units = {}
        end = 0
        for stage, (_, _, count) in enumerate(STAGES, 1):
            end += count
            last_units[end - 1] = f"stage{stage}"
        for index, unit in enumerate(self.body):
            x = unit(x)
            if index in last_units:
                out[last_units[index]] = x
        x = self.output_layer(x)
        out["pre_l2norm"] = x
        out["embedding"] = l2_normalize(x)
        return out


def l2_normalize(x):
    # No epsilon, as the authors' l2_norm (x / ||x||): the embeddings must match theirs.
    return x / paddle.linalg.norm(x, p=2, axis=1, keepdim=True)


# ----------------------------------------------------------------------------------------------
# The input path: crop the face region, average-pool it to 112x112.

def _round_half_up(value):
    return int(math.floor(value + 0.5))


def crop_box(size):
    """(top, bottom, left, right) of the face region in a size x size image, as slice bounds.

    The authors use margins (35, 33, 32, 36) * (size // 256). We scale the margins by size / 256 and
    round half up instead: for every size that is a multiple of 256 (256, 512, 1024) this is exactly
    their crop, and for other sizes (the 64 px test configurations) it is the same region of the
    face rather than their integer-division crop (which at size < 256 would be an empty slice).
    """
    if size < 4:
        raise ValueError(f"image side {size} is too small for the identity loss's face crop")
    top, bottom, left, right = (_round_half_up(m * size / 256) for m in CROP_AT_256)
    return top, size - bottom, left, size - right


def face_input(images):
    """(N, 3, H, W) faces in [-1, 1], H == W -> (N, 3, 112, 112), the recogniser's input.

    AdaptiveAvgPool2d to 112 with a non-integer ratio: output cell i averages input rows
    floor(i*L/112) .. ceil((i+1)*L/112) - 1, the same bins in Paddle as in PyTorch (checked against
    the reference fixtures). For crops smaller than 112 (sizes below 256 px) the same rule repeats
    input pixels, i.e. it upsamples.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"the identity loss takes (N, 3, H, W) RGB images, got shape {list(images.shape)}")
    height, width = images.shape[2], images.shape[3]
    if height != width:
        raise ValueError(f"the identity loss takes square images, got {height}x{width}")
    top, bottom, left, right = crop_box(height)
    return F.adaptive_avg_pool2d(images[:, :, top:bottom, left:right], INPUT_SIZE)


# ----------------------------------------------------------------------------------------------
# Weights.

# The authors' model_ir_se50.pth (a legacy torch pickle); its Linear layer becomes paddle's (in, out).
IRSE50_WEIGHTS = WeightKind("IR-SE50 (ArcFace)", markers=("input_layer.0.weight", "output_layer.3.weight"),
                            hint="expected the authors' model_ir_se50.pth or its conversion",
                            transposed=("output_layer.3.weight",), batchnorm=True)

def load_backbone(path):
    """Build the IR-SE50 and load `path`: the authors' `model_ir_se50.pth` (either PyTorch
    container, float32 or float16 storage) or its conversion saved as .pdparams.

    Returns a frozen `Backbone` in eval mode. A file whose keys or shapes differ raises a UserError
    (see `check_state_dict`).
    """
    state = read_state_dict(path, IRSE50_WEIGHTS).state
    model = Backbone()
    expected = model.state_dict()
    check_state_dict(state, expected, path, "IR-SE50", "is this the authors' model_ir_se50.pth or its conversion?")
    model.set_state_dict({key: state[key] for key in expected})
    model.freeze()
    return model
