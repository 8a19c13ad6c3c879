"""Restore faces with a GPEN generator: aligned face crops, or every face of a photo.

    python predict.py --w GPEN-BFR-512.pth --img photo.jpg                 # detect, restore, paste back
    python predict.py --w output/gpen_256/g_ema.pdparams --img faces/ --aligned yes
    python predict.py --w G.pdparams --img sharp_face.png --degrade --seed 0   # degraded | restored | original

The weights may be ours (.pdparams, training checkpoints) or the authors' .pth; the architecture is
read off them unless --size/--mul/--narrow or -c say otherwise.
"""
import argparse
import sys

from utils.config import add_config_arguments, config_from_args
from utils.errors import UserError, run_cli
from utils.runtime import prepare_cpu


def parse_args(argv):
    from deploy.restore import add_arguments

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    add_config_arguments(parser, legacy=("size", "mul", "channel_multiplier", "narrow", "threads", "device"))
    parser.add_argument("--w", "-w", "--weights", dest="weights", default=None,
                        help="generator weights: our .pdparams / training checkpoint or the authors' .pth")
    parser.add_argument("--backend", choices=("auto", "dygraph", "predictor"), default="auto",
                        help="auto: the oneDNN predictor on CPU (checked against dygraph), dygraph on GPU")
    add_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    explicit_model = args.config is not None or any(
        getattr(args, k) is not None for k in ("size", "mul", "channel_multiplier", "narrow"))
    cfg = config_from_args(args, {"eval.weights": args.weights})
    if not cfg.eval.weights:
        raise UserError("no generator weights given: pass --w (our .pdparams or the authors' .pth)")
    prepare_cpu(cfg.runtime.threads)

    from deploy.restore import load_inputs, restore_files
    from deploy.runner import GeneratorRunner
    from model.loading import load_generator
    from utils.runtime import select_device

    inputs = load_inputs(args)  # every input read and checked before any work is done or anything written
    select_device(cfg.runtime.device)
    generator, model_cfg = load_generator(cfg.eval.weights, cfg.model if explicit_model else None)
    runner = GeneratorRunner(generator, model_cfg.size, backend=args.backend)
    restore_files(args, inputs, runner, model_cfg.size, cfg.degradation, cfg.data.interpolation)
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
