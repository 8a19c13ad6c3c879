"""train.py / trainer.loop: never lose work, resume exactly, stop cleanly, and one process reproduces
a two-process run. A tiny network (32 px) on synthetic faces keeps each run to seconds."""
import os
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import EXAMPLES, ROOT, need_shared

from utils.weights import read_paddle_file
from trainer import loop
from trainer.recipe import TrainStep
from utils.config import load_config
from utils.errors import UserError

TINY = ["model.size=32", "model.style_dim=32", "model.n_mlp=2", "model.channel_multiplier=1",
        "model.narrow=0.03125", "train.batch_size=2", "train.w_id=0", "train.d_reg_every=2",
        "train.g_reg_every=2", "train.log_freq=1", "train.save_freq=2", "train.sample_freq=2",
        "train.val_freq=2", "train.val_count=2", "data.num_workers=0", "eval.batch_size=2"]


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """Eight smooth random 48x48 'faces' (training) and four more (validation)."""
    root = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("val", 4)):
        os.makedirs(root / split)
        for i in range(count):
            image = cv2.GaussianBlur(rng.uniform(0, 255, (48, 48, 3)).astype(np.float32), (0, 0), 3)
            cv2.imwrite(str(root / split / f"{i:03d}.png"), np.clip(image, 0, 255).astype(np.uint8))
    return root


def config(faces, out, *extra):
    return load_config(None, TINY + [f"data.train_path={faces / 'train'}", f"data.test_path={faces / 'val'}",
                                     f"train.output_dir={out}", *extra])


def states(out, name="latest.pdckpt"):
    return read_paddle_file(os.path.join(out, "checkpoints", name))


def assert_same_training_state(a, b):
    assert a["iteration"] == b["iteration"]
    for part in ("g", "d", "g_ema", "g_optim", "d_optim"):
        assert sorted(a[part]) == sorted(b[part]), part
        for key in a[part]:
            np.testing.assert_array_equal(np.asarray(a[part][key]), np.asarray(b[part][key]), err_msg=f"{part}/{key}")
    assert a["mean_path_length"] == b["mean_path_length"]


def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(faces, tmp_path):
    whole = str(tmp_path / "whole")
    assert loop.train(config(faces, whole, "train.max_iter=6")) == 0
    split = str(tmp_path / "split")
    assert loop.train(config(faces, split, "train.max_iter=3")) == 0
    assert states(split)["iteration"] == 2
    assert loop.train(config(faces, split, "train.max_iter=6", "train.resume=auto")) == 0
    assert_same_training_state(states(whole), states(split))
    for name in ("config.yaml", "train.log", "g_ema.pdparams", "g_ema_best.pdparams"):
        assert os.path.isfile(os.path.join(split, name)), name
    assert any(n.endswith(".png") for n in os.listdir(os.path.join(split, "samples")))


def test_stop_request_saves_a_checkpoint_and_the_run_continues_exactly(faces, tmp_path, monkeypatch):
    whole = str(tmp_path / "whole")
    loop.train(config(faces, whole, "train.max_iter=5", "train.save_freq=100"))
    original = TrainStep.__call__

    def interrupted_at_1(self, i, degraded, real, path_noise=None):
        out = original(self, i, degraded, real, path_noise)
        if i == 1:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while iteration 1 runs
        return out

    stopped = str(tmp_path / "stopped")
    monkeypatch.setattr(TrainStep, "__call__", interrupted_at_1)
    assert loop.train(config(faces, stopped, "train.max_iter=5", "train.save_freq=100")) == 0
    monkeypatch.setattr(TrainStep, "__call__", original)
    assert states(stopped)["iteration"] == 1
    assert loop.train(config(faces, stopped, "train.max_iter=5", "train.save_freq=100", "train.resume=auto")) == 0
    assert_same_training_state(states(whole), states(stopped))


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(faces, tmp_path, monkeypatch):
    out = str(tmp_path / "nan")
    original = TrainStep.__call__

    def diverges_at_3(self, i, degraded, real, path_noise=None):
        if i == 3:
            real = real * float("nan")
        return original(self, i, degraded, real, path_noise)

    monkeypatch.setattr(TrainStep, "__call__", diverges_at_3)
    assert loop.train(config(faces, out, "train.max_iter=6")) == 1
    good = states(out)
    assert good["iteration"] == 2
    assert all(np.isfinite(np.asarray(v)).all() for v in good["g"].values())
    assert "non-finite loss" in open(os.path.join(out, "train.log")).read()


def test_a_previous_run_is_not_overwritten_without_resume_or_overwrite(faces, tmp_path):
    out = str(tmp_path / "run")
    loop.train(config(faces, out, "train.max_iter=1"))
    with pytest.raises(UserError, match="holds a previous run"):
        loop.train(config(faces, out, "train.max_iter=2"))
    assert loop.train(config(faces, out, "train.max_iter=2", "train.overwrite=true")) == 0
    # The run folder's config.yaml does not carry the overwrite: reusing it to continue cannot wipe the run.
    saved = load_config(os.path.join(out, "config.yaml"))
    assert saved.train.overwrite is False and saved.train.resume == ""
    with pytest.raises(UserError, match="holds a previous run"):
        loop.train(saved)
    assert os.path.isfile(os.path.join(out, "checkpoints", "iter_000001.pdckpt"))


