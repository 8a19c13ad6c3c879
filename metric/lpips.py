"""LPIPS (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric",
CVPR 2018), the variant everyone means by default: the `lpips` package's (0.1.4)
`LPIPS(net='alex', version='0.1')` in eval mode, ported to Paddle.

Conventions:
* `LPIPS.forward(in0, in1)` takes two float32 NCHW **RGB** batches in **[-1, 1]** (lpips's own
  convention, `normalize=False`) of the same shape and returns the distances, shape (N,). Lower is
  more similar; identical images give exactly 0.
* `lpips_batch` takes uint8 (N, H, W, 3) RGB images (what `utils.image_io.read_image` returns and
  what metric/evaluation.py holds) and maps them to [-1, 1] as lpips's `im2tensor` does,
  float64 u8 / 127.5 - 1 rounded to float32.
* Network, in order: lpips's ScalingLayer (x - shift) / scale with its float32 constants; torchvision's
  AlexNet `features` (conv1..conv5, each followed by a ReLU, 3x3 stride-2 max pools after conv1, conv2
  and conv5, no padding, floor mode); a tap after each of the five ReLUs (the last pool is not used);
  each tap unit-normalised over channels, x / (||x|| + 1e-10); the squared difference of the two
  inputs' taps; a 1x1 convolution to one channel without bias (lpips's "lin" heads; their dropout is
  inactive in eval); the spatial mean; the sum over the five layers. Any input size that survives the
  three pools works (lpips upsamples nothing when `spatial=False`, and neither do we).
* Weights come from two files the user supplies, read by `utils.weights.read_state_dict` (no torch,
  no code from the checkpoint runs):
  - the backbone: torchvision's ImageNet AlexNet `alexnet-owt-7be5be79.pth` (keys `features.0.weight`
    .. `features.10.bias` and `classifier.*`; only `features.*` is used, the classifier is dropped);
  - the heads: the lpips package's `lpips/weights/v0.1/alex.pth` (keys `lin0.model.1.weight` ..
    `lin4.model.1.weight`, shapes (1, C, 1, 1) with C = 64, 192, 384, 256, 256).
  Their converted .pdparams (tools/convert_weights.py) load as well. The sub-layer names are the
  files' own, so both load by name with no layout change.
"""
import os

import numpy as np
import paddle
import paddle.nn as nn

from utils.weights import WeightKind, check_state_dict, read_state_dict
from utils.errors import UserError

# lpips 0.1.4, lpips.py ScalingLayer: maps [-1, 1] input towards ImageNet-normalised statistics.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
# lpips 0.1.4, normalize_tensor(in_feat, eps=1e-10).
NORM_EPS = 1e-10
# AlexNet channels at the five taps (lpips's `chns` for net='alex').
CHANNELS = (64, 192, 384, 256, 256)

BACKBONE_FILE = "alexnet-owt-7be5be79.pth"
BACKBONE_URL = "https://download.pytorch.org/models/" + BACKBONE_FILE
HEADS_FILE = "lpips/weights/v0.1/alex.pth"
WEIGHTS_HINT = (f"LPIPS needs two files: torchvision's AlexNet weights {BACKBONE_FILE} ({BACKBONE_URL}) "
                f"as --lpips_backbone, and the linear heads {HEADS_FILE} from the lpips 0.1.4 package "
                f"(`pip download lpips==0.1.4 --no-deps` and unzip the wheel) as --lpips_weights")
# torchvision's AlexNet (features.3 exists in neither VGG nor SqueezeNet; its classifier is dropped, so
# its Linear layout does not matter) and lpips's 1x1-conv heads (conv weights keep their layout).
ALEXNET_WEIGHTS = WeightKind("torchvision AlexNet", markers=("features.0.weight", "features.3.weight",
                                                             "features.10.weight"),
                             hint=f"expected torchvision's {BACKBONE_FILE} (--lpips_backbone)")
LPIPS_HEADS_WEIGHTS = WeightKind("LPIPS alex heads", markers=("lin0.model.1.weight", "lin4.model.1.weight"),
                                 hint=f"expected lpips's {HEADS_FILE} (--lpips_weights)")


class NetLinLayer(nn.Layer):
    """lpips's 'lin' head: (Dropout,) 1x1 conv to one channel, no bias. Index 1 keeps the file's
    key `linK.model.1.weight`; the dropout is identity in eval mode."""

    def __init__(self, channels):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(p=0.5), nn.Conv2D(channels, 1, 1, bias_attr=False))

    def forward(self, x):
        return self.model(x)


