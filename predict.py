"""Restore faces with a GPEN generator: aligned face crops, or every face of a photo.

    python predict.py --w GPEN-BFR-512.pth --img photo.jpg                 # detect, restore, paste back
    python predict.py --w output/gpen_256/g_ema.pdparams --img faces/ --aligned yes
    python predict.py --w G.pdparams --img sharp_face.png --degrade --seed 0   # degraded | restored | original
    python predict.py --w GPEN-BFR-512.pth --img photo.jpg --detector retinaface --detector_model RetinaFace-R50.pth \
        --parsing_weights ParseNet-latest.pth --sr_weights realesrnet_x2.pth      # the authors' FaceEnhancement
    python predict.py --w GPEN-Colorization-1024.pth --img grays/ --task FaceColorization

The weights may be ours (.pdparams, training checkpoints) or the authors' .pth; the architecture is
read off them unless --size/--mul/--narrow or -c say otherwise.
"""
import argparse
import sys

from utils.config import MODEL_FLAGS, add_config_arguments, config_from_args, model_flags_given
from utils.errors import UserError, run_cli
from utils.runtime import prepare_cpu


def add_restore_arguments(parser):
    """The restoring flags predict.py and infer.py share (values of faces.files.RestoreOptions)."""
    from faces.detect import DETECTORS
    from faces.enhance import TASKS

    parser.add_argument("--img", "--input", dest="img", required=True, help="an image or a folder of images")
    parser.add_argument("--output", default="results", help="folder for the restored images")
    parser.add_argument("--batch_size", type=int, default=4, help="faces restored per network call")
    parser.add_argument("--degrade", action="store_true",
                        help="degrade the (sharp, aligned) input first with the seeded test-time degradation, "
                             "save degraded | restored | original and print the PSNR")
    parser.add_argument("--seed", type=int, default=0, help="seed of --degrade")
    parser.add_argument("--aligned", choices=("auto", "yes", "no"), default="auto",
                        help="is the input an aligned face crop? auto: decided per image (faces.looks_aligned)")
    parser.add_argument("--detector", choices=DETECTORS, default="auto",
                        help="face detector for photos (auto: YuNet for an .onnx --detector_model, RetinaFace "
                             "for a .pth, else MTCNN)")
    parser.add_argument("--detector_model", default=None,
                        help="the detector's model file (YuNet .onnx, RetinaFace .pth)")
    parser.add_argument("--det_threshold", type=float, default=None, help="detection score threshold")
    parser.add_argument("--min_face", type=int, default=20, help="smallest face side to restore, pixels")
    parser.add_argument("--max_faces", type=int, default=0, help="restore at most this many (largest) faces")
    parser.add_argument("--detect_max_side", type=int, default=3000,
                        help="larger photos are detected on a shrunk copy (memory)")
    parser.add_argument("--alpha", type=float, default=1.0, help="mix with the input: 1 = restored only")
    parser.add_argument("--upscale", type=float, default=1.0, help="scale the whole photo by this factor")
    parser.add_argument("--save_faces", action="store_true", help="also save each aligned face and its restoration")
    # The authors' procedures (faces/enhance.py), from their weight files.
    parser.add_argument("--task", choices=TASKS, default="FaceEnhancement",
                        help="the authors' task; the other three take aligned faces (use their generator files)")
    parser.add_argument("--parsing_weights", default=None,
                        help="ParseNet-latest.pth: photos go through the authors' FaceEnhancement (face-parsing "
                             "paste-back mask); without it, the feathered box mask")
    parser.add_argument("--sr_weights", default=None,
                        help="realesrnet_x1/x2/x4.pth: super-resolve the background (with --parsing_weights)")
    parser.add_argument("--sr_scale", type=int, choices=(1, 2, 4), default=None,
                        help="the scale --sr_weights must have (default: the file's)")
    parser.add_argument("--mask", default=None,
                        help="FaceInpainting: a mask image, white = missing (default: the authors' brush strokes "
                             "drawn from --seed)")


def restore_options(args):
    """The RestoreOptions of parsed add_restore_arguments flags."""
    import dataclasses

    from faces.files import RestoreOptions

    return RestoreOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(RestoreOptions)})


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    add_config_arguments(parser, legacy=MODEL_FLAGS + ("threads", "device"))
    parser.add_argument("--w", "-w", "--weights", dest="weights", default=None,
                        help="generator weights: our .pdparams / training checkpoint or the authors' .pth")
    parser.add_argument("--backend", choices=("auto", "dygraph", "predictor"), default="auto",
                        help="auto: the oneDNN predictor on CPU (checked against dygraph), dygraph on GPU")
    add_restore_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = config_from_args(args, {"eval.weights": args.weights})
    if not cfg.eval.weights:
        raise UserError("no generator weights given: pass --w (our .pdparams or the authors' .pth)")
    prepare_cpu(cfg.runtime.threads)

    from faces.files import load_inputs, restore_files
    from deploy.runner import GeneratorRunner
    from model.loading import load_generator
    from utils.runtime import select_device

    options = restore_options(args)
    inputs = load_inputs(args.img, options)  # every input read and checked before any work is done
    select_device(cfg.runtime.device)
    generator, model_cfg = load_generator(cfg.eval.weights, cfg.model if model_flags_given(args) else None)
    runner = GeneratorRunner(generator, model_cfg.size, backend=args.backend)
    restore_files(args.img, inputs, runner, model_cfg.size, options, cfg.degradation, cfg.data.interpolation)
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
