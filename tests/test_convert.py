"""Checkpoint reading and conversion: the authors' files in both PyTorch containers, training checkpoints,
float16 storage, refusal of pickles that would run code, the converter CLI, and the official shapes."""
import json
import os

import numpy as np
import paddle
import pytest
from conftest import need_shared
from torch_format import malicious_pickle, save_torch

from model import Discriminator, FullGenerator
from model.convert import (infer_generator_config, load_state_dict, read_paddle_file, read_torch_file)
from model.loading import load_discriminator, load_generator
from utils.errors import UserError

FIXTURES = ("fixtures", "upstream_gpen")


def _fixture(name):
    return str(need_shared(*FIXTURES, name))


@pytest.mark.parametrize("name", ["g_A.pth", "g_A_legacy.pth"])
def test_authors_generator_reads_identically_from_both_containers(name):
    state, kind, _ = load_state_dict(_fixture(name))
    reference = np.load(_fixture("g_A_state.npz"))
    assert kind == "generator"
    assert sorted(state) == sorted(reference.files)
    for key in reference.files:
        np.testing.assert_array_equal(state[key], reference[key], err_msg=key)


def test_authors_discriminator_reads_identically():
    state, kind, _ = load_state_dict(_fixture("d_A.pth"))
    reference = np.load(_fixture("d_A_state.npz"))
    assert kind == "discriminator" and sorted(state) == sorted(reference.files)
    for key in reference.files:
        np.testing.assert_array_equal(state[key], reference[key], err_msg=key)


def test_architecture_is_read_off_the_shapes():
    state, _, _ = load_state_dict(_fixture("g_A.pth"))
    assert infer_generator_config(state) == dict(size=64, style_dim=128, n_mlp=8, channel_multiplier=1,
                                                 narrow=0.0625, isconcat=True)
    generator, cfg = load_generator(_fixture("g_A.pth"))
    discriminator, dcfg = load_discriminator(_fixture("d_A.pth"))
    assert (cfg.size, cfg.narrow, dcfg.size, dcfg.narrow) == (64, 0.0625, 64, 0.0625)


@pytest.mark.parametrize("legacy", [False, True])
def test_training_checkpoint_float16_and_key_selection(tmp_path, legacy):
    g = np.load(_fixture("g_A_state.npz"))
    d = np.load(_fixture("d_A_state.npz"))
    g_half = {k: g[k].astype(np.float16) for k in g.files}
    checkpoint = {"g": g_half, "d": {k: d[k] for k in d.files}, "g_ema": g_half,
                  "g_optim": {"state": {}, "param_groups": [{"lr": 0.0016, "betas": (0.0, 0.99), "params": [0, 1]}]},
                  "d_optim": {"state": {}, "param_groups": []}}
    path = str(tmp_path / "000100.pth")
    save_torch(checkpoint, path, legacy=legacy)
    state, kind, key = load_state_dict(path)
    assert (kind, key) == ("generator", "g_ema")
    for k in g.files:
        assert state[k].dtype == np.float32
        np.testing.assert_array_equal(state[k], g[k].astype(np.float16).astype(np.float32))
    state, kind, key = load_state_dict(path, key="d")
    assert (kind, key) == ("discriminator", "d")
    with pytest.raises(UserError, match="has no entry 'G'"):
        load_state_dict(path, key="G")
    content = read_torch_file(path)
    assert content["g_optim"]["param_groups"][0]["betas"] == (0.0, 0.99)


def test_strided_tensor_views_are_materialised(tmp_path):
    array = np.arange(24, dtype=np.float32).reshape(4, 6)
    path = str(tmp_path / "t.pth")
    save_torch({"w": array.T}, path)  # the writer stores a contiguous copy of the transposed view
    np.testing.assert_array_equal(read_torch_file(path)["w"], array.T)


@pytest.mark.parametrize("container", ["zip", "legacy", "paddle"])
def test_pickle_that_would_run_a_command_is_refused(tmp_path, container):
    marker = tmp_path / "pwned"
    payload = malicious_pickle(f"touch {marker}")
    path = str(tmp_path / "evil.pth")
    if container == "paddle":
        with open(path, "wb") as f:
            f.write(payload)
    else:
        save_torch({"x": np.zeros(1, np.float32)}, path, legacy=container == "legacy", raw_pickle=payload)
    with pytest.raises(UserError, match=r"refused to load: its pickle asks for 'os.system'"):
        load_state_dict(path)
    assert not marker.exists()


