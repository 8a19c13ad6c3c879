"""StyleGAN2 building blocks as GPEN uses them (GPEN_SPEC §2), in forms Paddle can train and deploy.

Every layer keeps the authors' parameter names and layouts, so their checkpoints load by name.
The decisions below are made once, here, for the whole network:

* Second derivatives. R1 and path-length regularization differentiate gradients, and Paddle's CPU build
  has no double backward for depthwise convolution, conv2d_transpose, strided slicing, pixel_shuffle or
  flatten. Blurs therefore run separably along each axis (`separable_upfirdn2d`): as banded
  matrix products on small maps, as one-channel convolutions with the 4 taps on large ones (a band
  costs side × pixels, the taps 4 × pixels). The upsampling of the RGB skip and the upsampling
  convolution are polyphase convolutions (one stride-1 convolution computing the four output phases,
  then interleaved: `interleave_phases`) instead of transposed convolutions. `upfirdn2d` is the
  reference they are tested against.
* Speed on the CPU. Paddle's CPU broadcasts are fast only along the rows of a 2-D view with the smaller
  operand second, so per-channel biases and scales run on (N·C, H·W) views (`scale_channels`,
  `bias_leaky_relu`); constants made on the host are made once per device (`constant`), so a training
  iteration copies nothing from the host and reads nothing back (tests/test_host_sync.py). Convolutions
  with learned filters go through `model.conv.conv2d` (oneDNN's in dygraph on the CPU, 2-4x faster than
  Paddle's conv2d); the one-channel convolutions of the blurs and phases stay F.conv2d, faster there.
* Export. Nothing draws random numbers in `forward` (GPEN's "noise" is the encoder's features), the
  modulated convolution is the non-fused form (see ModulatedConv2d), which keeps the batch dynamic under
  `paddle.jit.to_static`, and all padding is folded into the convolutions (no pad op: paddle2onnx writes
  Pad's value wrongly).
* Bias + leaky ReLU has two forms of the same function, chosen by `paddle.in_dynamic_mode()`: in
  dygraph the fastest double-differentiable kernels of Paddle's CPU build (see `bias_leaky_relu`); in a
  static graph (export) `y + (1 − a)/(1 + a)·|y|` with y = (1 + a)/2·g·x, the factor on x folded into
  whatever computes x where that costs nothing (a convolution's filter and bias, a demodulation, a noise
  weight: `exported_prescale`; GPEN-512's predictor at batch 2 0-8 % faster in two process pairs).
  The inference predictor (oneDNN on) and paddle2onnx handle that form: oneDNN's leaky_relu crashes the
  predictor, paddle2onnx writes LeakyRelu's alpha wrongly, and `maximum(x, 0.2·x)`, the form exported
  before, has no oneDNN kernel, so each one cost two layout conversions (8-11 % of GPEN-256's and
  GPEN-1024's predictor time). tests/test_layers.py and tests/test_deploy.py check that the forms agree.
* Leaky ReLU has PyTorch's slope 0.2 at exactly 0 in training (Paddle's F.leaky_relu uses 1 there and
  `maximum(x, 0.2·x)` splits the tie, 0.6). That matters: the zero-initialised noise channels sit
  exactly at 0, so the convention decides the first optimizer step (GPEN_SPEC §9).
"""
import functools
import math

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from model.conv import conv2d

SQRT2 = math.sqrt(2.0)


def channel_table(channel_multiplier=2, narrow=1.0):
    """Channels per resolution (GPEN_SPEC §1), shared by the generator and the discriminator."""
    return {4: int(512 * narrow), 8: int(512 * narrow), 16: int(512 * narrow), 32: int(512 * narrow),
            64: int(256 * channel_multiplier * narrow), 128: int(128 * channel_multiplier * narrow),
            256: int(64 * channel_multiplier * narrow), 512: int(32 * channel_multiplier * narrow),
            1024: int(16 * channel_multiplier * narrow), 2048: int(8 * channel_multiplier * narrow)}


def leaky_relu(x, negative_slope=0.2):
    """PyTorch's leaky ReLU, gradient at 0 included: where(x > 0, x, slope·x)."""
    return paddle.where(x > 0, x, x * negative_slope)


