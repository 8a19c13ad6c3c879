"""GPU-ready by construction, checked on the CPU: a training iteration (TrainStep, driven as
trainer/loop.py drives it between logging steps) reads nothing back from the device and copies nothing
from the host. On a GPU each such read would stall the launch queue once per iteration."""
import paddle
import pytest

from model import Discriminator, FullGenerator
from trainer.recipe import TrainStep, accumulate
from utils.config import load_config

TINY = ["model.size=32", "model.style_dim=32", "model.n_mlp=2", "model.channel_multiplier=1",
        "model.narrow=0.03125", "train.batch_size=2", "train.w_id=0", "train.log_freq=1000"]
# Conversions that copy a tensor's value to the host (and wait for the device).
READS = ("numpy", "item", "tolist", "__float__", "__int__", "__bool__", "__index__")


@pytest.fixture
def step():
    cfg = load_config(None, TINY)
    paddle.seed(0)
    m = cfg.model
    g, g_ema = (FullGenerator(m.size, m.style_dim, m.n_mlp, channel_multiplier=m.channel_multiplier,
                              narrow=m.narrow) for _ in range(2))
    d = Discriminator(m.size, channel_multiplier=m.channel_multiplier, narrow=m.narrow)
    accumulate(g_ema, g, 0.0)
    return TrainStep(cfg, g, d, g_ema)


def count_reads(monkeypatch, counts):
    for name in READS:
        original = getattr(paddle.Tensor, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            counts[_name] = counts.get(_name, 0) + 1
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(paddle.Tensor, name, counted)
    to_tensor = paddle.to_tensor

    def counted_copy(*args, **kwargs):
        counts["to_tensor"] = counts.get("to_tensor", 0) + 1
        return to_tensor(*args, **kwargs)
    monkeypatch.setattr(paddle, "to_tensor", counted_copy)


def test_twenty_iterations_read_nothing_back_and_copy_nothing_from_the_host(step, monkeypatch):
    cfg = step.cfg
    degraded, real = paddle.randn([2, 3, 32, 32]), paddle.randn([2, 3, 32, 32])
    step(0, degraded, real)  # the first iteration builds the layers' cached constants
    counts = {}
    count_reads(monkeypatch, counts)
    g_lr, d_lr = step.base_lrs()
    for i in range(1, 21):  # includes iterations 4, 8, 12, 16 (path length) and 16 (R1)
        assert i % cfg.train.log_freq != 0  # a logging step may read its values
        step.g_optim.set_lr(g_lr)
        step.d_optim.set_lr(d_lr)
        values = step(i, degraded, real)
    monkeypatch.undo()
    assert {"r1", "path"} <= set(values)
    assert counts == {}, f"device -> host reads or host -> device copies per iteration: {counts}"


def test_the_counter_sees_a_read(monkeypatch):
    counts = {}
    count_reads(monkeypatch, counts)
    float(paddle.ones([1]).sum())
    monkeypatch.undo()
    assert counts.get("__float__") == 1
