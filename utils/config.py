"""The one typed configuration of the project.

Every entry script builds a `Config`: the defaults below, overlaid with a YAML file (`-c`), then the
legacy command-line flags of the authors' scripts (`--size`, `--mul`, ...), then `-o section.key=value`
overrides. Unknown keys and values of the wrong type are refused with one line naming the key.
Every number of the recipe lives here with a comment saying where it comes from; GPEN_SPEC is
`docs` of the shared material (the paper, the authors' `train_simple.py`, GFPGAN's degradation).

This module must not import paddle (entry scripts set the CPU threads before paddle is imported).
"""
import copy
import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from typing import List, Literal

import yaml

from utils.errors import UserError


@dataclass
class ModelConfig:
    """Architecture of the generator and the discriminator (GPEN_SPEC §1)."""
    size: int = 256                 # output resolution; 256 = GPEN-BFR-256
    in_size: int = 0                # encoder resolution when below size (the authors' FullGenerator_SR,
                                    # e.g. 1024 -> 2048); 0 = size
    style_dim: int = 512            # width of the latent code z and style w
    n_mlp: int = 8                  # layers of the mapping network
    channel_multiplier: int = 1     # "--mul" of the reproductions; 1 for 256, 2 for 512/1024
    narrow: float = 0.5             # width factor of every layer; 0.5 for 256, 1 for 512/1024
    isconcat: bool = True           # encoder features concatenated as "noise" (GPEN), not added
    lr_mlp: float = 0.01            # equalized-lr multiplier of the mapping network (StyleGAN2)


@dataclass
class DegradationConfig:
    """Synthetic degradation of the HQ faces (GFPGAN's model in the authors' code, GPEN_SPEC §6)."""
    flip_prob: float = 0.5                                          # horizontal flip of HQ and LQ
    gray_prob: float = 0.2                                          # HQ and LQ turned gray
    kernel_size: int = 41                                           # blur kernel side
    kernel_list: List[str] = field(default_factory=lambda: ["iso", "aniso"])  # also "generalized_iso",
    # "generalized_aniso", "plateau_iso", "plateau_aniso" (GFPGAN's extra families)
    kernel_prob: List[float] = field(default_factory=lambda: [0.5, 0.5])       # one per kernel_list entry
    blur_sigma: List[float] = field(default_factory=lambda: [0.1, 10.0])       # Gaussian σ range, pixels
    rotation: List[float] = field(default_factory=lambda: [-math.pi, math.pi])  # anisotropic kernel angle
    betag_range: List[float] = field(default_factory=lambda: [0.5, 4.0])       # generalized Gaussian shape
    betap_range: List[float] = field(default_factory=lambda: [1.0, 2.0])       # plateau shape
    downsample_range: List[float] = field(default_factory=lambda: [0.8, 8.0])  # downscale factor
    noise_range: List[float] = field(default_factory=lambda: [0.0, 20.0])      # Gaussian noise σ, 8-bit units
    jpeg_range: List[int] = field(default_factory=lambda: [60, 100])           # JPEG quality


@dataclass
class DataConfig:
    """Where the faces are and how they are read."""
    train_path: str = ""            # folder of HQ faces (FFHQ layout: nested folders are fine)
    test_path: str = ""             # folder of HQ faces for validation / evaluation
    interpolation: Literal["area", "nearest", "bilinear", "bicubic"] = "area"  # HQ resize to model.size;
    # the authors use area; the Paddle reproduction insists on nearest for 256
    degrade_on: Literal["auto", "cpu", "device"] = "auto"  # auto: the device executor on GPU, CPU workers otherwise
    num_workers: int = 2            # DataLoader worker processes (0 = in the main process)
    test_seed: int = 0              # seed of the test-time degradation: image i depends on (seed, i) only
    lq_path: str = ""               # test.py: low-quality faces given as files (paired / no-reference protocol)
    hq_path: str = ""               # test.py: ground truth of lq_path, matched by file name (paired protocol)
    lq_interpolation: Literal["area", "nearest", "bilinear", "bicubic"] = "bilinear"  # given LQ files to
    # model.size: bilinear, cv2.resize's default, as GPEN's face_gan.py and the field's inference scripts