def test_pretrain_loads_the_authors_generator_and_start_iter_numbers_on(faces, tmp_path):
    g_pth = need_shared("fixtures", "upstream_gpen", "g_A.pth")
    out = str(tmp_path / "pre")
    cfg = load_config(None, TINY + ["model.size=64", "model.style_dim=128", "model.n_mlp=8", "model.narrow=0.0625",
                                    f"data.train_path={faces / 'train'}", f"data.test_path={faces / 'val'}",
                                    f"train.output_dir={out}", f"train.pretrain={g_pth}", "train.start_iter=1000",
                                    "train.max_iter=1001"])
    run = loop.TrainingRun(cfg)
    # Before any step, g and g_ema hold exactly the file's weights; D (no pretrain_d) does not.
    reference = np.load(need_shared("fixtures", "upstream_gpen", "g_A_state.npz"))
    for layer in (run.step.g, run.step.g_ema):
        for key, value in layer.state_dict().items():
            np.testing.assert_array_equal(value.numpy(), reference[key], err_msg=key)
    d_reference = np.load(need_shared("fixtures", "upstream_gpen", "d_A_state.npz"))
    assert not np.array_equal(run.step.d.state_dict()["convs.0.0.weight"].numpy(), d_reference["convs.0.0.weight"])
    assert run.run() == 0
    saved = states(out)
    assert saved["iteration"] == 1000
    log = open(os.path.join(out, "train.log")).read()
    assert "generator and g_ema from" in log and "starts from random weights" in log


def test_two_processes_equal_one_process_with_two_batch_groups(faces, tmp_path):
    """Two gloo processes with batch 2 each vs one process with batch 4 split into 2 statistic groups."""
    common = [f"data.train_path={faces / 'train'}", f"data.test_path={faces / 'val'}", "train.max_iter=3",
              "train.val_count=0", "train.sample_freq=0"]
    two = str(tmp_path / "two")
    args = [a for o in TINY + common + [f"train.output_dir={two}", "runtime.threads=1"] for a in ("-o", o)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
                             "--log_dir", str(tmp_path / "launch"), str(ROOT / "train.py"), *args],
                            cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600)
    logs = "".join(open(tmp_path / "launch" / n).read() for n in os.listdir(tmp_path / "launch")
                   if n.startswith("workerlog"))
    assert result.returncode == 0, result.stdout[-2000:] + logs[-4000:]
    one = str(tmp_path / "one")
    assert loop.train(config(faces, one, *common, "train.batch_size=4", "train.batch_groups=2")) == 0
    a, b = states(two), states(one)
    assert a["iteration"] == b["iteration"] == 2
    # Both runs start from the same seeded networks; compare what training changed (as for iter1_A).
    import paddle
    from model.loading import build_discriminator, build_generator
    cfg = config(faces, one)
    paddle.seed(cfg.train.seed)
    initial = {"g": build_generator(cfg.model).state_dict(), "d": build_discriminator(cfg.model).state_dict()}
    for part in ("g", "d"):
        keys = sorted(initial[part])
        start = np.concatenate([initial[part][k].numpy().ravel() for k in keys])
        update_two = np.concatenate([np.asarray(a[part][k]).ravel() for k in keys]) - start
        update_one = np.concatenate([np.asarray(b[part][k]).ravel() for k in keys]) - start
        assert np.linalg.norm(update_one) > 0
        assert np.linalg.norm(update_two - update_one) / np.linalg.norm(update_one) < 1e-2, part


def test_it_learns_on_real_faces(tmp_path):
    """configs/lite_64.yaml on the repo's ten FFHQ faces: validation PSNR on its eight CelebA-HQ faces rises."""
    ffhq, celeba = EXAMPLES / "train", EXAMPLES / "test"
    out = tmp_path / "lite"
    cfg = load_config(str(ROOT / "configs" / "lite_64.yaml"),
                      [f"data.train_path={ffhq}", f"data.test_path={celeba}", f"train.output_dir={out}",
                       "train.max_iter=241", "train.val_freq=40", "train.save_freq=1000", "train.sample_freq=1000"])
    assert loop.train(cfg) == 0
    curve = [tuple(map(float, line.split(","))) for line in open(out / "validation.csv")]
    print("validation PSNR curve:", curve)
    assert curve[0][0] == 0 and curve[-1][0] == 240
    assert curve[-1][1] > curve[0][1] + 2.0


