"""Numerical parity with the authors' PyTorch GPEN (config A of ../shared/fixtures/upstream_gpen):
every forward intermediate, the perturbed-weight variants, and the losses and gradients of grads_A.npz
(D logistic loss, R1 through double backward, G adversarial + SmoothL1, path-length penalty).
Each test runs with the convolution the CPU uses (model/conv.py's oneDNN op) and with Paddle's conv2d
(GPUs, static graphs, GPEN_CONV=paddle)."""
import numpy as np
import paddle
import pytest
from conftest import need_shared

from loss.adversarial import d_logistic_loss, g_nonsaturating_loss, path_length_penalty, r1_penalty
from loss.content import smooth_l1_loss
from model import Discriminator, FullGenerator
from model.loading import DISCRIMINATOR_WEIGHTS, GENERATOR_WEIGHTS
from utils.weights import read_state_dict
from model.loading import set_weights

FORWARD_TOL = 1e-5   # max |ours − theirs| / max |theirs| (the target)
GRAD_TOL = 1e-3      # relative L2 over all parameter gradients of one loss


def rel_to_max(ours, theirs):
    return float(np.abs(np.asarray(ours) - theirs).max() / np.abs(theirs).max())


@pytest.fixture(autouse=True, params=["as-configured", "paddle"], ids=lambda mode: f"conv-{mode}")
def conv_mode(request, monkeypatch):
    if request.param == "paddle":
        monkeypatch.setenv("GPEN_CONV", "paddle")
    return request.param


@pytest.fixture(scope="module")
def fx():
    folder = need_shared("fixtures", "upstream_gpen")
    io, grads = np.load(folder / "io_A.npz"), np.load(folder / "grads_A.npz")
    g_state = read_state_dict(str(folder / "g_A.pth"), GENERATOR_WEIGHTS).state
    d_state = read_state_dict(str(folder / "d_A.pth"), DISCRIMINATOR_WEIGHTS).state
    return dict(io=io, grads=grads, g_state=g_state, d_state=d_state)


def make_models(fx, perturbed=False):
    g = FullGenerator(64, 128, 8, channel_multiplier=1, narrow=0.0625)
    d = Discriminator(64, channel_multiplier=1, narrow=0.0625)
    g_state, d_state = dict(fx["g_state"]), dict(fx["d_state"])
    if perturbed:
        io = fx["io"]
        for key in io.files:
            if key.startswith("pert/g_param/"):
                g_state[key[len("pert/g_param/"):]] = io[key]
            elif key.startswith("pert/d_param/"):
                d_state[key[len("pert/d_param/"):]] = io[key]
    set_weights(g, g_state, "g_A.pth")
    set_weights(d, d_state, "d_A.pth")
    return g, d


def run_with_intermediates(g, lq):
    acts = {}

    def keep(name):
        def hook(layer, inputs, output):
            acts[name] = output.numpy()
        return hook

    for name in g.encoder_names:
        getattr(g, name).register_forward_post_hook(keep(f"enc/{name}"))
    g.final_linear.register_forward_post_hook(keep("enc/final_linear"))
    g.generator.style.register_forward_post_hook(keep("dec/style_w"))
    g.generator.conv1.register_forward_post_hook(keep("dec/conv1"))
    g.generator.to_rgb1.register_forward_post_hook(keep("dec/to_rgb1"))
    for i, layer in enumerate(g.generator.convs):
        layer.register_forward_post_hook(keep(f"dec/convs.{i}"))
    for i, layer in enumerate(g.generator.to_rgbs):
        layer.register_forward_post_hook(keep(f"dec/to_rgbs.{i}"))
    with paddle.no_grad():
        image, latents = g(paddle.to_tensor(lq), return_latents=True)
    acts["g_out"], acts["g_latents"] = image.numpy(), latents.numpy()
    return acts


@pytest.mark.parametrize("perturbed", [False, True])
def test_forward_matches_every_stored_activation(fx, perturbed):
    io = fx["io"]
    prefix = "pert/" if perturbed else ""
    g, d = make_models(fx, perturbed)
    acts = run_with_intermediates(g, io["lq"])
    checked = 0
    for key, ours in acts.items():
        if prefix + key in io.files:
            assert rel_to_max(ours, io[prefix + key]) < FORWARD_TOL, prefix + key
            checked += 1
    assert checked >= (20 if not perturbed else 8)
    with paddle.no_grad():
        for which, image in (("hq", io["hq"]), ("fake", io[prefix + "g_out"])):
            logits, features = d(paddle.to_tensor(image), return_features=True)
            assert rel_to_max(logits.numpy(), io[f"{prefix}d_{which}"]) < FORWARD_TOL
            names = sorted(k for k in io.files if k.startswith(f"d_feat/{which}/"))
            assert len(names) == len(features) == 7
            for name, feature in zip(names, features):
                if prefix + name in io.files:
                    assert rel_to_max(feature.numpy(), io[prefix + name]) < FORWARD_TOL, prefix + name


def test_return_latents_false_gives_the_same_image_and_none(fx):
    g, _ = make_models(fx)
    with paddle.no_grad():
        image, latents = g(paddle.to_tensor(fx["io"]["lq"]))
    assert latents is None
    assert rel_to_max(image.numpy(), fx["io"]["g_out"]) < FORWARD_TOL


