"""Convert PyTorch weights (the authors' GPEN checkpoints and the other networks the project reads) to a
Paddle .pdparams file, without torch and without running any code stored in the checkpoint.

    python tools/convert_weights.py GPEN-BFR-512.pth GPEN-BFR-512.pdparams
    python tools/convert_weights.py 090000.pth G.pdparams --key g_ema      # a training checkpoint
    python tools/convert_weights.py pt_inception-2015-12-05-6726825d.pth inception.pdparams
    python tools/convert_weights.py model_ir_se50.pth model_ir_se50.pdparams

The network is recognised from its keys (known_weights(), each entry declared by its network's module);
for GPEN the architecture (size, channel multiplier, narrow) is read off the shapes and printed, and the
result is checked by loading it into a fresh model. Every script also reads the .pth files directly.
"""
import argparse
import dataclasses
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


def known_weights():
    """The table of every network whose files the project reads: (kind, architecture reader or None)."""
    from faces.parsenet import PARSENET_WEIGHTS
    from faces.realesrnet import REALESRNET_WEIGHTS
    from faces.retinaface import RETINAFACE_WEIGHTS
    from loss.arcface import IRSE50_WEIGHTS
    from metric.inception import INCEPTION_WEIGHTS
    from metric.lpips import ALEXNET_WEIGHTS, LPIPS_HEADS_WEIGHTS
    from model.loading import (DISCRIMINATOR_WEIGHTS, GENERATOR_WEIGHTS, discriminator_architecture,
                               generator_architecture)

    return [(GENERATOR_WEIGHTS, generator_architecture), (DISCRIMINATOR_WEIGHTS, discriminator_architecture),
            (INCEPTION_WEIGHTS, None), (IRSE50_WEIGHTS, None), (ALEXNET_WEIGHTS, None), (LPIPS_HEADS_WEIGHTS, None),
            (RETINAFACE_WEIGHTS, None), (PARSENET_WEIGHTS, None), (REALESRNET_WEIGHTS, None)]


def identify_file(path, key=None):
    """(Weights, architecture reader) of the first known network `path` holds; UserError when none."""
    from utils.weights import read_checkpoint, read_state_dict, select_state_dict

    content, _ = read_checkpoint(path)
    for kind, architecture in known_weights():
        try:
            state, _ = select_state_dict(content, path, kind, key)
        except UserError:
            continue
        if kind.matches(state):
            return read_state_dict(path, kind, key=key), kind, architecture
    names = ", ".join(kind.name for kind, _ in known_weights())
    raise UserError(f"{path}: not weights of a network this project reads ({names})"
                    + ("" if key else "; for a training checkpoint pass --key"))


def main(argv=None):
    args = parse_args(argv)
    prepare_cpu(1)
    import paddle

    weights, kind, architecture = identify_file(args.src, args.key)
    where = f" (entry '{weights.key}')" if weights.key else ""
    print(f"{args.src}{where}: {kind.name}, {len(weights.state)} tensors")
    if architecture is not None:
        arch = architecture(weights.state, args.src)
        print("  architecture:", ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(arch).items()))
    folder = os.path.dirname(os.path.abspath(args.dst))
    os.makedirs(folder, exist_ok=True)
    paddle.save({k: paddle.to_tensor(v) for k, v in weights.state.items()}, args.dst)
    # Check the result the way users load it: into a fresh model, every key matched.
    from model.loading import DISCRIMINATOR_WEIGHTS, GENERATOR_WEIGHTS, load_discriminator, load_generator
    if kind is GENERATOR_WEIGHTS:
        load_generator(args.dst)
    elif kind is DISCRIMINATOR_WEIGHTS:
        load_discriminator(args.dst)
    print(f"wrote {args.dst}")
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
