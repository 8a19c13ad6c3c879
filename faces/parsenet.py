"""Face parsing for the paste-back mask of the authors' FaceEnhancement: ParseNet and FaceParse.

ParseNet (from PSFR-GAN, as GPEN ships it in face_parse/) is an encoder - residual body - decoder
network at 512 x 512: a 3x3 stem, four stride-2 residual blocks down to 32 x 32, `res_depth` residual
blocks with a skip around them, four nearest-x2 residual blocks back up, and two 3x3 heads: 19
parsing logits (CelebAMask-HQ classes) and a 3-channel image. Every 3x3 convolution is preceded by a
one-pixel reflection pad. Channels double per step down and halve per step up, clipped to `ch_range`.

What the authors' procedures do, and what this module reproduces step for step:

* `FaceParse.process(face)`: resize the face to 512 x 512 (cv2 bilinear), BGR -> RGB, x / 255 * 2 - 1
  in float64, then float32; the network; argmax over the 19 logits (the first maximum on ties); classes
  0 (background), 14 (hat) and 18 (cloth) -> 0, every other class -> 255; a list with one uint8 mask.
* `mask_postprocess(mask)` (FaceEnhancement's): on the float mask (their caller passes mask / 255.),
  zero a 26-pixel border, GaussianBlur (101, 101) with sigma 4 twice in float64, then float32.

Conventions: faces are HWC uint8 BGR (OpenCV order); network tensors are NCHW float32 RGB in [-1, 1];
masks are (512, 512) uint8 0/255; soft masks float32 in [0, 1]. Several faces go through the network
in one batch (`FaceParse.process_batch`).

Weights: the authors' `ParseNet-latest.pth` (a plain state dict) or any file of the same layout; the
widths and depth are read off its shapes (`parsenet_config`), so small test networks load too. The
in/out size (512) and the 32 x 32 bottleneck are the authors' hard-coded values.

Served on the CPU through the checked oneDNN predictor (`deploy.checked`), dygraph on a GPU; the
reflection pad and the nearest upsampling take the predictor-safe forms of `faces.inference_ops`, the
leaky ReLU GPEN's exported form (`model.layers.prescaled_leaky_relu`).
"""
import cv2
import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from faces.inference_ops import conv_leaky_relu, reflect_pad1, upsample_nearest2
from model.layers import exported_prescale, prescaled_leaky_relu
from utils.errors import UserError
from utils.weights import WeightKind, check_state_dict, read_state_dict

NET_SIZE = 512        # FaceParse.size: the network's input and output side
MIN_FEAT_SIZE = 32    # ParseNet's bottleneck side as FaceParse builds it
LEAKY_SLOPE = 0.2     # blocks.ReluLayer's 'LeakyReLU'
BN_EPSILON = 1e-5     # torch BatchNorm2d's default

# MASK_COLORMAP of FaceParse: the classes that are not part of the face region a restored face may
# cover. 0 background, 14 hat, 18 cloth (1 skin, 2 nose, ... 13 hair, 15 ear ring, 16 necklace, 17 neck).
OUTSIDE_CLASSES = (0, 14, 18)
NUM_CLASSES = 19

# FaceEnhancement.mask_postprocess: the border that is zeroed, then two Gaussian blurs.
MASK_BORDER = 26
MASK_BLUR_KSIZE = (101, 101)
MASK_BLUR_SIGMA = 4


# ----------------------------------------------------------------------------------------------
# The network.

class ConvLayer(nn.Layer):
    """[nearest x2] -> reflect pad 1 -> 3x3 conv (stride 2 for 'down') -> [BatchNorm] -> [leaky ReLU].

    The authors' blocks.ConvLayer with kernel 3 (the only size ParseNet uses); with BatchNorm the
    convolution has no bias. Attribute names are theirs (`conv2d`, `norm.norm`) so their keys load.
    """

    def __init__(self, in_channels, out_channels, scale="none", batchnorm=False, activate=False):
        super().__init__()
        self.upsample = scale == "up"
        self.conv2d = nn.Conv2D(in_channels, out_channels, 3, stride=2 if scale == "down" else 1,
                                bias_attr=None if not batchnorm else False)
        self.norm = _BatchNorm(out_channels) if batchnorm else None
        self.activate = activate

    def forward(self, x):
        if self.upsample:
            x = upsample_nearest2(x)
        return _conv_norm_activation(self.conv2d, self.norm, self.activate, reflect_pad1(x))


