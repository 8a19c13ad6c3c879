"""Train GPEN with the authors' recipe (GPEN_SPEC §5).

    python train.py -c configs/gpen_256.yaml -o data.train_path=ffhq -o data.test_path=celeba_hq
    python train.py --size 256 --mul 1 --narrow 0.5 --batch_size 2 --train_path ffhq --test_path celeba_hq
    python train.py -c configs/gpen_256.yaml --resume auto              # continue after a stop
    python -m paddle.distributed.launch --gpus 0,1 train.py -c ...      # data parallel, batch per GPU

The authors' flags (--path --iter --batch --channel_multiplier --lr --ckpt ...) work as well.
"""
import argparse
import sys

from utils.config import add_config_arguments, command_line_from_args
from utils.errors import run_cli
from utils.runtime import prepare_cpu

# Command-line flags of the authors' train_simple.py and the Paddle reproductions -> config keys.
FLAGS = {
    "train_path": "data.train_path", "path": "data.train_path",
    "test_path": "data.test_path", "val_dir": "data.test_path",
    "batch_size": "train.batch_size", "batch": "train.batch_size",
    "max_iter": "train.max_iter", "iter": "train.max_iter",
    "start_iter": "train.start_iter",
    "pretrain": "train.pretrain", "weights": "train.pretrain", "resume": "train.resume",
    "output": "train.output_dir", "ckpt": "train.output_dir",
    "save_freq": "train.save_freq", "seed": "train.seed",
    "r1": "train.r1_gamma", "path_regularize": "train.pl_weight",
    "d_reg_every": "train.d_reg_every", "g_reg_every": "train.g_reg_every",
    "num_workers": "data.num_workers", "id_weights": "train.id_weights",
}
TYPES = {"batch_size": int, "batch": int, "max_iter": int, "iter": int, "start_iter": int, "save_freq": int,
         "seed": int, "r1": float, "path_regularize": float, "d_reg_every": int, "g_reg_every": int,
         "num_workers": int}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    add_config_arguments(parser, legacy=("size", "mul", "channel_multiplier", "narrow", "latent", "n_mlp",
                                         "threads", "device"))
    for name, key in FLAGS.items():
        parser.add_argument(f"--{name}", type=TYPES.get(name, str), default=None, help=f"sets {key}")
    parser.add_argument("--lr", type=float, default=None, help="sets train.g_lr and train.d_lr")
    parser.add_argument("--overwrite", action="store_true", help="start over in a folder holding a previous run")
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # torch launchers
    parser.add_argument("--sample", default=None, help=argparse.SUPPRESS)  # authors' flag: samples go to <output>/samples
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    # Several flags name the same key (the authors' and the reproductions' spellings): keep the given one.
    flags = {key: getattr(args, name) for name, key in FLAGS.items() if getattr(args, name) is not None}
    flags.update({"train.g_lr": args.lr, "train.d_lr": args.lr, "train.overwrite": args.overwrite or None})
    # Kept as a CommandLine: a resumed run applies it over the checkpoint's configuration.
    command_line = command_line_from_args(args, flags)
    cfg = command_line.apply()
    # Freed memory is kept for reuse, as in the inference scripts, and handed back after every phase
    # (utils.runtime.set_malloc): CPU iterations ~20-30 % faster for a peak ~1.3-1.5x higher;
    # GPEN_MALLOC=system trades that speed for glibc's lower peak.
    prepare_cpu(cfg.runtime.threads)
    from trainer.loop import train
    return train(cfg, command_line)


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