def exported_prescale(negative_slope=0.2, gain=1.0):
    """p = (1 + a)/2·g: the factor an exported graph puts on a leaky ReLU's input where it costs nothing
    (a convolution's filter and bias, a demodulation, a noise weight), so that `prescaled_leaky_relu`
    needs one pass over the map fewer."""
    return (1 + negative_slope) / 2 * gain


def prescaled_leaky_relu(y, negative_slope=0.2):
    """g·leaky_relu(x) from y = p·x (p = exported_prescale(a, g)), as exported graphs compute it:
    y + (1 − a)/(1 + a)·|y|, three oneDNN passes (abs, scale, add). Forward values only."""
    return y + paddle.abs(y) * ((1 - negative_slope) / (1 + negative_slope))


@paddle.jit.not_to_static  # plain Python branching only; dy2static would lose the module globals
def bias_leaky_relu(x, bias=None, gain=SQRT2, negative_slope=0.2, prescaled=False):
    """gain · leaky_relu(x + bias), bias along axis 1 of an (N, C, ...) tensor (StyleGAN2's fused op).

    prescaled (exported graphs only): x is already p·x (p = exported_prescale(negative_slope, gain)),
    multiplied upstream for free; the bias is scaled here."""
    if not paddle.in_dynamic_mode():  # static graph for export: no gradients, oneDNN kernels only
        prescale = exported_prescale(negative_slope, gain)
        if not prescaled:  # nothing upstream took it: a pass of its own
            x = x * prescale
        if bias is not None:
            x = x + (bias * prescale).reshape([1, -1] + [1] * (len(x.shape) - 2))
        return prescaled_leaky_relu(x, negative_slope)
    if prescaled:
        raise ValueError("prescaled inputs exist in exported graphs only")
    # Paddle's CPU kernels: a bias broadcast over (N, H, W) and `where` run 3-7x slower (forward and
    # backward) than an add broadcast along the rows of an (N·C, H·W) view and F.leaky_relu; and a
    # broadcast binary op is fast only with the smaller operand second (col − rows: ~8x slower than
    # rows + col). F.leaky_relu takes slope 1 at exactly 0, but −a·leaky_relu(−y, 1/a) = leaky_relu(y, a)
    # everywhere and takes its negative-side slope a at y = 0, as PyTorch does.
    n, c = x.shape[0], x.shape[1]
    rows = x.reshape([n * c, -1])
    if bias is not None:
        rows = rows + bias.tile([n]).reshape([-1, 1])
    out = F.leaky_relu(rows * -1.0, 1.0 / negative_slope) * (-negative_slope * gain)
    return out.reshape(x.shape)


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


_CONSTANTS = {}


def constant(key, make, dtype):
    """A constant computed on the host (`make()`, a numpy array) as a tensor of `dtype`. In dygraph it is
    made once per (key, dtype, device) and kept, so that a forward pass copies nothing from the host
    after its first call; a static graph (export) gets it as a constant of the program."""
    if not paddle.in_dynamic_mode():  # the values in the program's dtype: no cast op in the graph
        return paddle.to_tensor(np.asarray(make(), np.float64 if dtype == paddle.float64 else np.float32))
    full_key = (key, str(dtype), paddle.get_device())
    if full_key not in _CONSTANTS:
        _CONSTANTS[full_key] = paddle.to_tensor(make(), dtype=dtype)
    return _CONSTANTS[full_key]


@functools.lru_cache(maxsize=None)
def band_matrix(length, kernel, up, pad0, pad1):
    """upfirdn along one axis as a matrix: out = B @ x for x of `length` samples (B: out_length × length).

    Zero insertion (up), padding (pad0, pad1) and correlation with the flipped 1-D kernel give
    out[j] = Σ_i kernel[K − 1 − (up·i + pad0 − j)]·x[i] over the taps that exist; cached per size.
    """
    taps = np.asarray(kernel, dtype=np.float64)[::-1]
    out_length = length * up + pad0 + pad1 - len(taps) + 1
    t = up * np.arange(length)[None, :] + pad0 - np.arange(out_length)[:, None]
    valid = (t >= 0) & (t < len(taps))
    return np.where(valid, taps[np.clip(t, 0, len(taps) - 1)], 0.0)