@paddle.jit.not_to_static  # Python branching on the mode, not a graph condition
def _conv_norm_activation(conv, norm, activate, x):
    """conv, then [BatchNorm (inference statistics)], then [the leaky ReLU]. In dygraph, the reference, as
    the authors compute it. In an exported graph the BatchNorm and the activation's prescale are folded
    into the convolution's filter and bias, which the predictor computes once (constant folding): Paddle
    exports BatchNorm as a multiply and an add over the whole map; folded, the predictor runs ParseNet
    7 % faster (the prescale's own gain here was within the noise of two process pairs)."""
    if norm is None:
        return conv_leaky_relu(conv, x, LEAKY_SLOPE) if activate else conv(x)
    if paddle.in_dynamic_mode():
        x = norm(conv(x))
        return F.leaky_relu(x, LEAKY_SLOPE) if activate else x
    prescale = exported_prescale(LEAKY_SLOPE) if activate else 1.0
    bn = norm.norm
    gain = bn.weight * paddle.rsqrt(bn._variance + bn._epsilon) * prescale
    bias = bn.bias * prescale - bn._mean * gain
    x = F.conv2d(x, conv.weight * gain.reshape([-1, 1, 1, 1]), bias, stride=conv._stride, padding=conv._padding)
    return prescaled_leaky_relu(x, LEAKY_SLOPE) if activate else x


class _BatchNorm(nn.Layer):
    """blocks.NormLayer('bn'): holds the BatchNorm as `.norm`, which gives the keys `norm.norm.*`."""

    def __init__(self, channels):
        super().__init__()
        self.norm = nn.BatchNorm2D(channels, epsilon=BN_EPSILON)

    def forward(self, x):
        return self.norm(x)


class ResidualBlock(nn.Layer):
    """shortcut(x) + conv2(conv1(x)); conv1 = conv-BN-lrelu, conv2 = conv-BN. The resampling ('down':
    conv2 strides, 'up': conv1 upsamples) happens in the residual branch and in a 3x3 conv shortcut;
    the shortcut is the identity only when neither size nor width changes."""

    def __init__(self, c_in, c_out, scale="none"):
        super().__init__()
        self.shortcut_func = None if (scale == "none" and c_in == c_out) else ConvLayer(c_in, c_out, scale)
        self.conv1 = ConvLayer(c_in, c_out, "up" if scale == "up" else "none", batchnorm=True, activate=True)
        self.conv2 = ConvLayer(c_out, c_out, "down" if scale == "down" else "none", batchnorm=True)

    def forward(self, x):
        identity = x if self.shortcut_func is None else self.shortcut_func(x)
        return identity + self.conv2(self.conv1(x))


