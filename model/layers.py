"""StyleGAN2 building blocks as GPEN uses them (GPEN_SPEC §2), in forms Paddle can train and deploy.

Every layer keeps the authors' parameter names and layouts, so their checkpoints load by name.
Three decisions are made once, here, for the whole network:

* Second derivatives. R1 and path-length regularization differentiate gradients, and Paddle's CPU build
  has no double backward for depthwise convolution, conv2d_transpose, strided slicing, pixel_shuffle or
  flatten. Blurs therefore run as an ordinary one-channel convolution over (batch·channels) images, and
  the upsampling convolution as a polyphase convolution (one stride-1 convolution computing the four
  output phases, interleaved with reshape/transpose) instead of a transposed convolution.
* Export. Nothing draws random numbers in `forward` (GPEN's "noise" is the encoder's features), the
  modulated convolution is the non-fused form (scale the input by the style, convolve with the shared
  weight, scale the output by the demodulation) which is the same maths as the authors' grouped
  convolution but keeps the batch dynamic under `paddle.jit.to_static`, and all padding is folded into
  the convolutions (no pad op: paddle2onnx writes Pad's value wrongly).
* Leaky ReLU is `where(x > 0, x, 0.2·x)`, not `F.leaky_relu`: oneDNN's conv + leaky_relu fuse pass
  crashes the predictor and paddle2onnx mis-exports LeakyRelu's alpha. It is also PyTorch's function
  exactly, gradient at 0 included (slope 0.2; Paddle's leaky_relu uses 1 there and `maximum(x, 0.2·x)`
  splits the tie 50/50, i.e. 0.6). That matters: the zero-initialised noise channels sit exactly at 0,
  so the convention decides the first optimizer step (GPEN_SPEC §9).
"""
import math

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

SQRT2 = math.sqrt(2.0)


def channel_table(channel_multiplier=2, narrow=1.0):
    """Channels per resolution (GPEN_SPEC §1), shared by the generator and the discriminator."""
    return {4: int(512 * narrow), 8: int(512 * narrow), 16: int(512 * narrow), 32: int(512 * narrow),
            64: int(256 * channel_multiplier * narrow), 128: int(128 * channel_multiplier * narrow),
            256: int(64 * channel_multiplier * narrow), 512: int(32 * channel_multiplier * narrow),
            1024: int(16 * channel_multiplier * narrow), 2048: int(8 * channel_multiplier * narrow)}


def leaky_relu(x, negative_slope=0.2):
    """PyTorch's leaky ReLU, gradient at 0 included (see the module docstring)."""
    return paddle.where(x > 0, x, x * negative_slope)


