"""Restoring files: what predict.py (a generator) and infer.py (an exported predictor) share.

Inputs are an image or a folder. Each image is one of:
* an aligned face (square; resized to the model's size and back): restored whole;
* a photo: every face detected, aligned, restored in batches and pasted back (faces.restore_photo);
* with --degrade: a sharp aligned face that is first degraded with the seeded test-time degradation;
  degraded | restored | original are saved side by side and the PSNR printed, as the reproductions did.
All inputs are read and checked before anything is written.
"""
import os
import time

import numpy as np

from data_loader.degradations import as_float_image, degrade_for_test
from metric.psnr import psnr
from utils.errors import UserError
from utils.image_io import is_image_file, list_images, read_image, write_image
from utils.imaging import resize_square, side_by_side, to_images, to_network


def add_arguments(parser):
    parser.add_argument("--img", "--input", dest="img", required=True, help="an image or a folder of images")
    parser.add_argument("--output", default="results", help="folder for the restored images")
    parser.add_argument("--batch_size", type=int, default=4, help="faces restored per network call")
    parser.add_argument("--degrade", action="store_true",
                        help="degrade the (sharp, aligned) input first with the seeded test-time degradation, "
                             "save degraded | restored | original and print the PSNR")
    parser.add_argument("--seed", type=int, default=0, help="seed of --degrade")
    parser.add_argument("--aligned", choices=("auto", "yes", "no"), default="auto",
                        help="is the input an aligned face crop? auto: decided per image (faces.looks_aligned)")
    parser.add_argument("--detector", choices=("auto", "mtcnn", "yunet"), default="auto",
                        help="face detector for photos (auto: YuNet when --detector_model is given, else MTCNN)")
    parser.add_argument("--detector_model", default=None, help="YuNet .onnx file (OpenCV's face_detection_yunet)")
    parser.add_argument("--det_threshold", type=float, default=None, help="detection score threshold")
    parser.add_argument("--min_face", type=int, default=20, help="smallest face side to restore, pixels")
    parser.add_argument("--max_faces", type=int, default=0, help="restore at most this many (largest) faces")
    parser.add_argument("--detect_max_side", type=int, default=3000,
                        help="larger photos are detected on a shrunk copy (memory)")
    parser.add_argument("--alpha", type=float, default=1.0, help="mix with the input: 1 = restored only")
    parser.add_argument("--upscale", type=float, default=1.0, help="scale the whole photo by this factor")
    parser.add_argument("--save_faces", action="store_true", help="also save each aligned face and its restoration")
    parser.add_argument("--gray_to_rgb", action="store_true", help="accept grayscale files (replicated to RGB)")


def _record(timings, path, preprocess, network_end, network):
    if timings is not None:
        timings.append({"preprocess": DECODE_SECONDS.get(path, 0.0) + preprocess, "inference": network,
                        "postprocess": time.perf_counter() - network_end})


def load_inputs(args):
    """[(path, RGB image)] for --img, all read and checked first; raises UserError on any bad input."""
    if os.path.isdir(args.img):
        paths = list_images(args.img)
        if not paths:
            raise UserError(f"no images found in folder {args.img}")
    elif os.path.isfile(args.img):
        if not is_image_file(args.img):
            raise UserError(f"{args.img} is not an image file (png, jpg, jpeg, bmp, webp)")
        paths = [args.img]
    else:
        raise UserError(f"input not found: {args.img}")
    inputs = []
    for path in paths:
        started = time.perf_counter()
        image = read_image(path, allow_gray=args.gray_to_rgb)
        DECODE_SECONDS[path] = time.perf_counter() - started
        if (args.aligned == "yes" or args.degrade) and image.shape[0] != image.shape[1]:
            raise UserError(f"{path} is {image.shape[1]}x{image.shape[0]}: an aligned face is square; "
                            f"use --aligned auto (or no) to restore the faces of a photo")
        inputs.append((path, image))
    return inputs


DECODE_SECONDS = {}  # path -> seconds spent reading it (for --benchmark)


def _stem(path, root):
    base = root if os.path.isdir(root) else os.path.dirname(root)
    return os.path.splitext(os.path.relpath(path, base))[0]


def restore_files(args, inputs, run, size, degradation_cfg, interpolation="area", timings=None):
    """Restore `inputs` (from load_inputs) with `run` (float32 NCHW in [-1, 1] -> same); returns the
    written paths. timings: a list that receives per image {preprocess, inference, postprocess} seconds."""
    from faces import (array_restorer, build_detector, looks_aligned, restore_aligned, restore_photo,
                       write_outputs)

    network_seconds = []

    def timed_run(x):
        started = time.perf_counter()
        out = run(x)
        network_seconds.append(time.perf_counter() - started)
        return out

    restorer = array_restorer(timed_run)
    detector = None
    if args.aligned != "yes" and not args.degrade:
        detector = build_detector(args.detector, args.detector_model, threshold=args.det_threshold,
                                  min_face=args.min_face, max_faces=args.max_faces, max_side=args.detect_max_side)
    written, scores = [], []
    for index, (path, image) in enumerate(inputs):
        stem = _stem(path, args.img)
        started, network_seconds[:] = time.perf_counter(), []
        if args.degrade:
            sharp = resize_square(image, size, interpolation)
            lq, gt = degrade_for_test(as_float_image(sharp), args.seed, index, degradation_cfg)
            degraded = to_images(to_network(lq[None]))[0]
            original = to_images(to_network(gt[None]))[0]
            before_network = time.perf_counter()
            restored = restorer(degraded[None])[0]
            after_network = time.perf_counter()
            out = os.path.join(args.output, stem + ".png")
            write_image(out, side_by_side(degraded, restored, original))
            scores.append(psnr(restored, original))
            print(f"result saved in : {out}  (degraded | restored | original, PSNR {scores[-1]:.2f} dB)")
            written.append(out)
            _record(timings, path, before_network - started, after_network, sum(network_seconds))
            continue
        aligned = args.aligned == "yes" or (args.aligned == "auto" and looks_aligned(image, detector))
        before_network = time.perf_counter()
        if aligned:
            result = restore_aligned(image, restorer, size, args.alpha)
        else:
            result = restore_photo(image, restorer, detector, size, batch_size=args.batch_size, alpha=args.alpha,
                                   upscale=args.upscale)
        network = sum(network_seconds)
        # Photo mode: detection and alignment are pre-processing, blending post-processing.
        after_network = before_network + result.timings.get("detect", 0) + result.timings.get("align", 0) + network
        if result.notice:
            print(f"{path}: {result.notice}")
        paths = write_outputs(args.output, stem, image, result, save_faces=args.save_faces)
        print(f"result saved in : {paths[0]}  ({result.num_faces} face{'s' if result.num_faces != 1 else ''}"
              f"{', aligned input' if aligned else ''})")
        written.extend(paths)
        _record(timings, path, after_network - network - started, after_network, network)
    if scores:
        print(f"PSNR: {np.mean(scores):.4f} over {len(scores)} face{'s' if len(scores) > 1 else ''}")
    return written
