"""Export a GPEN generator to a static inference model (dynamic batch) for Paddle Inference / infer.py.

    python export_model.py --model_path GPEN-BFR-256.pth --save_dir inference/GPEN
    python export_model.py --model_path output/gpen_256/g_ema.pdparams --save_dir inference/GPEN --onnx

Paddle 3 writes <save_dir>/gpen.json (the program, PIR) + gpen.pdiparams (the weights); Paddle 2.x and
the legacy IR write gpen.pdmodel instead of gpen.json. gpen.yml records the input size and conventions. --onnx also writes gpen.onnx through paddle2onnx
(pip install paddle2onnx onnxruntime) and checks its output against Paddle's.
"""
import argparse
import os
import sys

from utils.config import MODEL_FLAGS, add_config_arguments, config_from_args, model_flags_given
from utils.errors import UserError, run_cli
from utils.runtime import prepare_cpu

ONNX_AGREEMENT = 1e-4  # max |onnxruntime − Paddle| accepted


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    add_config_arguments(parser, legacy=MODEL_FLAGS + ("threads",))
    parser.add_argument("weights", nargs="?", default=None,
                        help="generator weights, as --model_path (PaddleGAN's TIPC passes them bare)")
    parser.add_argument("--model_path", "--w", "-w", dest="model_path", default=None,
                        help="generator weights: our .pdparams / training checkpoint or the authors' .pth")
    parser.add_argument("--save_dir", default="inference/GPEN", help="output folder")
    parser.add_argument("--model_name", default="gpen", help="file name stem of the exported files")
    parser.add_argument("--onnx", action="store_true", help="also export ONNX (needs paddle2onnx) and check it")
    parser.add_argument("--opset", type=int, default=13, help="ONNX opset for --onnx")
    return parser.parse_args(argv)


def export_onnx(model_file, params_file, onnx_path, opset, size, reference_run):
    try:
        import paddle2onnx
    except ImportError:
        raise UserError("--onnx needs paddle2onnx: pip install paddle2onnx onnxruntime") from None
    import numpy as np

    paddle2onnx.export(model_file, params_file, onnx_path, opset_version=opset, enable_onnx_checker=True)
    try:
        import onnxruntime
    except ImportError:
        print(f"wrote {onnx_path} (not checked: pip install onnxruntime to compare it with Paddle)")
        return
    session = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, size, size)).astype(np.float32)
    ours = session.run(None, {session.get_inputs()[0].name: x})[0]
    gap = float(np.abs(ours - reference_run(x)).max())
    if not gap <= ONNX_AGREEMENT:
        raise UserError(f"{onnx_path}: ONNX output differs from Paddle's by {gap:.3g} (> {ONNX_AGREEMENT})")
    print(f"wrote {onnx_path} (matches Paddle within {gap:.2g})")


def main(argv=None):
    args = parse_args(argv)
    if args.weights and args.model_path and args.weights != args.model_path:
        raise UserError(f"two weight files given ({args.weights} and --model_path {args.model_path}); give one")
    weights = args.model_path or args.weights
    if not weights:
        raise UserError("give the generator weights: export_model.py WEIGHTS or --model_path WEIGHTS")
    cfg = config_from_args(args)
    prepare_cpu(cfg.runtime.threads)

    from deploy.predictor import Predictor, export, write_model_info
    from model.loading import load_generator

    generator, model_cfg = load_generator(weights, cfg.model if model_flags_given(args) else None)
    size = model_cfg.size
    prefix = os.path.join(args.save_dir, args.model_name)
    files = export(generator, [3, size, size], prefix, output_index=0)
    files.append(write_model_info(prefix, model_cfg))
    print(f"exported GPEN-{size} (channel_multiplier {model_cfg.channel_multiplier}, narrow {model_cfg.narrow}); "
          f"input x: float32 [N, 3, {size}, {size}] RGB in [-1, 1], any N")
    for path in files:
        print(f"wrote {path}")
    if args.onnx:
        predictor = Predictor(files[0], files[1], mkldnn=False)
        export_onnx(files[0], files[1], prefix + ".onnx", args.opset, size, predictor)
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