def test_corrupt_unrelated_and_mismatched_files_get_one_line(tmp_path):
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(open(_fixture("g_A_legacy.pth"), "rb").read()[:5000])
    with pytest.raises(UserError, match="truncated.pth"):
        load_state_dict(str(truncated))
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(UserError, match="notes.pth: not a readable checkpoint"):
        load_state_dict(str(text))
    other = str(tmp_path / "other.pth")
    save_torch({"layer.weight": np.zeros((2, 2), np.float32)}, other)
    with pytest.raises(UserError, match="not weights of a known network"):
        load_state_dict(other)
    with pytest.raises(UserError, match="holds discriminator weights, but generator weights are needed"):
        load_generator(_fixture("d_A.pth"))
    from utils.config import ModelConfig
    with pytest.raises(UserError, match=r"g_A.pth: GPEN weight '.*' has shape \[.*\], expected \[.*\]; check --size"):
        load_generator(_fixture("g_A.pth"), ModelConfig(size=64, style_dim=128, channel_multiplier=1, narrow=0.125))
    with pytest.raises(UserError, match="weights file not found"):
        load_generator(str(tmp_path / "missing.pth"))


def test_converter_cli_writes_a_file_paddle_load_accepts(tmp_path, capsys):
    from tools.convert_weights import main
    dst = str(tmp_path / "G.pdparams")
    assert main([_fixture("g_A_legacy.pth"), dst]) == 0
    printed = capsys.readouterr().out
    assert "generator" in printed and "size=64" in printed and "narrow=0.0625" in printed
    generator = FullGenerator(64, 128, 8, channel_multiplier=1, narrow=0.0625)
    missing, unexpected = generator.set_state_dict(paddle.load(dst))
    assert missing == [] and unexpected == []
    reference = np.load(_fixture("g_A_state.npz"))
    for key, value in generator.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), reference[key])
    # Our own files come back through the same safe reader.
    assert sorted(read_paddle_file(dst)) == sorted(reference.files)
    dst_d = str(tmp_path / "D.pdparams")
    assert main([_fixture("d_A.pth"), dst_d]) == 0
    missing, unexpected = Discriminator(64, channel_multiplier=1, narrow=0.0625).set_state_dict(paddle.load(dst_d))
    assert missing == [] and unexpected == []


@pytest.mark.parametrize("size", [256, 512, 1024])
def test_official_configurations_have_the_authors_keys_and_shapes(size):
    spec = json.load(open(_fixture(f"shapes_{size}.json")))
    cfg = spec["config"]
    generator = FullGenerator(cfg["size"], cfg["style_dim"], cfg["n_mlp"],
                              channel_multiplier=cfg["channel_multiplier"], narrow=cfg["narrow"])
    discriminator = Discriminator(cfg["size"], channel_multiplier=cfg["channel_multiplier"], narrow=cfg["narrow"])
    for model, entries in ((generator, spec["generator"]), (discriminator, spec["discriminator"])):
        ours = {k: list(v.shape) for k, v in model.state_dict().items()}
        theirs = {e["key"]: e["shape"] for e in entries}
        assert ours == theirs
    n_params = sum(int(np.prod(p.shape)) for p in generator.parameters())
    assert n_params == spec["generator_counts"]["parameters"]
    # The shapes alone tell the architecture back.
    fake_state = {e["key"]: np.zeros(e["shape"], np.float32) for e in spec["generator"]}
    found = infer_generator_config(fake_state)
    assert (found["size"], found["channel_multiplier"], found["narrow"]) == (
        cfg["size"], cfg["channel_multiplier"], cfg["narrow"])


def test_converted_file_is_refused_by_a_mismatched_model(tmp_path):
    from tools.convert_weights import main
    dst = str(tmp_path / "G.pdparams")
    main([_fixture("g_A.pth"), dst])
    assert os.path.getsize(dst) > 0
    from utils.config import ModelConfig
    with pytest.raises(UserError, match="G.pdparams"):
        load_generator(dst, ModelConfig(size=128, style_dim=128, channel_multiplier=1, narrow=0.0625))
