"""Convert PyTorch weights (the authors' GPEN checkpoints, pytorch-fid's Inception, the ArcFace IR-SE50)
to a Paddle .pdparams file, without torch and without running any code stored in the checkpoint.

    python tools/convert_weights.py GPEN-BFR-512.pth GPEN-BFR-512.pdparams
    python tools/convert_weights.py 090000.pth G.pdparams --key g_ema      # a training checkpoint
    python tools/convert_weights.py pt_inception-2015-12-05-6726825d.pth inception.pdparams
    python tools/convert_weights.py model_ir_se50.pth model_ir_se50.pdparams

The network is recognised from its keys; for GPEN the architecture (size, channel multiplier, narrow)
is read off the shapes and printed, and the result is checked by loading it into a fresh model.
"""
import argparse
import os
import sys

from utils.errors import UserError, run_cli
from utils.runtime import prepare_cpu


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="PyTorch checkpoint (.pth, zip or pre-1.6 format)")
    parser.add_argument("dst", help="output .pdparams")
    parser.add_argument("--key", default=None,
                        help="entry of a training checkpoint {g, d, g_ema, ...} to convert (default: g_ema)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    prepare_cpu(1)
    import paddle

    from model.convert import infer_discriminator_config, infer_generator_config, load_state_dict
    from model.loading import load_discriminator, load_generator

    state, kind, key = load_state_dict(args.src, key=args.key)
    where = f" (entry '{key}')" if key else ""
    print(f"{args.src}{where}: {kind}, {len(state)} tensors")
    if kind == "generator":
        print("  architecture:", ", ".join(f"{k}={v}" for k, v in infer_generator_config(state).items()))
    elif kind == "discriminator":
        print("  architecture:", ", ".join(f"{k}={v}" for k, v in infer_discriminator_config(state).items()))
    folder = os.path.dirname(os.path.abspath(args.dst))
    os.makedirs(folder, exist_ok=True)
    paddle.save({k: paddle.to_tensor(v) for k, v in state.items()}, args.dst)
    # Check the result the way users load it: into a fresh model, every key matched.
    if kind == "generator":
        load_generator(args.dst)
    elif kind == "discriminator":
        load_discriminator(args.dst)
    print(f"wrote {args.dst}")
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
