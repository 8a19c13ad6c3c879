"""Training checkpoints that never lose work and resume exactly.

A checkpoint holds {g, d, g_ema, g_optim, d_optim, iteration, mean_path_length, rng, config,
architecture, best_psnr, ...}. It is written to a temporary file and renamed into place, so a crash
or Ctrl-C during the write leaves the previous file intact. Optimizer states are stored under the
parameters' structured names (`generator.style.1.weight_moment1_0`) instead of Paddle's per-process
names (`create_parameter_12.w_0...`), so a checkpoint loads into a freshly built model in any process.

Every random stream of training is a function of (seed, iteration, sample index) — the data order,
the degradations, the path-length noise — so the iteration number restores them; Python's and NumPy's
global states are stored as well for code that might use them.
"""
import os
import random

import numpy as np
import paddle

from utils.config import config_from_dict, flat_config
from utils.errors import UserError
from utils.weights import read_paddle_file

CHECKPOINT_EXT = ".pdckpt"


def atomic_save(obj, path):
    tmp = f"{path}.tmp{os.getpid()}"
    paddle.save(obj, tmp)
    os.replace(tmp, path)


def optimizer_state(optimizer, layer):
    """The optimizer's state with parameter names replaced by the layer's structured names."""
    rename = {p.name: name for name, p in layer.named_parameters()}
    state = {}
    for key, value in optimizer.state_dict().items():
        if key == "LR_Scheduler":
            continue  # the lr is set from the config and the iteration on every step
        for pname in sorted(rename, key=len, reverse=True):
            if key.startswith(pname + "_"):
                key = rename[pname] + key[len(pname):]
                break
        state[key] = value
    return state


def load_optimizer_state(optimizer, layer, state, path):
    current = {name: p.name for name, p in layer.named_parameters()}
    own_keys = set(optimizer.state_dict()) - {"LR_Scheduler"}
    renamed = {}
    for key, value in state.items():
        for name in sorted(current, key=len, reverse=True):
            if key.startswith(name + "_"):
                key = current[name] + key[len(name):]
                break
        renamed[key] = paddle.to_tensor(value)
    if own_keys and not own_keys <= set(renamed):
        missing = sorted(own_keys - set(renamed))[0]
        raise UserError(f"{path}: optimizer state has no '{missing}'; was it written by another model?")
    optimizer.set_state_dict(renamed)


def rng_state():
    return {"python": random.getstate(), "numpy": np.random.get_state()}


def set_rng_state(state):
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        np.random.set_state(tuple(state["numpy"]))


def state_dict_arrays(layer):
    return {k: v for k, v in layer.state_dict().items()}


def save_checkpoint(path, step, iteration, cfg_dict, extra):
    """Write the full training state of a `TrainStep` after `iteration` atomically."""
    obj = {
        "g": state_dict_arrays(step.g),
        "d": state_dict_arrays(step.d),
        "g_ema": state_dict_arrays(step.g_ema),
        "g_optim": optimizer_state(step.g_optim, step.g),
        "d_optim": optimizer_state(step.d_optim, step.d),
        "iteration": int(iteration),
        "mean_path_length": float(step.mean_path_length),
        "last": {k: float(v) for k, v in step.last.items()},
        "rng": rng_state(),
        "config": cfg_dict,
        "architecture": cfg_dict["model"],
        **extra,
    }
    atomic_save(obj, path)


def load_checkpoint(path):
    content = read_paddle_file(path)
    needed = ("g", "d", "g_ema", "g_optim", "d_optim", "iteration")
    if not isinstance(content, dict) or any(k not in content for k in needed):
        raise UserError(f"{path}: not a training checkpoint of this project (needs {', '.join(needed)}); "
                        f"use --pretrain to start from weights only")
    return content


# What a resumed run may change: where things are, how long it runs, what it logs and evaluates. The
# architecture, the recipe, the degradation and the seeds are the checkpoint's, so the run continues exactly.
CHANGEABLE_ON_RESUME = {
    "data.train_path", "data.test_path", "data.num_workers", "train.output_dir", "train.max_iter",
    "train.log_freq", "train.save_freq", "train.sample_freq", "train.val_freq", "train.val_count",
    "train.keep_last", "train.early_stop_patience", "train.resume", "train.overwrite", "train.pretrain",
    "train.pretrain_d", "train.id_weights",
}
CHANGEABLE_SECTIONS_ON_RESUME = ("eval.", "runtime.")


def resumed_config(content, path, command_line=None, requested=None):
    """The Config of a resumed run: the checkpoint's, with what the command line asked for on top.

    command_line: a utils.config.CommandLine (only the keys it names are applied), or requested: a whole
    Config whose every key counts as asked for (library callers). A change of any key outside
    CHANGEABLE_ON_RESUME (the architecture, the recipe, ...) is refused with the differing keys."""
    stored = config_from_dict(content["config"]) if "config" in content else None
    if stored is None:
        raise UserError(f"{path}: the checkpoint stores no config, so the run cannot be rebuilt from it")
    cfg = command_line.apply(base=stored) if command_line is not None else requested
    before, after = flat_config(stored), flat_config(cfg)
    changed = [k for k in after if after[k] != before.get(k) and k not in CHANGEABLE_ON_RESUME
               and not k.startswith(CHANGEABLE_SECTIONS_ON_RESUME)]
    # The identity weights may move (a path), but switching the identity loss on or off changes the recipe.
    if bool(before.get("train.id_weights")) != bool(after["train.id_weights"]):
        changed.append("train.id_weights")
    if changed:
        shown = ", ".join(f"{k}: {before.get(k)!r} -> {after[k]!r}" for k in changed[:4])
        more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
        raise UserError(f"--resume {path}: the command line changes the run's architecture or recipe ({shown}{more}); "
                        f"a resumed run keeps the checkpoint's (paths, max_iter and logging may change), or "
                        f"start a new run with --pretrain")
    return cfg


def restore(step, content, path):
    """Put a checkpoint's networks, optimizers and counters back into a `TrainStep`."""
    from model.loading import set_weights

    set_weights(step.g, content["g"], path)
    set_weights(step.d, content["d"], path)
    set_weights(step.g_ema, content["g_ema"], path)
    load_optimizer_state(step.g_optim, step.g, content["g_optim"], path)
    load_optimizer_state(step.d_optim, step.d, content["d_optim"], path)
    step.mean_path_length = paddle.to_tensor(content.get("mean_path_length", 0.0), dtype="float32")
    step.last = {k: paddle.to_tensor(v, dtype="float32") for k, v in content.get("last", {}).items()}
    if "rng" in content:
        set_rng_state(content["rng"])


def link_or_copy(src, dst):
    """Make `dst` the same file as `src` (a hard link, atomically replacing dst), or a copy."""
    tmp = f"{dst}.tmp{os.getpid()}"
    try:
        os.link(src, tmp)
    except OSError:
        import shutil
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def numbered_checkpoints(folder):
    if not os.path.isdir(folder):
        return []
    names = [n for n in os.listdir(folder) if n.startswith("iter_") and n.endswith(CHECKPOINT_EXT)]
    return sorted(os.path.join(folder, n) for n in names)


def prune(folder, keep_last):
    """Delete numbered checkpoints but the last `keep_last`; latest/best are their own (hard-linked or
    copied) files and survive."""
    for path in numbered_checkpoints(folder)[:-keep_last] if keep_last > 0 else []:
        os.remove(path)
