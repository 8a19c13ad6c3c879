"""model/conv.py: the oneDNN convolution equals Paddle's conv2d, forward, backward and second order, and
falls back to conv2d with one line when it cannot be built."""
import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from model import conv
from utils.errors import UserError

# (input shape, filter shape, stride, padding): the forms GPEN's layers use (3x3 same, the stride-2
# downsampling after a blur, the polyphase 2x2 upsampling, 1x1 ToRGB / skip) and uneven pads.
CASES = [((2, 8, 9, 9), (6, 8, 3, 3), 1, 1), ((2, 8, 10, 10), (6, 8, 3, 3), 2, 0),
         ((2, 4, 7, 7), (12, 4, 2, 2), 1, 1), ((1, 5, 8, 8), (5, 5, 1, 1), 1, 0),
         ((2, 3, 9, 9), (4, 3, 3, 3), 1, [1, 0, 2, 1])]


@pytest.fixture(scope="module")
def onednn():
    if not conv.onednn_available():
        if conv.mode() == "onednn":
            pytest.fail(f"GPEN_CONV=onednn but the oneDNN convolution is unavailable: {conv.why_not()}")
        pytest.skip(f"the oneDNN convolution cannot be built here: {conv.why_not()}")


def tensors(shape, wshape, seed=0):
    rng = np.random.default_rng(seed)
    x = paddle.to_tensor(rng.standard_normal(shape).astype("float32"))
    w = paddle.to_tensor(rng.standard_normal(wshape).astype("float32"))
    x.stop_gradient = w.stop_gradient = False
    return x, w


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("shape,wshape,stride,pad", CASES)
def test_forward_and_gradients_equal_paddles_conv2d(onednn, shape, wshape, stride, pad):
    x, w = tensors(shape, wshape)
    bias = paddle.to_tensor(np.linspace(-1, 1, wshape[0]).astype("float32"))
    bias.stop_gradient = False
    ours = conv.conv2d(x, w, bias=bias, stride=stride, padding=pad)
    theirs = F.conv2d(x, w, bias=bias, stride=stride, padding=pad)
    assert ours.shape == theirs.shape
    assert rel(ours, theirs) < 1e-5
    upstream = paddle.to_tensor(np.random.default_rng(1).standard_normal(theirs.shape).astype("float32"))
    for a, b in zip(paddle.grad((ours * upstream).sum(), [x, w, bias]),
                    paddle.grad((theirs * upstream).sum(), [x, w, bias])):
        assert rel(a, b) < 1e-5


@pytest.mark.parametrize("frozen", ["input", "filter"])
def test_a_frozen_operand_gets_no_gradient_and_the_other_the_right_one(onednn, frozen):
    """The op computes only the gradients it was asked for when it ran forward (the G step freezes D)."""
    x, w = tensors((2, 4, 9, 9), (6, 4, 3, 3))
    still = x if frozen == "input" else w
    live = w if frozen == "input" else x
    still.stop_gradient = True
    upstream = paddle.to_tensor(np.random.default_rng(1).standard_normal((2, 6, 9, 9)).astype("float32"))
    (conv.conv2d(x, w, padding=1) * upstream).sum().backward()
    assert still.grad is None
    reference = live.detach()
    reference.stop_gradient = False
    args = (still, reference) if frozen == "input" else (reference, still)
    (expected,) = paddle.grad((F.conv2d(*args, padding=1) * upstream).sum(), [reference])
    assert rel(live.grad, expected) < 1e-5


@pytest.mark.parametrize("shape,wshape,stride,pad", CASES)
def test_second_order_through_the_input_gradient_equals_paddles(onednn, shape, wshape, stride, pad):
    """R1's form: differentiate |dL/dx|² (filters constant inside the gradient, where Paddle is exact)."""
    x, w = tensors(shape, wshape)
    w2 = paddle.to_tensor(np.random.default_rng(2).standard_normal((3, wshape[0], 1, 1)).astype("float32"))
    w2.stop_gradient = False

    def penalty_grads(convolve):
        y = convolve(convolve(x, w, stride, pad) * 0.5, w2, 1, 0)
        (gx,) = paddle.grad((y * y).sum(), x, create_graph=True)  # partial: the filters are not asked for
        return paddle.grad((gx * gx).sum() + 1e-3 * (y * y).sum(), [x, w, w2])

    ours = penalty_grads(lambda x, w, s, p: conv.conv2d(x, w, stride=s, padding=p))
    theirs = penalty_grads(lambda x, w, s, p: F.conv2d(x, w, stride=s, padding=p))
    for a, b in zip(ours, theirs):
        assert rel(a, b) < 1e-5


