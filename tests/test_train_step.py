"""One full iteration of the authors' `train()` (iter1_A.npz: D step, R1, G step, path length, EMA at
i = 0) reproduced by `TrainStep`, and the recipe's numbers derived from the config."""
import numpy as np
import paddle
import pytest
from conftest import need_shared

from model import Discriminator, FullGenerator
from model.loading import DISCRIMINATOR_WEIGHTS, GENERATOR_WEIGHTS
from utils.weights import read_state_dict
from model.loading import set_weights
from trainer.recipe import LazyRegularizer, TrainStep, adam_settings, ema_decay, path_length_noise, to_floats
from utils.config import Config, load_config

TINY = ["model.size=64", "model.style_dim=128", "model.channel_multiplier=1", "model.narrow=0.0625", "train.w_id=0"]


def test_lazy_regularization_is_derived_from_the_interval():
    t = Config().train
    g_lr, g_b1, g_b2 = adam_settings(t.g_lr, t.beta1, t.beta2, LazyRegularizer(t.g_reg_every, t.pl_weight))
    d_lr, d_b1, d_b2 = adam_settings(t.d_lr, t.beta1, t.beta2, LazyRegularizer(t.d_reg_every, t.r1_gamma / 2))
    assert g_lr == pytest.approx(0.0016) and g_b2 == pytest.approx(0.99 ** 0.8) and g_b1 == 0.0
    assert d_lr == pytest.approx(0.002 * 16 / 17) and d_b2 == pytest.approx(0.99 ** (16 / 17))
    assert LazyRegularizer(16, 5.0).gain == 80.0 and LazyRegularizer(4, 2.0).gain == 8.0
    r1 = LazyRegularizer(24, 5.0)  # PaddleGAN ran R1 every 24 but weighted it for 16; here both follow
    assert [i for i in range(50) if r1.due(i)] == [0, 24, 48] and r1.gain == 120.0
    assert ema_decay(t, 4) == pytest.approx(0.5 ** (32 / 10000))  # the authors' constant, whatever the batch
    t.ema_authors_step_images = 0
    assert ema_decay(t, 4) == pytest.approx(0.5 ** (4 / 10000))


def test_path_length_noise_depends_on_seed_and_iteration_only():
    whole = path_length_noise(7, 12, [4, 3, 8, 8]).numpy()
    parts = [path_length_noise(7, 12, [2, 3, 8, 8], rank=r, world_size=2).numpy() for r in range(2)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert not np.array_equal(whole, path_length_noise(7, 13, [4, 3, 8, 8]).numpy())


def test_path_length_noise_leaves_the_run_s_random_numbers_alone():
    paddle.seed(5)
    expected = paddle.randn([4]).numpy()
    paddle.seed(5)
    path_length_noise(7, 12, [2, 3, 8, 8])
    np.testing.assert_array_equal(paddle.randn([4]).numpy(), expected)


def test_one_iteration_equals_the_authors(tmp_path):
    folder = need_shared("fixtures", "upstream_gpen")
    io, grads, it = (np.load(folder / name) for name in ("io_A.npz", "grads_A.npz", "iter1_A.npz"))
    g_init = read_state_dict(str(folder / "g_A.pth"), GENERATOR_WEIGHTS).state
    d_init = read_state_dict(str(folder / "d_A.pth"), DISCRIMINATOR_WEIGHTS).state
    cfg = load_config(None, TINY)
    g, g_ema = (FullGenerator(64, 128, 8, channel_multiplier=1, narrow=0.0625) for _ in range(2))
    d = Discriminator(64, channel_multiplier=1, narrow=0.0625)
    for layer, state in ((g, g_init), (g_ema, g_init), (d, d_init)):
        set_weights(layer, state, "fixture")
    step = TrainStep(cfg, g, d, g_ema)
    assert step.g_optim.get_lr() == pytest.approx(float(it["hparams/g_lr"]))
    assert step.d_optim.get_lr() == pytest.approx(float(it["hparams/d_lr"]))
    assert step.ema_decay == pytest.approx(float(it["hparams/ema_decay"]), rel=1e-12)

    log = to_floats(step(0, paddle.to_tensor(io["lq"]), paddle.to_tensor(io["hq"]),
                         path_noise=paddle.to_tensor(grads["path/noise_randn"])))
    names = {"d": "d_loss", "real_score": "real_score", "fake_score": "fake_score", "r1": "r1", "g": "g_loss",
             "path": "path_loss", "mean_path_length": "path_mean"}
    for ours, theirs in names.items():
        assert log[ours] == pytest.approx(float(it[f"loss/{theirs}"]), rel=1e-5), ours

    for prefix, layer, init in (("g", g, g_init), ("d", d, d_init)):
        state = {k: v.numpy() for k, v in layer.state_dict().items()}
        ours = np.concatenate([(state[k] - init[k]).ravel() for k in state])
        theirs = np.concatenate([(it[f"{prefix}/{k}"] - init[k]).ravel() for k in state])
        assert np.linalg.norm(ours - theirs) / np.linalg.norm(theirs) < 1e-2, prefix
        off = np.abs(np.concatenate([(state[k] - it[f"{prefix}/{k}"]).ravel() for k in state])) > 1e-4
        assert off.mean() < 1e-3, prefix
    for k, v in g_ema.state_dict().items():
        np.testing.assert_allclose(v.numpy(), it[f"g_ema/{k}"], rtol=0, atol=1e-4, err_msg=k)