@dataclass
class TrainConfig:
    """The authors' recipe (`train_simple.py`, GPEN_SPEC §5) and the optional fine-tuning knobs."""
    output_dir: str = "output/gpen"   # run folder: checkpoints, samples, logs, resolved config
    batch_size: int = 4               # per GPU (authors' --batch 4; GPEN_SPEC §5: 2–4)
    max_iter: int = 4000000           # iterations run: start_iter … max_iter−1 (authors' --iter)
    start_iter: int = 0               # numbering of the first iteration, e.g. after --pretrain
    seed: int = 0                     # global seed; each process uses seed·world_size + rank
    batch_groups: int = 1             # D's minibatch-stddev and the path-length mean are per process (the
    # authors' DDP); with k groups one process computes them per batch_size/k samples and reproduces a
    # k-process run exactly
    # Optimisation. Adam with StyleGAN2's lazy-regularization correction: for an interval k the lr is
    # lr·k/(k+1) and the betas are beta**(k/(k+1)) (train_simple.py).
    g_lr: float = 0.002               # generator base lr (authors' --lr)
    d_lr: float = 0.002               # discriminator base lr (authors' --lr)
    beta1: float = 0.0                # Adam beta1 before correction (StyleGAN2)
    beta2: float = 0.99               # Adam beta2 before correction (StyleGAN2)
    adam_eps: float = 1e-8            # PyTorch's Adam default, used by the authors
    optimizer: Literal["adam", "adamw"] = "adam"  # adamw: fine-tuning option, off in the recipe
    weight_decay: float = 0.0         # AdamW only
    lr_schedule: Literal["constant", "cosine"] = "constant"  # the recipe's lr is constant
    warmup_iters: int = 0             # linear warm-up before the cosine schedule
    min_lr_ratio: float = 0.0         # cosine schedule floor, as a fraction of the base lr
    # Loss weights (G: adv + content + feature + id).
    w_adv: float = 1.0                # non-saturating adversarial loss (train_simple.py)
    w_content: float = 1.0            # SmoothL1(fake, real), PyTorch beta 1 (train_simple.py; paper α = 1)
    w_feature: float = 0.0            # feature matching on D's activations: absent from train_simple.py;
    # the paper uses β = 0.02, the Paddle reproduction 1.0
    w_id: float = 1.0                 # ArcFace identity loss (train_simple.py); off when id_weights is empty
    id_weights: str = ""              # model_ir_se50.pth (or its .pdparams conversion)
    # Lazy regularization (StyleGAN2, train_simple.py).
    r1_gamma: float = 10.0            # R1 weight γ; the loss is γ/2 · r1 · d_reg_every
    d_reg_every: int = 16             # R1 interval
    pl_weight: float = 2.0            # path-length weight (authors' --path_regularize)
    g_reg_every: int = 4              # path-length interval
    pl_decay: float = 0.01            # moving-average rate of the mean path length
    # EMA generator: decay = 0.5 ** (images per step / ema_halflife_images). The authors' train_simple.py
    # counts every step as 32 images whatever the real batch (its constant 0.5 ** (32 / 10000)); kept by
    # default. ema_authors_step_images = 0 counts the real global batch instead (StyleGAN2-ADA's rule).
    ema_halflife_images: float = 10000.0
    ema_authors_step_images: float = 32.0
    # Bookkeeping.
    log_freq: int = 100               # iterations between log lines / VisualDL scalars
    save_freq: int = 10000            # iterations between checkpoints (authors' --save_freq)
    sample_freq: int = 10000          # iterations between sample grids
    val_freq: int = 10000             # iterations between validation PSNR
    val_count: int = 16               # validation faces taken from data.test_path
    keep_last: int = 3                # numbered checkpoints kept besides latest and best
    early_stop_patience: int = 0      # stop after this many validations without a better PSNR (0 = off)
    resume: str = ""                  # checkpoint to continue exactly, or "auto" (latest in output_dir)
    pretrain: str = ""                # weights to start from (ours or the authors' .pth): a training
    # checkpoint gives g, g_ema and d; a generator file (GPEN-BFR-*.pth) gives g and g_ema
    pretrain_d: str = ""              # discriminator weights to start from with a generator-only pretrain
    overwrite: bool = False           # allow a non-empty output_dir without resume