# Largest side at which a blur runs as two dense banded matrix products. A band costs 2·side FLOPs per
# pixel and axis, the taps 2·4, but Paddle's matmul is far more efficient than its one-channel
# convolution, so the band wins on small maps. Crossover measured with tools/benchmark.py --sections
# blurs (forward, backward and double backward, 2 threads): see the README's Benchmarks.
DENSE_BLUR_MAX_SIDE = 128


@paddle.jit.not_to_static  # plain Python branching on the map's size, read when the graph is traced
def separable_upfirdn2d(x, kernel_1d, pad=(0, 0)):
    """upfirdn2d (up = down = 1) with the separable kernel outer(k, k): rows, then columns.

    Maps whose larger side is at most DENSE_BLUR_MAX_SIDE use banded matrix
    products (fast on small maps, double backward, exported as plain matmuls), larger ones two
    one-channel convolutions with the taps (cost linear in the pixels; also twice differentiable:
    conv2d's double grad is exact when the filter is a constant). Both forms are exact.
    """
    kernel = tuple(float(v) for v in kernel_1d)
    if max(x.shape[2], x.shape[3]) <= DENSE_BLUR_MAX_SIDE:
        return band_matrix_blur(x, kernel, pad)
    return tap_convolutions(x, kernel, pad)


def band_matrix_blur(x, kernel, pad):
    """The separable blur as two banded matrix products, rows then columns (cost: side per pixel).

    The products take the (N·C, H, W) view: the oneDNN predictor returns wrong values for a matmul whose
    4-D operand comes straight from a chain of oneDNN ops (a fused conv + bias + activation); the reshape
    makes it hand over the plain layout."""
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    pad = tuple(pad)
    rows = constant(("band", h, kernel, pad), lambda: band_matrix(h, kernel, 1, *pad), x.dtype)
    cols = constant(("band_t", w, kernel, pad), lambda: band_matrix(w, kernel, 1, *pad).T, x.dtype)
    out = paddle.matmul(paddle.matmul(rows, x.reshape([-1, h, w])), cols)
    return out.reshape([-1, c, out.shape[1], out.shape[2]])


def tap_convolutions(x, kernel, pad):
    """The separable blur as a (K, 1) and a (1, K) convolution over the (batch·channels) one-channel
    images, padding (pad0, pad1) folded into each: correlation with the flipped taps (cost: K per pixel)."""
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    taps = constant(("taps", kernel), lambda: np.asarray(kernel[::-1]), x.dtype)
    out = F.conv2d(x.reshape([-1, 1, h, w]), taps.reshape([1, 1, -1, 1]), padding=[pad[0], pad[1], 0, 0])
    out = F.conv2d(out, taps.reshape([1, 1, 1, -1]), padding=[0, 0, pad[0], pad[1]])
    return out.reshape([-1, c, out.shape[2], out.shape[3]])


def _separable_factor(kernel, gain):
    """The 1-D factor of make_kernel(kernel)·gain² (GPEN's kernels are outer products)."""
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 1:
        raise ValueError("blur kernels are given by their 1-D factor, e.g. [1, 3, 3, 1]")
    return k / k.sum() * gain


class Blur(nn.Layer):
    """Low-pass filter with the [1,3,3,1] kernel and padding (pad0, pad1).

    The 2-D kernel is a buffer because the authors' checkpoints carry it (key `...kernel`), so that
    their files load by name. The forward pass uses the architecture's 1-D factor, not the buffer: a
    kernel read from a checkpoint is ignored (every GPEN checkpoint holds this same [1,3,3,1] kernel),
    and the factor stays a host constant, so no forward pass reads a tensor back to the host.
    """

    def __init__(self, kernel, pad, upsample_factor=1):
        super().__init__()
        k = make_kernel(kernel) * (upsample_factor ** 2)
        self.register_buffer("kernel", paddle.to_tensor(k, dtype=paddle.get_default_dtype()))
        self.kernel_1d = _separable_factor(kernel, upsample_factor)
        self.pad = tuple(pad)

    def forward(self, x, pad=None):
        return separable_upfirdn2d(x, self.kernel_1d, pad=pad if pad is not None else self.pad)


