"""The layer forms chosen for double backward and export, against their definitions:
upfirdn2d against a direct numpy implementation, the blurs (banded matrices and tap convolutions) and
the polyphase upsampling against upfirdn2d with GPEN_SPEC §2's kernels and pads,
the non-fused modulated convolution against the authors' grouped / transposed convolution,
second derivatives against finite differences, and a dynamic batch through paddle.jit.to_static."""
import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from loss.adversarial import path_length_penalty, r1_penalty
from model import Discriminator, FullGenerator, layers
from model.layers import Blur, ConvLayer, ModulatedConv2d, Upsample, leaky_relu, make_kernel, upfirdn2d


def upfirdn2d_numpy(x, kernel, up, down, pad0, pad1):
    """The definition (GPEN_SPEC §2), one pixel at a time."""
    n, c, h, w = x.shape
    z = np.zeros((n, c, h * up, w * up), x.dtype)
    z[:, :, ::up, ::up] = x
    size = (h * up + pad0 + pad1, w * up + pad0 + pad1)
    p = np.zeros((n, c) + size, x.dtype)
    src = z[:, :, max(-pad0, 0):h * up - max(-pad1, 0), max(-pad0, 0):w * up - max(-pad1, 0)]
    p[:, :, max(pad0, 0):max(pad0, 0) + src.shape[2], max(pad0, 0):max(pad0, 0) + src.shape[3]] = src
    k = kernel[::-1, ::-1]
    kh, kw = k.shape
    out = np.zeros((n, c, size[0] - kh + 1, size[1] - kw + 1), np.float64)
    for i in range(kh):
        for j in range(kw):
            out += k[i, j] * p[:, :, i:i + out.shape[2], j:j + out.shape[3]]
    return out[:, :, ::down, ::down]


@pytest.mark.parametrize("up,down,pad", [(1, 1, (2, 1)), (2, 1, (2, 1)), (1, 2, (1, 1)), (2, 2, (1, -1)), (1, 1, (-1, 2))])
def test_upfirdn2d_matches_its_definition(up, down, pad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 7, 9)).astype(np.float32)
    kernel = rng.standard_normal((4, 4)).astype(np.float32)  # not symmetric: checks the flip
    ours = upfirdn2d(paddle.to_tensor(x), paddle.to_tensor(kernel), up=up, down=down, pad=pad).numpy()
    np.testing.assert_allclose(ours, upfirdn2d_numpy(x, kernel, up, down, *pad), rtol=1e-5, atol=1e-5)


# The oracle's kernels and pads, written out from GPEN_SPEC §2 (not read from the layers under test).
KERNEL_1D = (1, 3, 3, 1)


def spec_kernel(factor=1):
    """make_kernel([1,3,3,1]) · factor²: the normalised outer product."""
    k = np.outer(KERNEL_1D, KERNEL_1D).astype(np.float32)
    return paddle.to_tensor(k / k.sum() * factor ** 2)


def spec_pads(kind, kernel_size=3):
    """GPEN_SPEC §2's pad formulas for a 4-tap blur kernel and a conv of kernel_size."""
    taps, factor = len(KERNEL_1D), 2
    if kind == "upsample":        # Upsample (ToRGB skip): p = len(k) − 2, ((p+1)//2+1, p//2)
        p = taps - factor
        return (p + 1) // 2 + 1, p // 2
    if kind == "downsample":      # ConvLayer / ModulatedConv2d downsample: p = len(k) − 2 + (k−1), ((p+1)//2, p//2)
        p = taps - factor + (kernel_size - 1)
        return (p + 1) // 2, p // 2
    if kind == "modulated_up":    # ModulatedConv2d upsample: p = len(k) − 2 − (k−1), ((p+1)//2+1, p//2+1)
        p = taps - factor - (kernel_size - 1)
        return (p + 1) // 2 + 1, p // 2 + 1
    raise ValueError(kind)


