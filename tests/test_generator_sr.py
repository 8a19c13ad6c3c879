"""The generator with an encoder below its output size (the authors' FullGenerator_SR): its forward and
intermediates against the authors' (../shared/fixtures/upstream_suite, section (e)) with the random noise
they drew, its keys and shapes against their 1024->2048 and plain 2048 listings, the sizes read off a
state dict, and our default seeded noise (deterministic, per face). That the fixed noise is exported with
the network (the oneDNN predictor equals dygraph) is checked in test_tasks.py, through the tasks' serving."""
import json

import numpy as np
import paddle
import pytest
from conftest import need_shared

from model.generator import FullGenerator, generator_sizes
from model.loading import GENERATOR_WEIGHTS, set_weights
from utils.weights import read_state_dict

# The fixture's FullGenerator_SR(64, 128, 64, 8, 1, narrow=0.03125).
SMALL = dict(size=128, in_size=64, style_dim=64, n_mlp=8, channel_multiplier=1, narrow=0.03125)


@pytest.fixture(scope="module")
def fixture():
    folder = need_shared("fixtures", "upstream_suite")
    state = read_state_dict(str(folder / "gpen_sr_small.pth"), GENERATOR_WEIGHTS).state
    return folder, state, np.load(folder / "gpen_sr_small.npz")


def small_generator(state, noise_seed=0):
    g = FullGenerator(**SMALL, noise_seed=noise_seed)
    set_weights(g, state, "gpen_sr_small.pth")
    g.eval()
    return g


def run_with_intermediates(g, x, noise):
    acts = {}

    def keep(name):
        def hook(layer, inputs, output):
            acts[name] = output.numpy()
        return hook

    handles = [getattr(g, name).register_forward_post_hook(keep(f"enc/{name}")) for name in g.encoder_names]
    handles.append(g.final_linear.register_forward_post_hook(keep("enc/final_linear")))
    handles.append(g.generator.style.register_forward_post_hook(keep("dec/style_w")))
    handles.append(g.generator.to_rgb1.register_forward_post_hook(keep("dec/to_rgb1")))
    for i, layer in enumerate(g.generator.to_rgbs):
        handles.append(layer.register_forward_post_hook(keep(f"dec/to_rgbs.{i}")))
    with paddle.no_grad():
        acts["out"] = g(paddle.to_tensor(x), noise=noise)[0].numpy()
    for handle in handles:
        handle.remove()
    return acts


def authors_noise(data):
    """The tensors the authors' NoiseInjection drew, in call order (the layers above in_size)."""
    return [paddle.to_tensor(data[f"noise/generator.convs.{i}.noise"]) for i in (8, 9)]


def test_forward_and_intermediates_match_the_authors_with_their_noise(fixture):
    _, state, data = fixture
    g = small_generator(state)
    assert g.noise_shapes == [(4, 128, 128), (4, 128, 128)]
    acts = run_with_intermediates(g, data["input"], authors_noise(data))
    compared = [k for k in data.files if k.startswith(("enc/", "dec/")) or k == "out"]
    assert len(compared) == 9
    for key in compared:
        ref = data[key]
        np.testing.assert_allclose(acts[key], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max(), err_msg=key)


def test_their_noise_reaches_the_output(fixture):
    """Guards the noise wiring: other noise (our fixed maps) gives another output."""
    _, state, data = fixture
    g = small_generator(state)
    with paddle.no_grad():
        ours = g(paddle.to_tensor(data["input"]))[0].numpy()
    assert np.abs(ours - data["out"]).max() > 0.1 * np.abs(data["out"]).max()


@pytest.mark.parametrize("listing, in_size", [("shapes_gpen_sr_1024_2048.json", 1024), ("shapes_gpen_2048.json", None)])
def test_keys_and_shapes_equal_the_authors_at_2048(listing, in_size):
    """Built without allocating the weights (LazyGuard) and without fixed noise (noise_seed None)."""
    doc = json.load(open(need_shared("fixtures", "upstream_suite", listing)))
    theirs = [(e["key"], tuple(e["shape"])) for e in doc["keys"]]
    with paddle.LazyGuard():
        g = FullGenerator(2048, 512, 8, channel_multiplier=2, narrow=1, in_size=in_size, noise_seed=None)
    ours = [(k, tuple(v.shape)) for k, v in g.state_dict().items()]
    assert ours == theirs
    shapes = dict(theirs)
    assert generator_sizes(shapes) == (in_size or 2048, 2048)


def test_sizes_are_read_off_a_state_dict(fixture):
    _, state, _ = fixture
    assert generator_sizes(state) == (64, 128)
    plain = FullGenerator(64, 16, 2, channel_multiplier=1, narrow=0.0625).state_dict()
    assert generator_sizes(plain) == (64, 64)


def test_default_noise_is_seeded_per_face_and_deterministic(fixture):
    _, state, data = fixture
    x = paddle.to_tensor(data["input"])
    with paddle.no_grad():
        first = small_generator(state)(x)[0].numpy()
        again = small_generator(state)(x)[0].numpy()
        alone = small_generator(state)(x[1:])[0].numpy()
        other_seed = small_generator(state, noise_seed=1)(x)[0].numpy()
    np.testing.assert_array_equal(first, again)  # same construction, same input: same output
    # Each face gets the same maps whatever batch it is in (float32 noise of the batched kernels only).
    np.testing.assert_allclose(alone[0], first[1], rtol=0, atol=1e-5 * np.abs(first).max())
    assert np.abs(other_seed - first).max() > 0.1 * np.abs(first).max()
    assert not [k for k in small_generator(state).state_dict() if "fixed_noise" in k]  # authors' keys only


def test_noise_is_checked_and_fresh_noise_differs(fixture):
    _, state, data = fixture
    x = paddle.to_tensor(data["input"])
    with pytest.raises(ValueError, match="expected 2 noise maps"):
        small_generator(state)(x, noise=authors_noise(data)[:1])
    with pytest.raises(ValueError, match="pass noise"):
        small_generator(state, noise_seed=None)(x)
    g = small_generator(state, noise_seed=None)
    rng = np.random.default_rng(3)
    with paddle.no_grad():
        a = g(x, noise=g.random_noise(2, rng))[0].numpy()
        b = g(x, noise=g.random_noise(2, rng))[0].numpy()
    assert np.abs(a - b).max() > 0.1 * np.abs(a).max()


def test_load_generator_builds_the_sr_variant_from_the_file(fixture):
    from model.loading import load_generator

    folder, _, data = fixture
    g, cfg = load_generator(str(folder / "gpen_sr_small.pth"))
    assert (g.in_size, g.size, cfg.channel_multiplier, cfg.narrow) == (64, 128, 1, 0.03125)
    with paddle.no_grad():
        out = g(paddle.to_tensor(data["input"]), noise=authors_noise(data))[0].numpy()
    np.testing.assert_allclose(out, data["out"], rtol=1e-4, atol=1e-4 * np.abs(data["out"]).max())