@pytest.mark.parametrize("shape,wshape,stride,pad", CASES)
def test_second_order_through_the_filter_gradient_matches_finite_differences(onednn, shape, wshape, stride, pad):
    """|dL/dx|² + |dL/dw|² with an output gradient that depends on x and w: includes the term Paddle's
    conv2d double grad drops (ddy = conv(x, ddw), README "Paddle facts")."""
    rng = np.random.default_rng(3)
    x0, w0 = rng.standard_normal(shape), 0.3 * rng.standard_normal(wshape)
    out_shape = F.conv2d(paddle.zeros(shape), paddle.zeros(wshape), stride=stride, padding=pad).shape
    c = paddle.to_tensor(rng.standard_normal(out_shape).astype("float32"))

    def objective(xv, wv, grads=False):
        x, w = paddle.to_tensor(xv.astype("float32")), paddle.to_tensor(wv.astype("float32"))
        x.stop_gradient = w.stop_gradient = False
        y = conv.conv2d(x, w, stride=stride, padding=pad)
        gx, gw = paddle.grad((y * y * c).sum(), [x, w], create_graph=True)
        value = (gx * gx).sum() + (gw * gw).sum()
        return paddle.grad(value, [x, w]) if grads else float(value)

    gx, gw = objective(x0, w0, grads=True)
    dx, dw = rng.standard_normal(shape), 0.3 * rng.standard_normal(wshape)
    analytic = float((gx.numpy() * dx).sum() + (gw.numpy() * dw).sum())

    def central(eps):
        return (objective(x0 + eps * dx, w0 + eps * dw) - objective(x0 - eps * dx, w0 - eps * dw)) / (2 * eps)
    eps = 3e-2
    numeric = (4 * central(eps) - central(2 * eps)) / 3  # Richardson: the eps² error cancels
    assert abs(analytic - numeric) <= 1e-3 * abs(numeric)  # float32 rounding of the objective: ~2e-4


def test_an_unknown_mode_is_one_line(monkeypatch):
    monkeypatch.setenv("GPEN_CONV", "fast")
    with pytest.raises(UserError, match="GPEN_CONV='fast' is not one of auto, onednn, paddle"):
        conv.conv2d(paddle.ones([1, 1, 3, 3]), paddle.ones([1, 1, 1, 1]))


def test_without_the_extension_it_falls_back_to_conv2d_and_says_why(monkeypatch, capsys):
    monkeypatch.setenv("GPEN_CONV", "auto")  # CI runs with GPEN_CONV=onednn
    monkeypatch.setattr(conv, "_state", {"loaded": None, "why_not": None})
    monkeypatch.setattr(conv, "_told", [False])

    def unavailable():
        raise conv._Unavailable("oneDNN's headers are not installed: pip install ...")
    monkeypatch.setattr(conv, "_load_extension", unavailable)
    monkeypatch.setattr(conv, "_run_onednn", lambda *args: pytest.fail("the oneDNN op ran"))
    x, w = tensors((1, 2, 5, 5), (3, 2, 3, 3))
    for _ in range(2):
        out = conv.conv2d(x, w, padding=1)
    np.testing.assert_array_equal(out.numpy(), F.conv2d(x, w, padding=1).numpy())
    assert capsys.readouterr().err.splitlines() == [
        "conv: using Paddle's slower CPU conv2d (oneDNN's headers are not installed: pip install ...)"]
    monkeypatch.setenv("GPEN_CONV", "onednn")
    with pytest.raises(UserError, match="GPEN_CONV=onednn but the oneDNN convolution cannot be used"):
        conv.conv2d(x, w)


def test_paddle_mode_and_static_graphs_use_conv2d(onednn, monkeypatch):
    ran = []
    real = conv._run_onednn
    monkeypatch.setattr(conv, "_run_onednn", lambda *args: ran.append(1) or real(*args))
    x, w = tensors((1, 2, 5, 5), (3, 2, 3, 3))
    conv.conv2d(x, w)
    assert ran == [1]
    monkeypatch.setenv("GPEN_CONV", "paddle")
    conv.conv2d(x, w)
    monkeypatch.setenv("GPEN_CONV", "auto")

    def convolve(t):
        return conv.conv2d(t, w, padding=1)
    assert paddle.jit.to_static(convolve, full_graph=True)(x).shape == [1, 3, 5, 5]
    assert ran == [1]
