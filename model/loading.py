"""Building GPEN's networks and putting weights into them, from any file a user may hold.

`load_generator(path)` accepts the authors' `GPEN-BFR-*.pth`, their training checkpoints
({g, d, g_ema, ...}), our `.pdparams` files and our training checkpoints. The architecture comes from
what the file stores: our training checkpoints carry it (`architecture`), and for every other file it
is read off the weight shapes (GPEN_SPEC §1's channel table, solved for the multiplier and the narrow
factor). A caller that insists on an architecture gets a mismatch reported with the first differing key.
"""
import dataclasses

import paddle

from model.discriminator import Discriminator
from model.generator import FullGenerator, generator_sizes
from model.layers import channel_table
from utils.config import ModelConfig
from utils.errors import UserError
from utils.weights import WeightKind, check_state_dict, read_state_dict

# The authors' files keep their module names; ours too (layers.py), so reading is a copy.
GENERATOR_WEIGHTS = WeightKind(
    "GPEN generator", markers=("ecd0.0.0.weight", "generator.style.1.weight"),
    hint="expected a GPEN generator: the authors' GPEN-BFR-*.pth, a training checkpoint of theirs or ours, "
         "or a g_ema.pdparams", entries=("g_ema", "g", "state_dict", "model", "params"))
DISCRIMINATOR_WEIGHTS = WeightKind(
    "GPEN discriminator", markers=("convs.0.0.weight", "final_conv.0.weight", "final_linear.1.weight"),
    hint="expected a GPEN discriminator: the authors' GPEN-BFR-*-D.pth or a training checkpoint",
    entries=("d", "state_dict", "model", "params"))


def build_generator(model_cfg):
    return FullGenerator(model_cfg.size, model_cfg.style_dim, model_cfg.n_mlp,
                         channel_multiplier=model_cfg.channel_multiplier, narrow=model_cfg.narrow,
                         isconcat=model_cfg.isconcat, lr_mlp=model_cfg.lr_mlp, in_size=model_cfg.in_size or None)


def build_discriminator(model_cfg):
    return Discriminator(model_cfg.size, channel_multiplier=model_cfg.channel_multiplier, narrow=model_cfg.narrow)


def set_weights(layer, state, path):
    """Load `state` (name -> array) into a GPEN network, requiring the same keys and shapes."""
    own = layer.state_dict()
    check_state_dict(state, own, path, "GPEN", "check --size/--mul/--narrow (or -c) against the file")
    layer.set_state_dict({k: paddle.to_tensor(state[k]) for k in own})


# ----------------------------------------------------------------------------------------------
# The architecture of a file.

def _log2(n):
    return n.bit_length() - 1


def _solve_width(widths, path):
    """(channel_multiplier, narrow) that make channel_table reproduce `widths` {resolution: channels}.

    narrow is fixed by the 4x4 width, ch(4) = int(512·narrow); the multiplier by the first resolution
    at 64 or above, ch(r) = int(base(r)·m·narrow). Both are checked against every width given."""
    narrow = widths[4] / 512
    high = sorted(r for r in widths if r >= 64)
    multiplier = 1
    if high:
        base = 256 * 64 // high[0]  # 64 -> 256, 128 -> 128, 256 -> 64, ...
        multiplier = max(1, round(widths[high[0]] / (base * narrow)))
    table = channel_table(multiplier, narrow)
    wrong = [r for r, c in widths.items() if table.get(r) != c]
    if wrong:
        r = wrong[0]
        raise UserError(f"{path}: the layer widths do not follow GPEN's channel table (at {r}x{r}: {widths[r]} "
                        f"channels, but multiplier {multiplier} and narrow {narrow:g} give {table.get(r)})")
    return multiplier, narrow


def generator_architecture(state, path=""):
    """ModelConfig of a FullGenerator state dict, read off its shapes."""
    in_size, size = generator_sizes(state)  # encoder and output resolutions (they differ for SR files)
    ch4 = state["generator.input.input"].shape[1]
    # Encoder widths: ecd0 is at in_size, ecdK outputs resolution in_size / 2^K; the decoder's last
    # StyledConv gives the width at the output size.
    widths = {4: ch4, in_size: state["ecd0.0.0.weight"].shape[0],
              size: state[f"generator.convs.{2 * (_log2(size) - 2) - 1}.conv.weight"].shape[1]}
    for k in range(1, _log2(in_size) - 1):
        widths[in_size >> k] = state[f"ecd{k}.0.1.weight"].shape[0]
    multiplier, narrow = _solve_width(widths, path)
    n_mlp = len({k.split(".")[2] for k in state if k.startswith("generator.style.") and k.endswith(".weight")})
    return ModelConfig(size=size, in_size=in_size if in_size != size else 0,
                       style_dim=state["generator.style.1.weight"].shape[0], n_mlp=n_mlp,
                       channel_multiplier=multiplier, narrow=narrow,
                       # the concatenated noise doubles the activation's channels
                       isconcat=state["generator.conv1.activate.bias"].shape[0] == 2 * ch4)


def discriminator_architecture(state, path=""):
    n_convs = len({k.split(".")[1] for k in state if k.startswith("convs.")})
    size = 2 ** (n_convs + 1)  # convs.0 (1x1 from RGB) + one ResBlock per halving down to 4
    widths = {4: state["final_conv.0.weight"].shape[0], size: state["convs.0.0.weight"].shape[0]}
    for k in range(1, n_convs):
        widths[size >> k] = state[f"convs.{k}.conv2.1.weight"].shape[0]
    multiplier, narrow = _solve_width(widths, path)
    return ModelConfig(size=size, channel_multiplier=multiplier, narrow=narrow)


def _stored_architecture(weights):
    """The ModelConfig a training checkpoint of ours stores, or None."""
    stored = (weights.stored or {}).get("architecture")
    if not isinstance(stored, dict):
        return None
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    return ModelConfig(**{k: v for k, v in stored.items() if k in known})


def _load(path, kind, build, architecture, model_cfg, key):
    weights = read_state_dict(path, kind, key=key)
    cfg = model_cfg or _stored_architecture(weights) or architecture(weights.state, path)
    network = build(cfg)
    set_weights(network, weights.state, path)
    return network, cfg


def load_generator(path, model_cfg=None, key=None):
    """FullGenerator with the weights of `path` (any supported file), in eval mode, and its ModelConfig.

    model_cfg: a ModelConfig to build; None takes the one the file stores or reads it off the weights.
    key: the entry of a training checkpoint to use (default: g_ema when present).
    """
    generator, cfg = _load(path, GENERATOR_WEIGHTS, build_generator, generator_architecture, model_cfg, key)
    generator.eval()
    return generator, cfg


def load_discriminator(path, model_cfg=None, key=None):
    return _load(path, DISCRIMINATOR_WEIGHTS, build_discriminator, discriminator_architecture, model_cfg, key)
