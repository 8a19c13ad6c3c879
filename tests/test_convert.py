"""Checkpoint reading and conversion: the authors' files in both PyTorch containers, training checkpoints,
float16 storage, refusal of pickles that would run code, the converter CLI, and the official shapes."""
import json
import os

import numpy as np
import paddle
import pytest
from conftest import need_shared
from torch_format import StridedView, malicious_pickle, save_torch

from model import Discriminator, FullGenerator
from model.loading import (DISCRIMINATOR_WEIGHTS, GENERATOR_WEIGHTS, generator_architecture, load_discriminator,
                           load_generator)
from tools.convert_weights import identify_file
from utils.config import ModelConfig
from utils.errors import UserError
from utils.weights import read_paddle_file, read_state_dict, read_torch_file

FIXTURES = ("fixtures", "upstream_gpen")


def _fixture(name):
    return str(need_shared(*FIXTURES, name))


@pytest.mark.parametrize("name", ["g_A.pth", "g_A_legacy.pth"])
def test_authors_generator_reads_identically_from_both_containers(name):
    weights, kind, _ = identify_file(_fixture(name))
    state = weights.state
    reference = np.load(_fixture("g_A_state.npz"))
    assert kind is GENERATOR_WEIGHTS
    assert sorted(state) == sorted(reference.files)
    for key in reference.files:
        np.testing.assert_array_equal(state[key], reference[key], err_msg=key)


def test_authors_discriminator_reads_identically():
    weights, kind, _ = identify_file(_fixture("d_A.pth"))
    state = weights.state
    reference = np.load(_fixture("d_A_state.npz"))
    assert kind is DISCRIMINATOR_WEIGHTS and sorted(state) == sorted(reference.files)
    for key in reference.files:
        np.testing.assert_array_equal(state[key], reference[key], err_msg=key)


def test_architecture_is_read_off_the_shapes():
    state = read_state_dict(_fixture("g_A.pth"), GENERATOR_WEIGHTS).state
    assert generator_architecture(state) == ModelConfig(size=64, style_dim=128, n_mlp=8, channel_multiplier=1,
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
    weights = read_state_dict(path, GENERATOR_WEIGHTS)
    state = weights.state
    assert weights.key == "g_ema"
    for k in g.files:
        assert state[k].dtype == np.float32
        np.testing.assert_array_equal(state[k], g[k].astype(np.float16).astype(np.float32))
    assert read_state_dict(path, DISCRIMINATOR_WEIGHTS).key == "d"
    with pytest.raises(UserError, match="has no entry 'G'"):
        read_state_dict(path, GENERATOR_WEIGHTS, key="G")
    content = read_torch_file(path)
    assert content["g_optim"]["param_groups"][0]["betas"] == (0.0, 0.99)


@pytest.mark.parametrize("legacy", [False, True])
def test_strided_tensor_views_are_materialised(tmp_path, legacy):
    # A transposed slice of a larger storage, as torch saves a view: offset 3, element strides (1, 6).
    view = StridedView(np.arange(40, dtype=np.float32), offset=3, shape=(5, 4), strides=(1, 6))
    path = str(tmp_path / "t.pth")
    save_torch({"w": view}, path, legacy=legacy)
    read = read_torch_file(path)["w"]
    assert read.flags.c_contiguous
    np.testing.assert_array_equal(read, view.expected())
    np.testing.assert_array_equal(read[0], [3, 9, 15, 21])


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
        read_state_dict(path, GENERATOR_WEIGHTS)
    assert not marker.exists()


def test_corrupt_unrelated_and_mismatched_files_get_one_line(tmp_path):
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(open(_fixture("g_A_legacy.pth"), "rb").read()[:5000])
    with pytest.raises(UserError, match=r"truncated.pth: not a readable weight file \(EOFError"):
        read_state_dict(str(truncated), GENERATOR_WEIGHTS)
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(UserError, match="notes.pth: not a readable weight file"):
        read_state_dict(str(text), GENERATOR_WEIGHTS)
    other = str(tmp_path / "other.pth")
    save_torch({"layer.weight": np.zeros((2, 2), np.float32)}, other)
    with pytest.raises(UserError, match="other.pth: not weights of a network this project reads"):
        identify_file(other)
    with pytest.raises(UserError, match=r"d_A.pth: not GPEN generator weights \(no 'ecd0.0.0.weight'; its first key "
                                        r"is 'convs.0.0.weight'\); expected a GPEN generator"):
        load_generator(_fixture("d_A.pth"))
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
    found = generator_architecture(fake_state)
    assert (found.size, found.channel_multiplier, found.narrow) == (cfg["size"], cfg["channel_multiplier"], cfg["narrow"])


def test_converted_file_is_refused_by_a_mismatched_model(tmp_path):
    from tools.convert_weights import main
    dst = str(tmp_path / "G.pdparams")
    main([_fixture("g_A.pth"), dst])
    assert os.path.getsize(dst) > 0
    with pytest.raises(UserError, match="G.pdparams"):
        load_generator(dst, ModelConfig(size=128, style_dim=128, channel_multiplier=1, narrow=0.0625))


def test_a_training_checkpoint_of_ours_is_built_from_the_architecture_it_stores(tmp_path):
    """Shapes alone cannot tell style_dim's users apart from, e.g., lr_mlp or isconcat=False; a checkpoint
    of ours says what it is, and load_generator builds exactly that."""
    arch = ModelConfig(size=16, style_dim=8, n_mlp=2, channel_multiplier=1, narrow=1 / 64, lr_mlp=0.5)
    g = FullGenerator(16, 8, 2, channel_multiplier=1, narrow=1 / 64, lr_mlp=0.5)
    state = {k: v.numpy() for k, v in g.state_dict().items()}
    path = str(tmp_path / "iter_000001.pdckpt")
    paddle.save({"g": state, "g_ema": state, "d": {}, "iteration": 1,
                 "config": {"model": vars(arch)}, "architecture": vars(arch)}, path)
    loaded, cfg = load_generator(path)
    assert cfg == arch  # lr_mlp 0.5 is nowhere in the shapes
    assert cfg != generator_architecture(state)
    x = paddle.randn([1, 3, 16, 16])
    np.testing.assert_array_equal(loaded(x)[0].numpy(), g.eval()(x)[0].numpy())


def test_width_that_fits_no_channel_table_is_refused(tmp_path):
    state = read_state_dict(_fixture("g_A.pth"), GENERATOR_WEIGHTS).state
    state = dict(state, **{"ecd1.0.1.weight": np.zeros((7, 4, 3, 3), np.float32)})
    with pytest.raises(UserError, match=r"do not follow GPEN's channel table \(at 32x32: 7 channels"):
        generator_architecture(state, "odd.pth")