def test_spec_pads_are_the_known_numbers():
    assert spec_pads("upsample") == (2, 1)
    assert spec_pads("downsample", 3) == (2, 2) and spec_pads("downsample", 1) == (1, 1)
    assert spec_pads("modulated_up") == (1, 1)


@pytest.mark.parametrize("dense_max_side", [1024, 0])  # the banded-matrix form, the tap convolutions
def test_blurs_and_upsample_equal_upfirdn2d(dense_max_side, monkeypatch):
    monkeypatch.setattr(layers, "DENSE_BLUR_MAX_SIDE", dense_max_side)
    x = paddle.randn([2, 3, 9, 8])
    reference = upfirdn2d(x, spec_kernel(2), up=2, pad=spec_pads("upsample"))
    np.testing.assert_allclose(Upsample([1, 3, 3, 1])(x).numpy(), reference.numpy(), rtol=1e-5, atol=1e-6)
    for kernel_size in (3, 1):  # the blur of a downsampling ConvLayer (3x3) and of the ResBlock skip (1x1)
        blur = ConvLayer(3, 4, kernel_size, downsample=True)[0]
        reference = upfirdn2d(x, spec_kernel(), pad=spec_pads("downsample", kernel_size))
        np.testing.assert_allclose(blur(x).numpy(), reference.numpy(), rtol=1e-5, atol=1e-6)
    for pad, factor in (((2, 2), 1), ((1, 1), 1), ((1, 0), 2), ((2, 1), 2)):
        blur = Blur([1, 3, 3, 1], pad=pad, upsample_factor=factor)
        reference = upfirdn2d(x, spec_kernel(factor), pad=pad)
        np.testing.assert_allclose(blur(x).numpy(), reference.numpy(), rtol=1e-5, atol=1e-6)


def authors_modulated_conv(layer, x, style):
    """The authors' form: per-sample demodulated weights and a grouped (transposed) convolution."""
    n, c, h, w = x.shape
    s = layer.modulation(style).reshape([n, 1, c, 1, 1])
    weight = layer.scale * layer.weight * s
    if layer.demodulate:
        weight = weight * paddle.rsqrt((weight ** 2).sum([2, 3, 4]) + 1e-8).reshape([n, layer.out_channel, 1, 1, 1])
    k = layer.kernel_size
    if layer.upsample:
        weight = weight.transpose([0, 2, 1, 3, 4]).reshape([n * c, layer.out_channel, k, k])
        out = F.conv2d_transpose(x.reshape([1, n * c, h, w]), weight, stride=2, groups=n)
        out = out.reshape([n, layer.out_channel, out.shape[2], out.shape[3]])
        return upfirdn2d(out, spec_kernel(2), pad=spec_pads("modulated_up", k))
    weight = weight.reshape([n * layer.out_channel, c, k, k])
    if layer.downsample:
        x = upfirdn2d(x, spec_kernel(), pad=spec_pads("downsample", k))
        out = F.conv2d(x.reshape([1, n * c, x.shape[2], x.shape[3]]), weight, stride=2, groups=n)
    else:
        out = F.conv2d(x.reshape([1, n * c, h, w]), weight, padding=k // 2, groups=n)
    return out.reshape([n, layer.out_channel, out.shape[2], out.shape[3]])


@pytest.mark.parametrize("dense_max_side", [1024, 0])
@pytest.mark.parametrize("kwargs", [dict(kernel_size=3), dict(kernel_size=3, upsample=True),
                                    dict(kernel_size=3, downsample=True), dict(kernel_size=1, demodulate=False)])
def test_non_fused_modulated_conv_equals_the_grouped_form(kwargs, dense_max_side, monkeypatch):
    monkeypatch.setattr(layers, "DENSE_BLUR_MAX_SIDE", dense_max_side)
    paddle.seed(1)
    layer = ModulatedConv2d(6, 5, style_dim=8, **kwargs)
    layer.modulation.bias.set_value(paddle.randn([6]))
    x, style = paddle.randn([3, 6, 8, 8]), paddle.randn([3, 8])
    with paddle.no_grad():
        ours, theirs = layer(x, style), authors_modulated_conv(layer, x, style)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-4, atol=1e-5)