class ParseNet(nn.Layer):
    """The authors' ParseNet with norm 'bn' and LeakyReLU (FaceParse's configuration).

    forward(x): x (N, 3, in_size, in_size) RGB in [-1, 1] -> (logits (N, parsing_ch, out, out),
    image (N, 3, out, out)).
    """

    def __init__(self, base_ch=64, parsing_ch=NUM_CLASSES, res_depth=10, ch_range=(32, 256),
                 in_size=NET_SIZE, out_size=NET_SIZE, min_feat_size=MIN_FEAT_SIZE):
        super().__init__()
        min_ch, max_ch = ch_range

        def clip(c):
            return max(min_ch, min(c, max_ch))

        min_feat_size = min(in_size, min_feat_size)
        down_steps = int(np.log2(in_size // min_feat_size))
        up_steps = int(np.log2(out_size // min_feat_size))
        self.config = dict(base_ch=base_ch, parsing_ch=parsing_ch, res_depth=res_depth, ch_range=tuple(ch_range))

        width = base_ch  # the unclipped width the authors carry from step to step
        encoder = [ConvLayer(3, base_ch)]
        for _ in range(down_steps):
            encoder.append(ResidualBlock(clip(width), clip(width * 2), "down"))
            width *= 2
        self.encoder = nn.Sequential(*encoder)
        self.body = nn.Sequential(*[ResidualBlock(clip(width), clip(width)) for _ in range(res_depth)])
        decoder = []
        for _ in range(up_steps):
            decoder.append(ResidualBlock(clip(width), clip(width // 2), "up"))
            width //= 2
        self.decoder = nn.Sequential(*decoder)
        self.out_img_conv = ConvLayer(clip(width), 3)
        self.out_mask_conv = ConvLayer(clip(width), parsing_ch)

    def forward(self, x):
        features = self.encoder(x)
        x = self.decoder(features + self.body(features))
        return self.out_mask_conv(x), self.out_img_conv(x)


# ----------------------------------------------------------------------------------------------
# Weights.

PARSENET_WEIGHTS = WeightKind(
    "ParseNet (face parsing)", markers=("encoder.0.conv2d.weight", "out_mask_conv.conv2d.weight"),
    hint="expected the authors' ParseNet-latest.pth (face parsing)", entries=("state_dict", "params"),
    batchnorm=True)


def _indices(state, prefix):
    """The block indices N of keys '<prefix>.N.…', sorted."""
    return sorted({int(k.split(".")[1]) for k in state if k.startswith(prefix + ".")})


def parsenet_config(state):
    """ParseNet's constructor arguments read off a state dict's shapes: base_ch (stem width),
    parsing_ch (classes), res_depth (body blocks) and ch_range = (smallest, largest width in the file).
    The lower end of the authors' ch_range is visible only where it clips; the smallest width in the
    file builds the same network (the real file: (64, 256), the authors pass (32, 256))."""
    convs = [(k, v.shape) for k, v in state.items()
             if k.endswith("conv2d.weight") and k.startswith(("encoder.", "body.", "decoder."))]
    widths = [shape[0] for _, shape in convs] + [shape[1] for k, shape in convs if not k.startswith("encoder.0.")]
    return dict(base_ch=int(state["encoder.0.conv2d.weight"].shape[0]),
                parsing_ch=int(state["out_mask_conv.conv2d.weight"].shape[0]),
                res_depth=len(_indices(state, "body")),
                ch_range=(int(min(widths)), int(max(widths))))


def load_parsenet(path):
    """ParseNet in eval mode with the weights of `path` (the authors' ParseNet-latest.pth or a file of
    the same layout, .pth or .pdparams). A file of another network or another shape: one UserError."""
    state = read_state_dict(path, PARSENET_WEIGHTS).state
    net = ParseNet(**parsenet_config(state))
    expected = net.state_dict()
    check_state_dict(state, expected, path, "ParseNet",
                     "expected a ParseNet at 512 px with a 32 px bottleneck, like the authors' ParseNet-latest.pth")
    net.set_state_dict({k: paddle.to_tensor(state[k]) for k in expected})
    net.eval()
    return net


# ----------------------------------------------------------------------------------------------
# The authors' procedures.

def network_input(faces):
    """FaceParse's input tensor of a list of BGR uint8 faces: (N, 3, 512, 512) float32 RGB in [-1, 1].

    As the authors: cv2.resize to 512 (bilinear), BGR -> RGB, / 255 * 2 - 1 in float64, then float32."""
    batch = np.empty((len(faces), 3, NET_SIZE, NET_SIZE), np.float32)
    for i, face in enumerate(faces):
        face = np.asarray(face)
        if face.dtype != np.uint8 or face.ndim != 3 or face.shape[2] != 3:
            raise UserError(f"face parsing needs HxWx3 uint8 BGR faces, got {face.dtype} {list(face.shape)}")
        face = cv2.resize(face, (NET_SIZE, NET_SIZE))
        batch[i] = (face[:, :, ::-1].transpose(2, 0, 1) / 255.0 * 2 - 1).astype(np.float32)
    return batch


def labels_of(logits):
    """Class per pixel, (N, C, H, W) -> (N, H, W) uint8: the first maximum on ties, as torch's argmax."""
    return np.argmax(logits, axis=1).astype(np.uint8)


def mask_of(labels):
    """FaceParse's MASK_COLORMAP: 0 where the class is background / hat / cloth, 255 elsewhere (uint8)."""
    return np.where(np.isin(labels, OUTSIDE_CLASSES), 0, 255).astype(np.uint8)


def mask_postprocess(mask, border=MASK_BORDER):
    """FaceEnhancement.mask_postprocess: `mask` is the float mask in [0, 1] (the authors pass
    FaceParse's mask / 255.); returns the feathered float32 mask. Computed in float64 as theirs; the
    caller's array is not changed (theirs zeroes the border in place)."""
    soft = np.array(mask, dtype=np.float64)
    soft[:border, :] = 0
    soft[-border:, :] = 0
    soft[:, :border] = 0
    soft[:, -border:] = 0
    soft = cv2.GaussianBlur(soft, MASK_BLUR_KSIZE, MASK_BLUR_SIGMA)
    soft = cv2.GaussianBlur(soft, MASK_BLUR_KSIZE, MASK_BLUR_SIGMA)
    return soft.astype(np.float32)


def soft_mask(mask_u8):
    """The paste-back mask of a FaceParse mask: mask_postprocess(mask / 255.)."""
    return mask_postprocess(np.asarray(mask_u8) / 255.0)


def default_batch_size():
    """Faces per ParseNet call: 4 on a GPU, 2 on the CPU, where the real network (~470 GFLOP a face) is
    compute-bound and every face in a batch adds ~1.3 GB of activations in the predictor (which keeps them
    after the call). Measured on 2 cores: a batch of 2 takes 0.85x the time of two calls; in the whole
    Solvay photo with SR (29 faces) batches of 4 took 69-77 s against 60 s in batches of 2."""
    return 2 if paddle.get_device() == "cpu" else 4


class FaceParse:
    """The authors' FaceParse on our ParseNet.

    weights: a ParseNet file path (see load_parsenet) or a built ParseNet. backend: 'auto' (the checked
    oneDNN predictor on a CPU, dygraph on a GPU), 'predictor' or 'dygraph' (deploy.checked). batch_size:
    faces per network call; None: `default_batch_size()`.
    """

    size = NET_SIZE

    def __init__(self, weights, backend="auto", threads=0, batch_size=None):
        from deploy.checked import checked_layer

        self.net = weights if isinstance(weights, ParseNet) else load_parsenet(weights)
        if batch_size is None:
            batch_size = default_batch_size()
        self.batch_size = max(1, int(batch_size))
        self._logits = checked_layer(self.net, (3, NET_SIZE, NET_SIZE), "ParseNet face parser", backend=backend,
                                     threads=threads, output_index=0)

    @property
    def backend(self):
        return self._logits.backend

    def logits(self, faces):
        """(N, 19, 512, 512) float32 parsing logits of a list of BGR uint8 faces."""
        batch = network_input(faces)
        out = [self._logits(batch[i:i + self.batch_size]) for i in range(0, len(batch), self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, NUM_CLASSES, NET_SIZE, NET_SIZE), np.float32)

    def process_batch(self, faces):
        """One (512, 512) uint8 0/255 mask per BGR uint8 face, the faces batched through the network."""
        return list(mask_of(labels_of(self.logits(faces)))) if len(faces) else []

    def process(self, face):
        """The authors' FaceParse.process: a list holding the mask of one face."""
        return self.process_batch([face])
