"""Building GPEN's networks and putting weights into them, from any file a user may hold.

`load_generator(path)` accepts the authors' `GPEN-BFR-*.pth`, their training checkpoints
({g, d, g_ema, ...}), our `.pdparams` files and our training checkpoints; the architecture comes from
the file itself (our checkpoints store it; otherwise it is read off the weight shapes) unless the
caller insists on one, in which case a mismatch is reported with the first differing key and shapes.
"""
import paddle

from model.convert import (check_state_dict, infer_discriminator_config, infer_generator_config,
                           load_state_dict)
from model.discriminator import Discriminator
from model.generator import FullGenerator
from utils.config import ModelConfig


def build_generator(model_cfg):
    return FullGenerator(model_cfg.size, model_cfg.style_dim, model_cfg.n_mlp,
                         channel_multiplier=model_cfg.channel_multiplier, narrow=model_cfg.narrow,
                         isconcat=model_cfg.isconcat, lr_mlp=model_cfg.lr_mlp)


def build_discriminator(model_cfg):
    return Discriminator(model_cfg.size, channel_multiplier=model_cfg.channel_multiplier, narrow=model_cfg.narrow)


def set_weights(layer, state, path):
    """Load `state` (name -> array) into a GPEN network, requiring the same keys and shapes."""
    own = layer.state_dict()
    check_state_dict(state, own, path, "GPEN", "check --size/--mul/--narrow (or -c) against the file")
    layer.set_state_dict({k: paddle.to_tensor(state[k]) for k in own})


def _architecture(state, kind, model_cfg):
    if model_cfg is not None:
        return model_cfg
    found = infer_generator_config(state) if kind == "generator" else infer_discriminator_config(state)
    return ModelConfig(**found)


def load_generator(path, model_cfg=None, key=None):
    """FullGenerator with the weights of `path` (any supported file), in eval mode.

    model_cfg: a ModelConfig to build; None reads the architecture off the weights. key: the entry of a
    training checkpoint to use (default: g_ema when present).
    """
    state, _, _ = load_state_dict(path, kind="generator", key=key)
    cfg = _architecture(state, "generator", model_cfg)
    generator = build_generator(cfg)
    set_weights(generator, state, path)
    generator.eval()
    return generator, cfg


def load_discriminator(path, model_cfg=None, key=None):
    state, _, _ = load_state_dict(path, kind="discriminator", key=key)
    cfg = _architecture(state, "discriminator", model_cfg)
    discriminator = build_discriminator(cfg)
    set_weights(discriminator, state, path)
    return discriminator, cfg