def test_leaky_relu_has_pytorchs_slope_at_zero():
    x = paddle.to_tensor([-1.0, 0.0, 2.0])
    x.stop_gradient = False
    leaky_relu(x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0.2, 0.2, 1.0])


@pytest.fixture
def float64():
    paddle.set_default_dtype("float64")
    yield
    paddle.set_default_dtype("float32")


def finite_difference_check(loss_fn, params, picks, eps=1e-6):
    """Compare d loss / d param (from backward through create_graph) with central differences."""
    loss = loss_fn()
    loss.backward()
    for p in params:
        grad = p.grad.numpy().ravel().copy()
        flat = p.numpy().ravel().copy()
        for j in np.random.default_rng(0).choice(flat.size, size=min(picks, flat.size), replace=False):
            values = []
            for sign in (1, -1):
                bumped = flat.copy()
                bumped[j] += sign * eps
                p.set_value(bumped.reshape(p.shape))
                values.append(float(loss_fn()))
            p.set_value(flat.reshape(p.shape))
            numeric = (values[0] - values[1]) / (2 * eps)
            assert abs(numeric - grad[j]) <= 1e-5 * max(1.0, abs(numeric)) + 1e-8, (p.name, j, numeric, grad[j])


@pytest.mark.parametrize("dense_max_side", [1024, 0])
def test_r1_second_derivative_matches_finite_differences(float64, dense_max_side, monkeypatch):
    monkeypatch.setattr(layers, "DENSE_BLUR_MAX_SIDE", dense_max_side)
    paddle.seed(3)
    d = Discriminator(16, channel_multiplier=1, narrow=1 / 64)
    real = paddle.randn([2, 3, 16, 16])
    real.stop_gradient = False
    params = [d.convs[0][0].weight, d.convs[1].conv2[1].weight, d.convs[1].skip[1].weight,
              d.final_conv[0].weight, d.final_linear[0].weight]
    finite_difference_check(lambda: r1_penalty(d(real), real), params, picks=3)


@pytest.mark.parametrize("dense_max_side", [1024, 0])  # the blurs as banded matrices / as tap convolutions
def test_path_length_second_derivative_matches_finite_differences(float64, dense_max_side, monkeypatch):
    monkeypatch.setattr(layers, "DENSE_BLUR_MAX_SIDE", dense_max_side)
    paddle.seed(4)
    g = FullGenerator(16, style_dim=8, n_mlp=2, channel_multiplier=1, narrow=1 / 64)
    for layer in g.generator.convs:  # non-zero noise weights so the encoder features take part
        layer.noise.weight.set_value(paddle.to_tensor([0.7]))
    lq = paddle.randn([2, 3, 16, 16])
    noise = paddle.randn([2, 3, 16, 16])

    def penalty():
        fake, latents = g(lq, return_latents=True)
        return path_length_penalty(fake, latents, paddle.to_tensor(0.3), noise)[0]

    params = [g.ecd1[0][1].weight, g.final_linear[0].weight, g.generator.style[1].weight,
              g.generator.convs[0].conv.weight, g.generator.convs[0].conv.modulation.weight,
              g.generator.convs[1].noise.weight, g.generator.to_rgbs[0].conv.weight]
    finite_difference_check(penalty, params, picks=2)


def test_dynamic_batch_survives_to_static():
    paddle.seed(5)
    g = FullGenerator(16, style_dim=16, n_mlp=2, channel_multiplier=1, narrow=1 / 32)
    g.eval()
    static = paddle.jit.to_static(g.forward, input_spec=[paddle.static.InputSpec([None, 3, 16, 16], "float32")],
                                  full_graph=True)
    for batch in (1, 3):
        x = paddle.randn([batch, 3, 16, 16])
        with paddle.no_grad():
            expected = g(x)[0].numpy()
            got = static(x)[0].numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_make_kernel_is_the_normalised_outer_product():
    k = make_kernel([1, 3, 3, 1])
    np.testing.assert_allclose(k, np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0)