def _alexnet_features():
    """torchvision's AlexNet `features`, indices as in its state dict (features.0, .3, .6, .8, .10)."""
    return nn.Sequential(
        nn.Conv2D(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2D(3, stride=2),
        nn.Conv2D(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2D(3, stride=2),
        nn.Conv2D(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2D(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2D(256, 256, 3, padding=1), nn.ReLU(),
        nn.MaxPool2D(3, stride=2),
    )


# The ReLUs after conv1..conv5: lpips's slices end there (relu1..relu5).
TAPS = (1, 4, 7, 9, 11)


def _unit_normalise(x):
    # Paddle's float32 sqrt on CPU is an approximation (1 ulp off for ~1/3 of values, and different
    # at different positions of a batch); float64's is correctly rounded, and rounding it to float32
    # gives exactly torch's float32 sqrt. This keeps LPIPS independent of a face's place in a batch.
    norm = paddle.sqrt(paddle.sum(x * x, axis=1, keepdim=True).astype("float64")).astype("float32")
    return x / (norm + NORM_EPS)


class LPIPS(nn.Layer):
    """lpips 0.1.4 `LPIPS(net='alex', version='0.1')` in eval mode (see the module docstring)."""

    def __init__(self):
        super().__init__()
        # Constants, not weights: neither file holds them, so they stay out of the state dict.
        self.register_buffer("shift", paddle.to_tensor(np.array(SHIFT, np.float32).reshape(1, 3, 1, 1)),
                             persistable=False)
        self.register_buffer("scale", paddle.to_tensor(np.array(SCALE, np.float32).reshape(1, 3, 1, 1)),
                             persistable=False)
        self.features = _alexnet_features()
        for k, channels in enumerate(CHANNELS):
            setattr(self, f"lin{k}", NetLinLayer(channels))

    def taps(self, x):
        """The five ReLU outputs of AlexNet for [-1, 1] input (after lpips's scaling)."""
        x = (x - self.shift) / self.scale
        out = []
        for index, layer in enumerate(self.features):
            if index > TAPS[-1]:
                break
            x = layer(x)
            if index in TAPS:
                out.append(x)
        return out

    def forward(self, in0, in1):
        """Distances (N,) between two [-1, 1] RGB NCHW float32 batches of the same shape."""
        if in0.shape != in1.shape or len(in0.shape) != 4 or in0.shape[1] != 3:
            raise ValueError(f"LPIPS compares two RGB batches (N, 3, H, W) of one shape, got "
                             f"{list(in0.shape)} and {list(in1.shape)}")
        batch = in0.shape[0]
        # One pass over both inputs: the network is per-sample, so this equals lpips's two passes.
        taps = self.taps(paddle.concat([in0, in1], axis=0))
        total = 0.0
        for k, tap in enumerate(taps):
            tap = _unit_normalise(tap)
            diff = (tap[:batch] - tap[batch:]) ** 2
            total = total + paddle.mean(getattr(self, f"lin{k}")(diff), axis=[2, 3])
        return total.reshape([batch])


def _read(path, kind, what, flag):
    if not path:
        raise UserError(f"no {what} file given ({flag}). {WEIGHTS_HINT}")
    if not os.path.isfile(path):
        raise UserError(f"{what} file not found: {path} ({flag}). {WEIGHTS_HINT}")
    state = read_state_dict(path, kind).state
    return state


def load_lpips(weights, backbone):
    """LPIPS in eval mode, without gradients, from the heads file `weights` (lpips's
    weights/v0.1/alex.pth) and the AlexNet file `backbone` (torchvision's alexnet-owt-7be5be79.pth),
    either as .pth or converted .pdparams. A missing, wrong or mismatching file raises a UserError
    naming it."""
    heads = _read(weights, LPIPS_HEADS_WEIGHTS, "LPIPS heads", "--lpips_weights")
    trunk = _read(backbone, ALEXNET_WEIGHTS, "LPIPS backbone", "--lpips_backbone")
    trunk = {k: v for k, v in trunk.items() if not k.startswith("classifier.")}  # not part of LPIPS
    model = LPIPS()
    expected = model.state_dict()
    check_state_dict(heads, {k: v for k, v in expected.items() if k.startswith("lin")}, weights,
                     "LPIPS heads", f"is this {HEADS_FILE} (the alex heads, not vgg or squeeze)?")
    check_state_dict(trunk, {k: v for k, v in expected.items() if k.startswith("features.")}, backbone,
                     "AlexNet", f"is this torchvision's {BACKBONE_FILE}?")
    model.set_state_dict({**trunk, **heads})
    model.eval()
    for param in model.parameters():
        param.stop_gradient = True
    return model


def to_lpips_input(images):
    """uint8 (N, H, W, 3) RGB -> float32 (N, 3, H, W) in [-1, 1], as lpips's im2tensor: u8 / 127.5 - 1
    in float64, then float32."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 RGB images (N, H, W, 3), got {images.dtype} {images.shape}")
    return np.ascontiguousarray((images / (255.0 / 2.0) - 1.0).transpose(0, 3, 1, 2)).astype(np.float32)


def lpips_batch(network, images_a, images_b, batch_size=8):
    """LPIPS distance per pair of uint8 (N, H, W, 3) RGB images -> (N,) float64 (float32 values from
    the network), computed in chunks of `batch_size` pairs on the current device."""
    images_a, images_b = np.asarray(images_a), np.asarray(images_b)
    if images_a.shape != images_b.shape:
        raise ValueError(f"LPIPS compares image pairs: shapes {images_a.shape} and {images_b.shape} differ")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out = np.empty(images_a.shape[0], dtype=np.float64)
    with paddle.no_grad():
        for start in range(0, images_a.shape[0], batch_size):
            stop = start + batch_size
            a = paddle.to_tensor(to_lpips_input(images_a[start:stop]))
            b = paddle.to_tensor(to_lpips_input(images_b[start:stop]))
            out[start:stop] = network(a, b).numpy()
    return out