def test_device_degradation_path_resumes_exactly(faces, tmp_path):
    """data.degrade_on=device (the GPU path) on the CPU: batches degraded as tensors, keyed by the step."""
    whole = str(tmp_path / "whole")
    assert loop.train(config(faces, whole, "train.max_iter=4", "data.degrade_on=device")) == 0
    split = str(tmp_path / "split")
    loop.train(config(faces, split, "train.max_iter=2", "data.degrade_on=device"))
    loop.train(config(faces, split, "train.max_iter=4", "data.degrade_on=device", "train.resume=auto"))
    assert_same_training_state(states(whole), states(split))
    assert "device degradation" in open(os.path.join(whole, "train.log")).read()


def test_identity_loss_takes_part_when_its_weights_are_given(faces, tmp_path):
    """The ID loss is in the G step: its gradient reaches the generator, and the same iteration with and
    without it ends with different generator weights (everything else equal)."""
    import paddle

    weights = need_shared("fixtures", "irse50", "model_ir_se50_random.pth")
    after = {}
    for w_id in (1.0, 0.0):
        run = loop.TrainingRun(config(faces, str(tmp_path / f"id{w_id}"), "train.max_iter=1", f"train.w_id={w_id}",
                                      f"train.id_weights={weights}"))
        degraded, real = run.stream.next(0)
        if w_id:
            fake, _ = run.step.g(degraded)
            run.step.id_loss(fake, real).loss.backward()
            grads = [p.grad for p in run.step.g.parameters() if p.grad is not None]
            assert grads and max(float(paddle.abs(g).max()) for g in grads) > 0
            run.step.g.clear_gradients()
        values = run.step(1, degraded, real)  # iteration 1: no R1 (every 2) and no path length before G
        assert ("g_id" in values) == bool(w_id)
        after[w_id] = {k: v.numpy() for k, v in run.step.g.state_dict().items()}
    assert any(not np.array_equal(after[1.0][k], after[0.0][k]) for k in after[1.0])


def test_pretrain_from_a_training_checkpoint_in_the_authors_format(faces, tmp_path):
    from torch_format import save_torch
    folder = need_shared("fixtures", "upstream_gpen")
    g, d = np.load(folder / "g_A_state.npz"), np.load(folder / "d_A_state.npz")
    checkpoint = {"g": {k: g[k] for k in g.files}, "d": {k: d[k] for k in d.files}, "g_ema": {k: g[k] for k in g.files},
                  "g_optim": {"state": {}, "param_groups": []}, "d_optim": {"state": {}, "param_groups": []}}
    path = str(tmp_path / "090000.pth")
    save_torch(checkpoint, path)
    out = str(tmp_path / "pre")
    cfg = load_config(None, TINY + ["model.size=64", "model.style_dim=128", "model.n_mlp=8", "model.narrow=0.0625",
                                    f"data.train_path={faces / 'train'}", f"data.test_path={faces / 'val'}",
                                    f"train.output_dir={out}", f"train.pretrain={path}", "train.max_iter=1"])
    assert loop.train(cfg) == 0
    assert "g, g_ema and d from" in open(os.path.join(out, "train.log")).read()


def test_resume_rebuilds_from_the_checkpoint_s_config_and_refuses_a_changed_architecture():
    from trainer.checkpoint import resumed_config
    from utils.config import CommandLine, config_to_dict

    stored = load_config(None, ["model.size=64", "model.narrow=0.0625", "train.max_iter=10"])
    content = {"config": config_to_dict(stored)}
    # Keys the command line does not name come from the checkpoint, not from the defaults.
    resumed = resumed_config(content, "run.pdckpt", CommandLine(overrides=["train.max_iter=20"]))
    assert (resumed.model.size, resumed.model.narrow, resumed.train.max_iter) == (64, 0.0625, 20)
    with pytest.raises(UserError, match=r"run\.pdckpt.*model\.size: 64 -> 128"):
        resumed_config(content, "run.pdckpt", CommandLine(overrides=["model.size=128"]))
    with pytest.raises(UserError, match=r"train\.g_lr: 0\.002 -> 0\.01"):
        resumed_config(content, "run.pdckpt", CommandLine(overrides=["train.g_lr=0.01"]))
    with pytest.raises(UserError, match="stores no config"):
        resumed_config({}, "old.pdckpt", CommandLine())


def test_resume_may_move_the_identity_weights_but_not_switch_the_identity_loss():
    from trainer.checkpoint import resumed_config
    from utils.config import CommandLine, config_to_dict

    content = {"config": config_to_dict(load_config(None, ["train.id_weights=/old/ir_se50.pth"]))}
    moved = resumed_config(content, "run.pdckpt", CommandLine(overrides=["train.id_weights=/new/ir_se50.pth"]))
    assert moved.train.id_weights == "/new/ir_se50.pth"
    with pytest.raises(UserError, match=r"train\.id_weights: '/old/ir_se50\.pth' -> ''"):
        resumed_config(content, "run.pdckpt", CommandLine(overrides=["train.id_weights=null"]))