class Upsample(nn.Layer):
    """2× upsampling of the ToRGB skip: upfirdn2d(up=2, kernel·4, pads ((p+1)//2+1, p//2)).

    Computed as its four polyphase outputs (a 3×3 one-channel convolution producing 4 maps) interleaved:
    the same sums as zero insertion, without the zeros. (The banded-matrix form of the blurs gives
    wrong results here under the oneDNN predictor; this form is exact there.) The phase filters are
    constants of the architecture, built once (a 2-D pad in the graph corrupts oneDNN's heap).
    """

    def __init__(self, kernel, factor=2):
        super().__init__()
        if factor != 2 or len(kernel) != 4:
            raise ValueError("Upsample supports factor 2 with a 4-tap kernel (GPEN's [1,3,3,1])")
        # `kernel`: the checkpoints' buffer (see Blur); the phase filters below are what runs.
        k = make_kernel(kernel) * factor ** 2
        self.register_buffer("kernel", paddle.to_tensor(k, dtype=paddle.get_default_dtype()))
        # The phase filters are upfirdn2d(up=2) with the spec's pads (2, 1) for a 4-tap kernel; the tests
        # compare them with upfirdn2d at pads computed from GPEN_SPEC's formula.
        self.register_buffer("phases", paddle.to_tensor(self.phase_kernels(k), dtype=paddle.get_default_dtype()),
                             persistable=False)

    @staticmethod
    def phase_kernels(k):
        """With pads (2, 1): out[2u] = k[0]·x[u−1] + k[2]·x[u] and out[2u+1] = k[1]·x[u] + k[3]·x[u+1]
        (k flipped; per axis). As 3-tap filters over (x[u−1], x[u], x[u+1]); phase = 2·ry + rx."""
        flipped = np.pad(k[::-1, ::-1], ((0, 1), (0, 1)))  # index 4 is a zero tap
        taps = [[0, 2, 4], [4, 1, 3]]
        phases = [flipped[np.ix_(taps[ry], taps[rx])] for ry in range(2) for rx in range(2)]
        return np.stack(phases).reshape(4, 1, 3, 3).astype(np.float32)

    def forward(self, x):
        c, h, w = x.shape[1], x.shape[2], x.shape[3]
        out = F.conv2d(x.reshape([-1, 1, h, w]), self.phases, padding=1)  # (N·C, 4, H, W)
        return interleave_phases(out.reshape([-1, c, 4, h, w]), c)


@paddle.jit.not_to_static  # plain Python branching on the mode, read when the graph is traced
def interleave_phases(phases, channels):
    """(N, C, 4, H, W) phase maps, phase index = 2·ry + rx -> (N, C, 2H, 2W) with out[2u+ry, 2v+rx].

    In dygraph this is pixel_shuffle with its inverse as gradient (`PixelShuffle`): Paddle's strided
    copy of the transposed form is 4-9x slower here, and its double backward about 2x. The static graph
    (export) keeps reshape/transpose, which the oneDNN predictor and paddle2onnx are tested with."""
    h, w = phases.shape[3], phases.shape[4]
    if paddle.in_dynamic_mode():
        return PixelShuffle.apply(phases.reshape([-1, 4 * channels, h, w]))
    out = phases.reshape([-1, channels, 2, 2, h, w]).transpose([0, 1, 4, 2, 5, 3])
    return out.reshape([-1, channels, 2 * h, 2 * w])


class PixelShuffle(paddle.autograd.PyLayer):
    """F.pixel_shuffle(x, 2) differentiable to any order: a permutation, whose gradient is the inverse
    permutation (PixelUnshuffle), and so on. Paddle's own pixel_shuffle has no double backward."""

    @staticmethod
    def forward(ctx, x):
        return F.pixel_shuffle(x, 2)

    @staticmethod
    def backward(ctx, grad):
        return PixelUnshuffle.apply(grad)


class PixelUnshuffle(paddle.autograd.PyLayer):
    """F.pixel_unshuffle(x, 2), the inverse of PixelShuffle and its gradient."""

    @staticmethod
    def forward(ctx, x):
        return F.pixel_unshuffle(x, 2)

    @staticmethod
    def backward(ctx, grad):
        return PixelShuffle.apply(grad)


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
        return conv2d(x, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding)


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
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation == "fused_lrelu":
            return bias_leaky_relu(out, bias)
        return out + bias if bias is not None else out


class FusedLeakyReLU(nn.Layer):
    """√2 · leaky_relu(x + bias, 0.2) with a learnable per-channel bias."""

    negative_slope = 0.2

    def __init__(self, channel):
        super().__init__()
        self.bias = self.create_parameter([channel], is_bias=True, default_initializer=nn.initializer.Constant(0.0))

    def forward(self, x, prescaled=False):
        return bias_leaky_relu(x, self.bias, prescaled=prescaled)


