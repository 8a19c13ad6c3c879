import pytest

from utils.config import Config, config_from_dict, config_to_dict, load_config, parse_override
from utils.errors import UserError


def test_defaults_are_the_authors_recipe():
    cfg = Config()
    assert (cfg.train.d_reg_every, cfg.train.g_reg_every, cfg.train.r1_gamma, cfg.train.pl_weight) == (16, 4, 10.0, 2.0)
    assert cfg.train.g_lr == cfg.train.d_lr == 0.002
    assert cfg.model.style_dim == 512 and cfg.model.n_mlp == 8


@pytest.mark.parametrize("name,size,mul,narrow", [("256", 256, 1, 0.5), ("512", 512, 2, 1.0), ("1024", 1024, 2, 1.0)])
def test_official_presets(name, size, mul, narrow):
    cfg = load_config(f"configs/gpen_{name}.yaml")
    assert (cfg.model.size, cfg.model.channel_multiplier, cfg.model.narrow) == (size, mul, narrow)


def test_precedence_yaml_then_flags_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {size: 512}\ntrain: {batch_size: 3}\n")
    cfg = load_config(str(path), ["train.batch_size=5", "train.g_lr=1e-3"], {"model.size": 128})
    assert cfg.model.size == 128 and cfg.train.batch_size == 5 and cfg.train.g_lr == 1e-3


def test_unknown_key_names_it_and_suggests(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train: {batchsize: 3}\n")
    with pytest.raises(UserError, match=r"unknown config key 'train.batchsize'.*batch_size"):
        load_config(str(path))
    with pytest.raises(UserError, match="unknown config key 'nope'"):
        load_config(None, ["nope=1"])


@pytest.mark.parametrize("override,key", [
    ("train.batch_size=two", "train.batch_size"),
    ("train.batch_size=2.5", "train.batch_size"),
    ("model.isconcat=3", "model.isconcat"),
    ("data.interpolation=cubic", "data.interpolation"),
    ("degradation.noise_range=5", "degradation.noise_range"),
    ("train.g_lr=fast", "train.g_lr"),
])
def test_wrong_types_are_refused_naming_the_key(override, key):
    with pytest.raises(UserError, match=f"config key {key}"):
        load_config(None, [override])


def test_override_syntax_and_missing_file():
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    with pytest.raises(UserError, match="section.key=value"):
        parse_override("train.batch_size")
    with pytest.raises(UserError, match="config file not found: nowhere.yaml"):
        load_config("nowhere.yaml")


def test_round_trip_through_dict():
    cfg = load_config(None, ["model.size=64", "degradation.jpeg_range=[70, 90]"])
    again = config_from_dict(config_to_dict(cfg))
    assert again == cfg
