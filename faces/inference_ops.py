"""Tensor operations in forms that Paddle 3.3's oneDNN predictor runs correctly, for the inference-only
networks of the authors' pipeline (ParseNet, RRDBNet). Values equal PyTorch's ops bit for bit where the
op is pure data movement (pad, upsample, unshuffle); none of them is meant for training.

* No pad op (a 2-D pad in the graph corrupts oneDNN's heap): reflection padding is a concatenation of
  one-row slices.
* No interpolate op (the predictor cannot convert its list-of-doubles scale attribute): nearest x2 is
  an expand + reshape.
* No leaky_relu op in a static graph (oneDNN's leaky_relu crashes the predictor): GPEN's exported form,
  `model.layers.prescaled_leaky_relu`, its prescale folded into the convolution before it
  (`conv_leaky_relu`: one pass over the map fewer; Real-ESRNet x2 ~10 % faster). max(x, a·x), the form
  used before the abs form, has no oneDNN kernel and cost two layout conversions each (ParseNet 5 % slower).
* A constant factor on a convolution's output is folded into its filter and bias (`scaled_conv`).
* Pixel-unshuffle as reshape / transpose, without strided slices.

Every function takes the spatial size from the tensor at run time when a static graph leaves it open,
so the exported programs accept any H and W.
"""
import paddle
import paddle.nn.functional as F

from model.layers import exported_prescale, prescaled_leaky_relu


@paddle.jit.not_to_static
def conv_leaky_relu(conv, x, negative_slope=0.2):
    """leaky_relu(conv(x)) for an nn.Conv2D `conv`; exported, the prescale rides on its filter and bias."""
    if paddle.in_dynamic_mode():
        return F.leaky_relu(conv(x), negative_slope)
    return prescaled_leaky_relu(_folded_conv(conv, x, exported_prescale(negative_slope)), negative_slope)


@paddle.jit.not_to_static
def scaled_conv(conv, x, factor):
    """factor · conv(x) for an nn.Conv2D `conv`; exported, the factor is folded into its filter and bias."""
    if paddle.in_dynamic_mode():
        return conv(x) * factor
    return _folded_conv(conv, x, factor)


def _folded_conv(conv, x, factor):
    """conv(x) · factor with the factor on the filter and the bias (the predictor folds those constants)."""
    bias = None if conv.bias is None else conv.bias * factor
    return F.conv2d(x, conv.weight * factor, bias, stride=conv._stride, padding=conv._padding,
                    dilation=conv._dilation, groups=conv._groups)


@paddle.jit.not_to_static
def _spatial(x):
    """(H, W) of an NCHW tensor: Python ints when known, else 0-d int tensors read at run time."""
    h, w = x.shape[2], x.shape[3]
    if h is None or w is None or h < 0 or w < 0:
        size = paddle.shape(x)
        return size[2], size[3]
    return h, w


def reflect_pad1(x):
    """nn.ReflectionPad2d(1): row 1 mirrored above row 0, row H-2 below row H-1, then the columns."""
    x = paddle.concat([x[:, :, 1:2], x, x[:, :, -2:-1]], axis=2)
    return paddle.concat([x[:, :, :, 1:2], x, x[:, :, :, -2:-1]], axis=3)


@paddle.jit.not_to_static
def upsample_nearest2(x):
    """F.interpolate(x, scale_factor=2, mode='nearest'): every pixel becomes a 2 x 2 block."""
    h, w = _spatial(x)
    x = paddle.expand(x.unsqueeze([3, 5]), [-1, -1, -1, 2, -1, 2])  # (N, C, H, 2, W, 2)
    return x.reshape([0, 0, h * 2, w * 2])


@paddle.jit.not_to_static
def pixel_unshuffle(x, factor):
    """BasicSR's pixel_unshuffle: (N, C, H, W) -> (N, C·f², H/f, W/f), output channel c·f² + i·f + j
    holding x[:, c, i::f, j::f]. H and W must be multiples of f."""
    channels = x.shape[1]
    h, w = _spatial(x)
    x = x.reshape([0, channels, h // factor, factor, w // factor, factor])
    return x.transpose([0, 1, 3, 5, 2, 4]).reshape([0, channels * factor * factor, h // factor, w // factor])
