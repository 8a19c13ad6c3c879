"""deploy.checked: the one policy for a fast network checked against its reference."""
import numpy as np
import pytest

from deploy.checked import TOLERANCE, CheckedNetwork, checked_layer
from utils.errors import UserError


class Counting:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, x):
        self.calls += 1
        return self.fn(x)


def test_agreeing_fast_path_is_compared_once_then_trusted():
    reference = Counting(lambda x: x * 2.0)
    fast = Counting(lambda x: x * 2.0 + 1e-6)
    network = CheckedNetwork(fast, reference, "net")
    x = np.ones((2, 3), np.float32)
    for _ in range(3):
        np.testing.assert_allclose(network(x), 2.0, atol=1e-5)
    assert (fast.calls, reference.calls, network.backend) == (3, 1, "predictor")


def test_disagreement_falls_back_with_one_warning_or_raises_when_strict():
    x = np.full((1, 4), 3.0, np.float32)
    off = lambda v: v * (1 + 2 * TOLERANCE)  # noqa: E731
    with pytest.warns(RuntimeWarning, match="net's predictor disagrees with dygraph"):
        network = CheckedNetwork(off, lambda v: v, "net")
        np.testing.assert_array_equal(network(x), x)  # the reference's answer, not the fast one
    assert network.backend == "dygraph"
    np.testing.assert_array_equal(network(x), x)
    with pytest.raises(UserError, match="disagrees"):
        CheckedNetwork(off, lambda v: v, "net", strict=True)(x)
    # The tolerance is relative to the largest reference value: a gap just inside it passes.
    inside = CheckedNetwork(lambda v: v * (1 + 0.5 * TOLERANCE), lambda v: v, "net")
    np.testing.assert_allclose(inside(x), x * (1 + 0.5 * TOLERANCE))


def test_non_finite_output_is_caught_on_any_batch_not_only_the_first():
    calls = []

    def fast(x):
        calls.append(1)
        return x * np.nan if len(calls) == 3 else x

    network = CheckedNetwork(fast, lambda x: x, "net")
    x = np.ones((1, 2), np.float32)
    network(x), network(x)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        out = network(x)
    assert np.isfinite(out).all() and network.backend == "dygraph"


def test_a_non_finite_reference_is_an_error_never_a_result():
    with pytest.raises(UserError, match="returned a non-finite output"):
        CheckedNetwork(None, lambda x: x * np.inf, "net")(np.ones(2, np.float32))
    with pytest.raises(UserError, match="non-finite"):  # no reference to fall back to
        CheckedNetwork(lambda x: x * np.nan, None, "net")(np.ones(2, np.float32))


def test_a_predictor_that_cannot_be_built_falls_back_to_dygraph(monkeypatch):
    import paddle

    from deploy.predictor import Predictor

    def broken(*args, **kwargs):
        raise RuntimeError("a fuse pass failed")

    monkeypatch.setattr(Predictor, "from_layer", broken)
    layer = paddle.nn.Linear(3, 2)
    with pytest.warns(RuntimeWarning, match="could not be built"):
        network = checked_layer(layer, [3], "linear", backend="auto")
    x = np.ones((2, 3), np.float32)
    with paddle.no_grad():
        np.testing.assert_array_equal(network(x), layer(paddle.to_tensor(x)).numpy())
    with pytest.raises(RuntimeError, match="fuse pass"):
        checked_layer(layer, [3], "linear", backend="predictor")