def make_kernel(k):
    """[1,3,3,1] -> the normalised 2-D outer product, as a float32 numpy array."""
    k = np.asarray(k, dtype=np.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


def _depthwise(x, kernel_2d, padding, stride=1):
    """Apply one 2-D filter to every channel: an ordinary one-channel convolution over the
    (batch·channels) images, which has double backward where a depthwise convolution has not."""
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    out = F.conv2d(x.reshape([-1, 1, h, w]), kernel_2d.reshape([1, 1] + kernel_2d.shape[-2:]),
                   stride=stride, padding=padding)
    return out.reshape([-1, c, out.shape[2], out.shape[3]])


def upfirdn2d(x, kernel, up=1, down=1, pad=(0, 0)):
    """Reference upfirdn2d (GPEN_SPEC §2): insert up−1 zeros after each pixel, pad by (pad0, pad1) on both
    axes (negative pads crop), correlate every channel with the flipped kernel, keep every down-th pixel."""
    pad0, pad1 = pad
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape([-1, c, h, 1, w, 1])
        x = F.pad(x, [0, 0, 0, 0, 0, 0, 0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape([-1, c, h * up, w * up])
    if pad0 < 0 or pad1 < 0:
        hh, ww = x.shape[2], x.shape[3]
        x = x[:, :, max(-pad0, 0):hh - max(-pad1, 0), max(-pad0, 0):ww - max(-pad1, 0)]
        pad0, pad1 = max(pad0, 0), max(pad1, 0)
    flipped = paddle.flip(kernel, [0, 1])
    return _depthwise(x, flipped, padding=[pad0, pad1, pad0, pad1], stride=down)


class Blur(nn.Layer):
    """Low-pass filter with the [1,3,3,1] kernel (a state-dict buffer `kernel`) and padding (pad0, pad1)."""

    def __init__(self, kernel, pad, upsample_factor=1):
        super().__init__()
        k = make_kernel(kernel) * (upsample_factor ** 2)
        self.register_buffer("kernel", paddle.to_tensor(k, dtype=paddle.get_default_dtype()))
        self.pad = tuple(pad)

    def forward(self, x, pad=None):
        pad0, pad1 = pad if pad is not None else self.pad
        return upfirdn2d(x, self.kernel, pad=(pad0, pad1))


class Upsample(nn.Layer):
    """2× upsampling of the ToRGB skip: upfirdn2d(up=2, kernel·4, pads ((p+1)//2+1, p//2)).

    Computed as its four polyphase outputs (a 3×3 one-channel convolution producing 4 maps) interleaved,
    the same sums as zero insertion without the zeros.
    """

    def __init__(self, kernel, factor=2):
        super().__init__()
        if factor != 2 or len(kernel) != 4:
            raise ValueError("Upsample supports factor 2 with a 4-tap kernel (GPEN's [1,3,3,1])")
        self.factor = factor
        self.register_buffer("kernel", paddle.to_tensor(make_kernel(kernel) * factor ** 2,
                                                        dtype=paddle.get_default_dtype()))
        p = len(kernel) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)  # (2, 1) for the 4-tap kernel

    def phase_kernels(self):
        # With pads (2, 1): out[2u] = k[0]·x[u−1] + k[2]·x[u], out[2u+1] = k[1]·x[u] + k[3]·x[u+1]
        # (k flipped; per axis). As 3-tap filters over x[u−1], x[u], x[u+1], a zero tap is index 4.
        taps = paddle.to_tensor([[0, 2, 4], [4, 1, 3]], dtype="int64")
        k = F.pad(paddle.flip(self.kernel, [0, 1]), [0, 1, 0, 1])  # (5, 5): row/col 4 is zero
        phases = [paddle.index_select(paddle.index_select(k, taps[ry], axis=0), taps[rx], axis=1)
                  for ry in range(2) for rx in range(2)]
        return paddle.stack(phases).reshape([4, 1, 3, 3])

    def forward(self, x):
        c, h, w = x.shape[1], x.shape[2], x.shape[3]
        out = F.conv2d(x.reshape([-1, 1, h, w]), self.phase_kernels(), padding=1)  # (N·C, 4, H, W)
        return interleave_phases(out.reshape([-1, c, 4, h, w]), c)


def interleave_phases(phases, channels):
    """(N, C, 4, H, W) phase maps, phase index = 2·ry + rx -> (N, C, 2H, 2W) with out[2u+ry, 2v+rx]."""
    h, w = phases.shape[3], phases.shape[4]
    out = phases.reshape([-1, channels, 2, 2, h, w]).transpose([0, 1, 4, 2, 5, 3])
    return out.reshape([-1, channels, 2 * h, 2 * w])


class EqualConv2d(nn.Layer):
    """Conv with N(0,1) weights scaled by 1/√fan_in at run time (equalized learning rate)."""

    def __init__(self, in_channel, out_channel, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        self.weight = self.create_parameter([out_channel, in_channel, kernel_size, kernel_size],
                                            default_initializer=nn.initializer.Normal())
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.stride = stride
        self.padding = padding
        self.bias = self.create_parameter([out_channel], is_bias=True,
                                          default_initializer=nn.initializer.Constant(0.0)) if bias else None

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding)


class EqualLinear(nn.Layer):
    """Linear layer with weight (out, in) ~ N(0,1)/lr_mul, used as x·(w·lr_mul/√in)ᵀ + bias·lr_mul;
    activation 'fused_lrelu' gives √2·leaky_relu(...)."""

    def __init__(self, in_dim, out_dim, bias=True, bias_init=0.0, lr_mul=1.0, activation=None):
        super().__init__()
        self.weight = self.create_parameter([out_dim, in_dim],
                                            default_initializer=nn.initializer.Normal(std=1.0 / lr_mul))
        self.bias = self.create_parameter([out_dim], is_bias=True,
                                          default_initializer=nn.initializer.Constant(bias_init)) if bias else None
        self.activation = activation
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, x):
        out = paddle.matmul(x, self.weight * self.scale, transpose_y=True)
        if self.bias is not None:
            out = out + self.bias * self.lr_mul
        if self.activation == "fused_lrelu":
            out = leaky_relu(out) * SQRT2
        return out


class FusedLeakyReLU(nn.Layer):
    """√2 · leaky_relu(x + bias, 0.2) with a learnable per-channel bias."""

    def __init__(self, channel):
        super().__init__()
        self.bias = self.create_parameter([channel], is_bias=True, default_initializer=nn.initializer.Constant(0.0))

    def forward(self, x):
        return leaky_relu(x + self.bias.reshape([1, -1, 1, 1])) * SQRT2


class ScaledLeakyReLU(nn.Layer):
    def __init__(self, negative_slope=0.2):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return leaky_relu(x, self.negative_slope) * SQRT2


class PixelNorm(nn.Layer):
    def forward(self, x):
        return x * paddle.rsqrt(paddle.mean(x * x, axis=1, keepdim=True) + 1e-8)


class ModulatedConv2d(nn.Layer):
    """StyleGAN2's modulated convolution, in the non-fused form.

    The authors build per-sample weights w' = w·s/√fan_in, demodulate them and run a grouped convolution
    with groups = batch. Here the same result is computed as conv(x·s/√fan_in, w)·d with the demodulation
    d[n, o] = 1/√(Σ_i s'[n,i]²·Σ_k w[o,i,k]² + 1e-8): one shared-weight convolution for the whole batch.
    """

    def __init__(self, in_channel, out_channel, kernel_size, style_dim, demodulate=True,
                 upsample=False, downsample=False, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.eps = 1e-8
        self.kernel_size = kernel_size
        self.in_channel = in_channel
        self.out_channel = out_channel
        self.upsample = upsample
        self.downsample = downsample
        self.weight = self.create_parameter([1, out_channel, in_channel, kernel_size, kernel_size],
                                            default_initializer=nn.initializer.Normal())
        if upsample:
            if kernel_size != 3:
                raise ValueError("the upsampling modulated convolution is built for 3×3 kernels (as in GPEN)")
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        if downsample:
            factor = 2
            p = (len(blur_kernel) - factor) + (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2, p // 2))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1.0)
        self.demodulate = demodulate
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.padding = kernel_size // 2

    def _polyphase_weight(self, w):
        """Weights of the stride-2 transposed convolution as one 2×2 convolution with 4·out outputs.

        For a 3-tap axis, T[2u] = w[0]·x[u] + w[2]·x[u−1] and T[2u+1] = w[1]·x[u]; over (x[u−1], x[u])
        the phase filters are (w[2], w[0]) and (0, w[1]). Output channel = 4·o + 2·ry + rx.
        """
        taps = paddle.to_tensor([2, 0, 3, 1], dtype="int64")  # (phase 0: w2, w0), (phase 1: 0, w1)
        wp = F.pad(w, [0, 1, 0, 1])  # index 3 is a zero tap
        wp = paddle.index_select(paddle.index_select(wp, taps, axis=2), taps, axis=3)  # (o, i, 4, 4)
        wp = wp.reshape([self.out_channel, self.in_channel, 2, 2, 2, 2]).transpose([0, 2, 4, 1, 3, 5])
        return wp.reshape([self.out_channel * 4, self.in_channel, 2, 2])

    def forward(self, x, style):
        s = self.modulation(style) * self.scale  # (N, in)
        w = self.weight.reshape([self.out_channel, self.in_channel, self.kernel_size, self.kernel_size])
        x = x * s.reshape([-1, self.in_channel, 1, 1])
        if self.upsample:
            # The transposed conv T (size 2H+1) as its 4 phases on the input grid, interleaved into Z
            # (size 2H+2) whose last row/column is exactly zero; so blurring T with pads (p0, p1)
            # equals blurring Z with pads (p0, p1 − 1).
            h, wd = x.shape[2], x.shape[3]
            out = F.conv2d(x, self._polyphase_weight(w), padding=1)  # (N, 4·out, H+1, W+1)
            out = interleave_phases(out.reshape([-1, self.out_channel, 4, h + 1, wd + 1]), self.out_channel)
            out = self.blur(out, pad=(self.blur.pad[0], self.blur.pad[1] - 1))
        elif self.downsample:
            out = F.conv2d(self.blur(x), w, stride=2)
        else:
            out = F.conv2d(x, w, padding=self.padding)
        if self.demodulate:
            w2 = (w * w).sum(axis=[2, 3])  # (out, in)
            d = paddle.rsqrt(paddle.matmul(s * s, w2, transpose_y=True) + self.eps)  # (N, out)
            out = out * d.reshape([-1, self.out_channel, 1, 1])
        return out


class NoiseInjection(nn.Layer):
    """Adds (or, in GPEN, concatenates) the noise input times a learned scalar. GPEN passes the encoder's
    features as the noise, so nothing is random here."""

    def __init__(self, isconcat=True):
        super().__init__()
        self.isconcat = isconcat
        self.weight = self.create_parameter([1], default_initializer=nn.initializer.Constant(0.0))

    def forward(self, image, noise):
        if self.isconcat:
            return paddle.concat([image, self.weight * noise], axis=1)
        return image + self.weight * noise


class ConstantInput(nn.Layer):
    def __init__(self, channel, size=4):
        super().__init__()
        self.input = self.create_parameter([1, channel, size, size], default_initializer=nn.initializer.Normal())

    def forward(self, style):
        # Broadcast against a (N, 1, 1, 1) zero taken from the (N, style_dim) style, so that the
        # batch stays dynamic in an exported graph.
        return self.input + paddle.zeros_like(style[:, :1]).reshape([-1, 1, 1, 1])


class StyledConv(nn.Layer):
    """Modulated conv → noise injection (concatenation) → fused leaky ReLU over out·2 channels."""

    def __init__(self, in_channel, out_channel, kernel_size, style_dim, upsample=False,
                 blur_kernel=(1, 3, 3, 1), demodulate=True, isconcat=True):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim, upsample=upsample,
                                    blur_kernel=blur_kernel, demodulate=demodulate)
        self.noise = NoiseInjection(isconcat)
        self.activate = FusedLeakyReLU(out_channel * (2 if isconcat else 1))

    def forward(self, x, style, noise):
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Layer):
    """1×1 modulated conv to RGB (no demodulation) + bias, plus the upsampled skip from below."""

    def __init__(self, in_channel, style_dim, upsample=True, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.bias = self.create_parameter([1, 3, 1, 1], is_bias=True, default_initializer=nn.initializer.Constant(0.0))
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)

    def forward(self, x, style, skip=None):
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class ConvLayer(nn.Sequential):
    """[Blur] → EqualConv2d → [FusedLeakyReLU | ScaledLeakyReLU]; indices are part of the checkpoint keys."""

    def __init__(self, in_channel, out_channel, kernel_size, downsample=False, blur_kernel=(1, 3, 3, 1),
                 bias=True, activate=True):
        layers = []
        if downsample:
            factor = 2
            p = (len(blur_kernel) - factor) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channel, out_channel, kernel_size, stride=stride, padding=padding,
                                  bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channel) if bias else ScaledLeakyReLU(0.2))
        super().__init__(*layers)


class ResBlock(nn.Layer):
    """Discriminator block: two 3×3 convs (the second downsampling) plus a 1×1 downsampling skip, /√2."""

    def __init__(self, in_channel, out_channel, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.conv1 = ConvLayer(in_channel, in_channel, 3)
        self.conv2 = ConvLayer(in_channel, out_channel, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(in_channel, out_channel, 1, downsample=True, activate=False, bias=False,
                              blur_kernel=blur_kernel)

    def forward(self, x):
        return (self.conv2(self.conv1(x)) + self.skip(x)) / SQRT2
