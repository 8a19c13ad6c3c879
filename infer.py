"""Restore faces with an exported GPEN model through Paddle Inference (the deployment path).

    python infer.py --model_dir inference/GPEN --img photo.jpg
    python infer.py --model_file inference/GPEN/gpen.json --params_file inference/GPEN/gpen.pdiparams \
        --img faces/ --aligned yes --enable_mkldnn True --cpu_threads 2 --benchmark
    python infer.py --model_dir inference/GPEN --img celeba_hq/ --degrade --seed 0 \
        --inception_weights pt_inception.pth          # PSNR (and FID over the folder)
    python infer.py --model_dir inference/GPEN --img photo.jpg --detector_model RetinaFace-R50.pth \
        --parsing_weights ParseNet-latest.pth         # the authors' FaceEnhancement (predict.py's flags)

On CPU, --enable_mkldnn True (oneDNN) is the fast path. On a GPU: --device gpu, optionally
--use_tensorrt True --precision fp16.
"""
import argparse
import os
import sys

from utils.errors import UserError, run_cli
from utils.runtime import prepare_cpu


def str2bool(text):
    value = str(text).strip().lower()
    if value in ("true", "1", "yes", "y"):
        return True
    if value in ("false", "0", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def parse_args(argv):
    from predict import add_restore_arguments

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--model_file", default=None, help="exported program (.json, or .pdmodel)")
    parser.add_argument("--params_file", default=None, help="exported weights (.pdiparams)")
    parser.add_argument("--model_dir", default=None, help="folder written by export_model.py (instead of the two files)")
    parser.add_argument("--model_name", default="gpen", help="file name stem inside --model_dir")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--cpu_threads", type=int, default=0, help="CPU threads (0 = all cores)")
    parser.add_argument("--enable_mkldnn", type=str2bool, default=True, help="oneDNN kernels on CPU (True/False)")
    parser.add_argument("--use_tensorrt", type=str2bool, default=False, help="TensorRT on GPU (True/False)")
    parser.add_argument("--precision", choices=("fp32", "fp16"), default="fp32", help="fp16 needs --device gpu")
    parser.add_argument("--inception_weights", default=None,
                        help="with --degrade on a folder: also report FID (pytorch-fid's Inception weights)")
    parser.add_argument("--benchmark", type=str2bool, nargs="?", const=True, default=False,
                        help="print pre-processing / inference / post-processing latency and throughput")
    parser.add_argument("--skip_unavailable", action="store_true",
                        help="a setting this machine cannot run (--device gpu without CUDA; TensorRT or fp16 on "
                             "the CPU) prints one 'skipped:' line and exits 0 instead of failing (TIPC lists rows "
                             "for every device)")
    add_restore_arguments(parser)  # the same restoring flags as predict.py
    return parser.parse_args(argv)


def unavailable_setting(args):
    """Why this machine cannot run the requested device setting, or '' (the Predictor raises the same)."""
    import paddle

    if args.device == "gpu" and not (paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count()):
        return "--device gpu needs paddlepaddle-gpu and a GPU; this Paddle is the CPU build or sees no GPU"
    if args.device == "cpu" and args.use_tensorrt:
        return "--use_tensorrt True needs --device gpu"
    if args.device == "cpu" and args.precision != "fp32":
        return f"--precision {args.precision} needs --device gpu"
    return ""


def model_files(args):
    from deploy.predictor import model_file_for

    if args.model_dir:
        prefix = os.path.join(args.model_dir, args.model_name)
        return model_file_for(prefix), prefix + ".pdiparams"
    if not (args.model_file and args.params_file):
        raise UserError("give --model_dir (from export_model.py), or both --model_file and --params_file")
    return args.model_file, args.params_file


def report_latency(timings):
    import numpy as np

    print(f"benchmark over {len(timings)} image(s):")
    for phase in ("preprocess", "inference", "postprocess"):
        values = np.array([t[phase] for t in timings]) * 1000
        print(f"  {phase:12s} mean {values.mean():8.2f} ms   p50 {np.percentile(values, 50):8.2f} ms   "
              f"p90 {np.percentile(values, 90):8.2f} ms")
    total = sum(sum(t.values()) for t in timings)
    print(f"  throughput   {len(timings) / total:.3f} images/s")


def folder_fid(args, written, size):
    """FID between the restored faces (middle third of the --degrade strips) and the originals."""
    import numpy as np

    from deploy.features import inception_features
    from metric.fid import extract_features, fid_from_features
    from utils.image_io import read_image

    strips = [read_image(path) for path in written]
    restored = np.stack([s[:, size:2 * size] for s in strips])
    original = np.stack([s[:, 2 * size:] for s in strips])
    features = inception_features(args.inception_weights, threads=args.cpu_threads)
    score = fid_from_features(extract_features(features, restored), extract_features(features, original))
    print(f"FID: {score:.4f} over {len(strips)} faces")


def main(argv=None):
    args = parse_args(argv)
    prepare_cpu(args.cpu_threads)
    unavailable = unavailable_setting(args)
    if unavailable:
        if not args.skip_unavailable:
            raise UserError(unavailable)
        print(f"skipped: {unavailable} (--skip_unavailable)")
        return 0

    from deploy.checked import checked_predictor
    from deploy.predictor import read_model_info
    from faces.files import load_inputs, restore_files
    from predict import restore_options
    from utils.config import DegradationConfig

    options = restore_options(args)
    inputs = load_inputs(args.img, options)  # every input read and checked before anything is written
    model_file, params_file = model_files(args)
    size = read_model_info(model_file)["size"]
    # Finite on every batch; with oneDNN the first batch is compared with the same program without it.
    network = checked_predictor(model_file, params_file, "GPEN generator", device=args.device,
                                threads=args.cpu_threads, mkldnn=args.enable_mkldnn, tensorrt=args.use_tensorrt,
                                precision=args.precision, input_size=size, max_batch=max(args.batch_size, 1))
    timings = []
    written = restore_files(args.img, inputs, network, size, options, DegradationConfig(), timings=timings)
    if args.inception_weights and args.degrade:
        folder_fid(args, written, size)
    if args.benchmark:
        report_latency(timings)
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