def grads_of(params):
    return {name: (p.grad.numpy() if p.grad is not None else np.zeros(p.shape, np.float32)) for name, p in params}


def assert_grads_match(ours, grads, loss):
    keys = [k for k in grads.files if k.startswith(f"grad/{loss}/")]
    assert len(keys) == len(ours)
    theirs = np.concatenate([grads[k].ravel() for k in keys])
    mine = np.concatenate([ours[k[len(f"grad/{loss}/"):]].ravel() for k in keys])
    err = np.linalg.norm(mine - theirs) / np.linalg.norm(theirs)
    assert err < GRAD_TOL, f"{loss}: relative L2 {err:.2e}"


def test_discriminator_loss_and_gradients(fx):
    io, grads = fx["io"], fx["grads"]
    g, d = make_models(fx)
    with paddle.no_grad():
        fake, _ = g(paddle.to_tensor(io["lq"]))
    fake_pred, real_pred = d(fake), d(paddle.to_tensor(io["hq"]))
    loss = d_logistic_loss(real_pred, fake_pred)
    loss.backward()
    np.testing.assert_allclose(float(loss), grads["value/d_loss"], rtol=1e-5)
    np.testing.assert_allclose(fake_pred.numpy(), grads["value/fake_pred"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(real_pred.numpy(), grads["value/real_pred"], rtol=1e-4, atol=1e-5)
    assert_grads_match(grads_of(d.named_parameters()), grads, "d_loss")


def test_r1_penalty_through_double_backward(fx):
    io, grads = fx["io"], fx["grads"]
    _, d = make_models(fx)
    real = paddle.to_tensor(io["hq"])
    real.stop_gradient = False
    (input_grad,) = paddle.grad(d(real).sum(), real)
    ref = grads["grad/D_hq_sum/hq"]
    assert np.linalg.norm(input_grad.numpy() - ref) / np.linalg.norm(ref) < GRAD_TOL
    r1 = r1_penalty(d(real), real)
    r1.backward()
    np.testing.assert_allclose(float(r1), grads["value/r1"], rtol=1e-4)
    assert_grads_match(grads_of(d.named_parameters()), grads, "r1")


def test_generator_adversarial_and_content_loss_gradients(fx):
    io, grads = fx["io"], fx["grads"]
    g, d = make_models(fx)
    for p in d.parameters():
        p.stop_gradient = True
    fake, _ = g(paddle.to_tensor(io["lq"]))
    fake_pred = d(fake)
    adv = g_nonsaturating_loss(fake_pred)
    content = smooth_l1_loss(fake, paddle.to_tensor(io["hq"]))
    (adv_grad,) = paddle.grad(adv, fake, retain_graph=True)
    (content_grad,) = paddle.grad(content, fake, retain_graph=True)
    (adv + content).backward()
    np.testing.assert_allclose(float(adv), grads["value/g_adv"], rtol=1e-5)
    np.testing.assert_allclose(float(content), grads["value/l1"], rtol=1e-5)
    for ours, key in ((adv_grad, "grad/g_adv/fake_img"), (content_grad, "grad/l1/fake_img")):
        ref = grads[key]
        assert np.linalg.norm(ours.numpy() - ref) / np.linalg.norm(ref) < GRAD_TOL, key
    assert_grads_match(grads_of(g.named_parameters()), grads, "g_adv_l1")


def test_path_length_penalty_with_the_stored_noise(fx):
    io, grads = fx["io"], fx["grads"]
    g, _ = make_models(fx)
    fake, latents = g(paddle.to_tensor(io["lq"]), return_latents=True)
    assert rel_to_max(fake.numpy(), grads["path/fake_img"]) < FORWARD_TOL
    penalty, path_mean, lengths = path_length_penalty(fake, latents, 0.0, paddle.to_tensor(grads["path/noise_randn"]))
    penalty.backward()
    np.testing.assert_allclose(lengths.numpy(), grads["path/lengths"], rtol=1e-4)
    np.testing.assert_allclose(float(path_mean), grads["value/path_mean"], rtol=1e-4)
    np.testing.assert_allclose(float(penalty), grads["value/path_penalty"], rtol=1e-4)
    assert_grads_match(grads_of(g.named_parameters()), grads, "path_penalty")


def test_pruning_the_encoder_branch_leaves_the_path_length_gradients_unchanged(fx):
    io, grads = fx["io"], fx["grads"]
    results = []
    for prune in (False, True):
        g, _ = make_models(fx, perturbed=True)  # noise weights non-zero: the encoder features matter
        z, features = g.encode(paddle.to_tensor(io["lq"]))
        fake, latents = g.decode(z, features, return_latents=True)
        penalty, _, _ = path_length_penalty(fake, latents, 0.0, paddle.to_tensor(grads["path/noise_randn"]),
                                            no_grad_vars=features if prune else None)
        penalty.backward()
        results.append(grads_of(g.named_parameters()))
    for name in results[0]:
        np.testing.assert_array_equal(results[0][name], results[1][name], err_msg=name)