class ScaledLeakyReLU(nn.Layer):
    def __init__(self, negative_slope=0.2):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return bias_leaky_relu(x, None, negative_slope=self.negative_slope)


class PixelNorm(nn.Layer):
    def forward(self, x):
        return x * paddle.rsqrt(paddle.mean(x * x, axis=1, keepdim=True) + 1e-8)


def _phase_taps():
    """(1, 4, 9, 4) 0/1 array from a 3×3 kernel (ky, kx) to the four 2×2 phase kernels: [0, phase, tap,
    (ty, tx)] with phase = 2·ry + rx, tap = 3·ky + kx, and (ty, tx) at 2·ty + tx. Per axis, phase 0 takes
    taps (2, 0) and phase 1 takes (none, 1) (see ModulatedConv2d.polyphase_weight)."""
    source = {(0, 0): 2, (0, 1): 0, (1, 0): None, (1, 1): 1}  # (phase, tap) -> kernel index
    taps = np.zeros((1, 4, 9, 4), np.float32)
    for ry in range(2):
        for rx in range(2):
            for ty in range(2):
                for tx in range(2):
                    ky, kx = source[(ry, ty)], source[(rx, tx)]
                    if ky is not None and kx is not None:
                        taps[0, 2 * ry + rx, 3 * ky + kx, 2 * ty + tx] = 1.0
    return taps