@dataclass
class EvalConfig:
    """Evaluation (test.py) and inference settings."""
    weights: str = ""                 # generator weights (.pdparams or the authors' .pth)
    batch_size: int = 8
    save_dir: str = ""                # where restored (and degraded) images go; empty = not saved
    inception_weights: str = ""       # pytorch-fid's pt_inception-2015-12-05-6726825d.pth (or .pdparams)
    fid_stats: str = ""               # reference statistics for FID: pytorch-fid's .npz (mu, sigma) or BasicSR's
                                      # .pth (e.g. inception_FFHQ_512-f7b384ab.pth); needed without ground truth
    lpips_weights: str = ""           # LPIPS linear heads: lpips 0.1.4's lpips/weights/v0.1/alex.pth (or .pdparams)
    lpips_backbone: str = ""          # LPIPS backbone: torchvision's alexnet-owt-7be5be79.pth (or .pdparams);
                                      # LPIPS is computed only when both files are given
    report: str = ""                  # JSON report path; empty = <save_dir or .>/report.json; the per-image
                                      # table goes beside it (<report>_per_image.csv)
    niqe: bool = True                 # NIQE (no reference; BasicSR's calculate_niqe, Y channel) of every restored face


@dataclass
class RuntimeConfig:
    threads: int = 0                  # CPU threads (0 = default); applied before paddle is imported
    device: Literal["auto", "cpu", "gpu"] = "auto"


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    degradation: DegradationConfig = field(default_factory=DegradationConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


# ----------------------------------------------------------------------------------------------
# Loading, overriding, checking.

def _describe(tp):
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, List):
        return f"a list of {_describe(typing.get_args(tp)[0])}s"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _coerce(value, tp, key):
    """Return `value` as type `tp`, or raise a UserError naming `key`."""
    origin = typing.get_origin(tp)
    bad = UserError(f"config key {key}: expected {_describe(tp)}, got {value!r}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise bad
        return value
    if origin in (list, List):
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise bad
        (item_tp,) = typing.get_args(tp)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if tp is str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise bad
        return value
    raise TypeError(f"unsupported config type {tp} for {key}")


def _unknown_key(key, known, where):
    hint = difflib.get_close_matches(key.split(".")[-1], known, n=1)
    suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
    return UserError(f"unknown config key '{key}'{where}{suggestion}")


def _merge(node, values, prefix, where):
    """Overlay the mapping `values` onto the dataclass instance `node`, checking keys and types."""
    if not isinstance(values, dict):
        raise UserError(f"config section '{prefix.rstrip('.') or '<top>'}'{where} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(type(node))
    names = [f.name for f in dataclasses.fields(node)]
    for key, value in values.items():
        full = prefix + str(key)
        if key not in names:
            raise _unknown_key(full, names, where)
        current = getattr(node, key)
        if dataclasses.is_dataclass(current):
            _merge(current, value or {}, full + ".", where)
        else:
            setattr(node, key, _coerce(value, hints[key], full))


def set_value(cfg, dotted, value, where=""):
    """Set `cfg.<dotted>` = value with the same checks as a YAML file."""
    parts = dotted.split(".")
    nested = value
    for part in reversed(parts):
        nested = {part: nested}
    _merge(cfg, nested, "", where)


def parse_override(text):
    """'train.lr=0.001' -> ('train.lr', 0.001); the value is read as YAML (numbers, lists, booleans)."""
    if "=" not in text:
        raise UserError(f"override '{text}' must look like section.key=value, e.g. train.batch_size=2")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def load_config(path=None, overrides=(), flags=None, base=None):
    """Build a Config: `base` (default: the defaults) < YAML file `path` < `flags` {dotted key: value} <
    `overrides` ('a.b=v')."""
    cfg = copy.deepcopy(base) if base is not None else Config()
    if path:
        try:
            with open(path, "r", encoding="utf-8") as f:
                values = yaml.safe_load(f) or {}
        except FileNotFoundError:
            raise UserError(f"config file not found: {path}") from None
        except yaml.YAMLError as err:
            raise UserError(f"config file {path} is not valid YAML: {str(err).splitlines()[0]}") from None
        _merge(cfg, values, "", f" in {path}")
    for key, value in (flags or {}).items():
        if value is not None:
            set_value(cfg, key, value)
    for text in overrides:
        key, value = parse_override(text)
        set_value(cfg, key, value, " given with -o")
    return cfg


def config_to_dict(cfg):
    return dataclasses.asdict(cfg)


def flat_config(cfg):
    """{'section.key': value} of a Config."""
    return {f"{section}.{key}": value for section, values in config_to_dict(cfg).items()
            for key, value in values.items()}


def config_from_dict(values):
    """Rebuild a Config from `config_to_dict` output (e.g. stored in a checkpoint)."""
    cfg = Config()
    _merge(cfg, values, "", "")
    return cfg


def save_config(cfg, path):
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(config_to_dict(cfg), f, sort_keys=False)


# ----------------------------------------------------------------------------------------------
# Command-line helpers shared by the entry scripts.

# Flags of the authors' scripts and of the Paddle reproductions, and the config key each one sets.
LEGACY_FLAGS = {
    "size": ("model.size", int),
    "mul": ("model.channel_multiplier", int),
    "channel_multiplier": ("model.channel_multiplier", int),
    "narrow": ("model.narrow", float),
    "latent": ("model.style_dim", int),
    "n_mlp": ("model.n_mlp", int),
    "threads": ("runtime.threads", int),
    "device": ("runtime.device", str),
}


# The legacy flags that choose an architecture; given (or -c), they override what a weight file says.
MODEL_FLAGS = ("size", "mul", "channel_multiplier", "narrow")


def model_flags_given(args):
    """Did the command line choose the architecture (-c or a MODEL_FLAGS flag)?"""
    return args.config is not None or any(getattr(args, name, None) is not None for name in MODEL_FLAGS)


def add_config_arguments(parser, legacy=()):
    """Add -c/--config, -o/--opt and the named legacy flags (keys of LEGACY_FLAGS) to `parser`."""
    parser.add_argument("-c", "--config", default=None, help="YAML config (see configs/)")
    parser.add_argument("-o", "--opt", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. -o train.batch_size=2 (repeatable)")
    for name in legacy:
        key, tp = LEGACY_FLAGS[name]
        parser.add_argument(f"--{name}", type=tp, default=None, help=f"sets {key}")


@dataclass
class CommandLine:
    """What a command line asked for (a YAML file, flags, -o overrides), so that it can be applied over
    another base than the defaults: a resumed run applies it over the checkpoint's configuration."""
    config_path: str = None
    flags: dict = field(default_factory=dict)       # dotted key -> value (None = not given)
    overrides: list = field(default_factory=list)   # 'section.key=value' texts

    def apply(self, base=None):
        return load_config(self.config_path, self.overrides, self.flags, base=base)


def command_line_from_args(args, extra_flags=None):
    """The CommandLine of parsed arguments; `extra_flags` maps more dotted keys to values."""
    flags = {key: getattr(args, name) for name, (key, _) in LEGACY_FLAGS.items() if hasattr(args, name)}
    flags.update(extra_flags or {})
    return CommandLine(args.config, flags, list(args.opt))


def config_from_args(args, extra_flags=None):
    """Build the Config from parsed arguments; `extra_flags` maps more dotted keys to values."""
    return command_line_from_args(args, extra_flags).apply()