class ModulatedConv2d(nn.Layer):
    """StyleGAN2's modulated convolution, in the non-fused form.

    The authors build per-sample weights w' = w·s/√fan_in, demodulate them and run a grouped convolution
    with groups = batch. Here the same result is computed as conv(x·s', w)·d with s' = s/√fan_in and
    d[n, o] = 1/√(Σ_i s'[n,i]²·Σ_k w[o,i,k]² + 1e-8): one shared-weight convolution for the whole batch.
    It is also the only correct form for second derivatives in Paddle 3.3: its conv2d double grad drops
    the output-gradient term fed by a filter gradient (ddout = conv(x, ddw)), which the fused form's
    path-length penalty needs (styles reach the filters there); and it is faster here (Paddle's CPU
    grouped convolution loops over the groups).
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
            self.register_buffer("phase_taps", paddle.to_tensor(_phase_taps(), dtype=paddle.get_default_dtype()),
                                 persistable=False)
        if downsample:
            factor = 2
            p = (len(blur_kernel) - factor) + (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2, p // 2))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1.0)
        self.demodulate = demodulate
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.padding = kernel_size // 2

    def polyphase_weight(self, w):
        """Weights (out, in, 3, 3) of a stride-2 transposed convolution as one 2×2 convolution with 4·out
        outputs (channel 4·o + 2·ry + rx).

        Per axis, T[2u] = w[0]·x[u] + w[2]·x[u−1] and T[2u+1] = w[1]·x[u]: over (x[u−1], x[u]) the phase
        filters are (w[2], w[0]) and (0, w[1]). The taps are picked by one matmul with a constant 0/1
        array, broadcast over the output channels and the phases, which writes the result in the
        convolution's layout (fast, and differentiable twice; gathers and concatenations of size-1
        slices are slow in Paddle's CPU backward, and so is the strided copy behind a reshape of transposed
        filters: a matmul + transpose took 31 ms for a 256 × 512 filter, 23 of them that copy; this 6 ms).
        """
        out, inp = self.out_channel, self.in_channel
        picked = paddle.matmul(w.reshape([out, 1, inp, 9]), self.phase_taps)  # (out, 4 phases, in, 2·2)
        return picked.reshape([out * 4, inp, 2, 2])

    def _convolve(self, x, w):
        if self.upsample:
            # The transposed conv T (size 2H+1) as its 4 phases on the input grid, interleaved into Z
            # (size 2H+2) whose last row/column is exactly zero; so blurring T with pads (p0, p1)
            # equals blurring Z with pads (p0, p1 − 1).
            h, wd = x.shape[2], x.shape[3]
            out = conv2d(x, self.polyphase_weight(w), padding=1)  # (N, 4·out, H+1, W+1)
            out = interleave_phases(out.reshape([-1, self.out_channel, 4, h + 1, wd + 1]), self.out_channel)
            return self.blur(out, pad=(self.blur.pad[0], self.blur.pad[1] - 1))
        if self.downsample:
            return conv2d(self.blur(x), w, stride=2)
        return conv2d(x, w, padding=self.padding)

    def forward(self, x, style, out_gain=1.0):
        """out_gain: a positive factor on the output, taken by the demodulation (exported graphs use it)."""
        s = self.modulation(style) * self.scale  # (N, in)
        w = self.weight.reshape([self.out_channel, self.in_channel, self.kernel_size, self.kernel_size])
        out = self._convolve(scale_channels(x, s), w)
        if self.demodulate:
            w2 = (w * w).sum(axis=[2, 3])  # (out, in)
            d = paddle.rsqrt(paddle.matmul(s * s, w2, transpose_y=True) + self.eps)  # (N, out)
            out = scale_channels(out, d if out_gain == 1.0 else d * out_gain)
        elif out_gain != 1.0:
            out = out * out_gain
        return out


@paddle.jit.not_to_static  # plain Python branching on the mode, read when the graph is traced
def scale_channels(x, scale):
    """x (N, C, H, W) times scale (N, C), per sample and channel.

    In dygraph a row broadcast on the (N·C, H·W) view: Paddle's CPU kernels for the (N, C, 1, 1)
    broadcast, its gradient and above all its double grad (the path-length penalty's) are slower. In a
    static graph (export) the 4-D broadcast, which oneDNN runs without layout reorders."""
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    if not paddle.in_dynamic_mode():
        return x * scale.reshape([-1, c, 1, 1])
    return (x.reshape([-1, h * w]) * scale.reshape([-1, 1])).reshape([-1, c, h, w])


class NoiseInjection(nn.Layer):
    """Adds (or, in GPEN, concatenates) the noise input times a learned scalar. GPEN passes the encoder's
    features as the noise, so nothing is random here."""

    def __init__(self, isconcat=True):
        super().__init__()
        self.isconcat = isconcat
        self.weight = self.create_parameter([1], default_initializer=nn.initializer.Constant(0.0))

    def forward(self, image, noise, gain=1.0):
        """gain: a factor on the noise term (exported graphs use it, see StyledConv)."""
        weight = self.weight if gain == 1.0 else self.weight * gain
        # noise · weight, not weight · noise: Paddle's CPU broadcast is fast only with the smaller operand second.
        if self.isconcat:
            return paddle.concat([image, noise * weight], axis=1)
        return image + noise * weight


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
        return _styled_conv(self, x, style, noise)


@paddle.jit.not_to_static  # plain Python branching on the mode, read when the graph is traced
def _styled_conv(layer, x, style, noise):
    """StyledConv's forward. An exported graph puts the activation's prescale on the demodulation and
    the noise weight (small tensors), which saves one pass over the map (see `exported_prescale`)."""
    if paddle.in_dynamic_mode():
        return layer.activate(layer.noise(layer.conv(x, style), noise))
    prescale = exported_prescale(layer.activate.negative_slope, SQRT2)
    out = layer.noise(layer.conv(x, style, out_gain=prescale), noise, gain=prescale)
    return layer.activate(out, prescaled=True)


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

    def forward(self, x):
        return _conv_layer(list(self.children()), x)


@paddle.jit.not_to_static  # plain Python branching on the mode, read when the graph is traced
def _conv_layer(layers, x):
    """ConvLayer's forward: its layers in turn. An exported graph folds the activation's prescale and
    bias into the convolution (see `exported_prescale`): two passes over the map fewer."""
    activation = layers[-1]
    if paddle.in_dynamic_mode() or not isinstance(activation, (FusedLeakyReLU, ScaledLeakyReLU)):
        for layer in layers:
            x = layer(x)
        return x
    for layer in layers[:-2]:
        x = layer(x)
    conv, slope = layers[-2], activation.negative_slope
    prescale = exported_prescale(slope, SQRT2)
    bias = activation.bias * prescale if isinstance(activation, FusedLeakyReLU) else None
    out = conv2d(x, conv.weight * (conv.scale * prescale), bias=bias, stride=conv.stride, padding=conv.padding)
    return prescaled_leaky_relu(out, slope)


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
