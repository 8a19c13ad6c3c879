"""Restoring image files: what predict.py (a generator) and infer.py (an exported predictor) share.

Inputs are an image or a folder. Each image is one of:
* an aligned face (square; resized to the model's size and back): restored whole;
* a photo: every face detected, aligned, restored in batches and pasted back (faces.restore_photo);
* with `degrade`: a sharp aligned face that is first degraded with the seeded test-time degradation;
  degraded | restored | original are saved side by side and the PSNR printed, as the reproductions did.
All inputs are read and checked before anything is written. The scripts own the command-line flags;
this module takes their values as a `RestoreOptions`.
"""
import os
import time
from dataclasses import dataclass

import numpy as np

from data_loader import degrade_test_face
from metric.psnr import psnr
from utils.errors import UserError
from utils.image_io import gray_notice, is_image_file, list_images, read_image, write_image
from utils.imaging import resize_square, side_by_side


@dataclass
class RestoreOptions:
    """How files are restored (predict.py / infer.py flags of the same names)."""
    output: str = "results"          # folder for the restored images
    batch_size: int = 4              # faces restored per network call
    degrade: bool = False            # degrade the sharp aligned input first; save degraded | restored | original
    seed: int = 0                    # seed of `degrade`
    aligned: str = "auto"            # 'auto' (decided per image), 'yes' (aligned face crops), 'no' (photos)
    detector: str = "auto"           # faces.detect.DETECTORS
    detector_model: str = None       # model file of the detector (YuNet .onnx, RetinaFace .pth)
    det_threshold: float = None      # detection score threshold (None: the detector's own)
    min_face: int = 20               # smallest face side to restore, pixels
    max_faces: int = 0               # restore at most this many (largest) faces; 0 = all
    detect_max_side: int = 3000      # larger photos are detected on a shrunk copy
    alpha: float = 1.0               # mix with the input: 1 = restored only
    upscale: float = 1.0             # scale the whole photo by this factor
    save_faces: bool = False         # also save each aligned face and its restoration
    task: str = "FaceEnhancement"    # the authors' task (faces.enhance.TASKS)
    parsing_weights: str = None      # ParseNet file: photos through the authors' FaceEnhancement
    sr_weights: str = None           # Real-ESRNet file: the background super-resolved (with parsing_weights)
    sr_scale: int = None             # the scale sr_weights must have (None: the file's)
    mask: str = None                 # FaceInpainting: mask image, white = missing (None: brush strokes from seed)


@dataclass
class InputImage:
    path: str
    image: np.ndarray                # RGB uint8 HWC
    decode_seconds: float


def load_inputs(source, options):
    """[InputImage] of `source` (an image or a folder), all read and checked first; UserError on any bad
    input. A grayscale file is replicated to three channels, with one line saying so."""
    if os.path.isdir(source):
        paths = list_images(source)
        if not paths:
            raise UserError(f"no images found in folder {source}")
    elif os.path.isfile(source):
        if not is_image_file(source):
            raise UserError(f"{source} is not an image file (png, jpg, jpeg, bmp, webp)")
        paths = [source]
    else:
        raise UserError(f"input not found: {source}")
    inputs, gray = [], []
    for path in paths:
        started = time.perf_counter()
        image = read_image(path, gray_paths=gray)
        seconds = time.perf_counter() - started
        if (options.aligned == "yes" or options.degrade) and image.shape[0] != image.shape[1]:
            raise UserError(f"{path} is {image.shape[1]}x{image.shape[0]}: an aligned face is square; "
                            f"use --aligned auto (or no) to restore the faces of a photo")
        inputs.append(InputImage(path, image, seconds))
    if gray:  # old photos, GPEN's most common input, are often gray; GPEN restores RGB
        print(gray_notice(gray))
    return inputs


def _stem(path, root):
    base = root if os.path.isdir(root) else os.path.dirname(root)
    return os.path.splitext(os.path.relpath(path, base))[0]


class _TimedNetwork:
    """`run` with the seconds of its calls summed since the last reset (the inference column of --benchmark)."""

    def __init__(self, run):
        self.run, self.seconds = run, 0.0

    def __call__(self, x):
        started = time.perf_counter()
        out = self.run(x)
        self.seconds += time.perf_counter() - started
        return out


def restore_files(source, inputs, run, size, options, degradation_cfg, interpolation="area", timings=None):
    """Restore `inputs` (from load_inputs(source, ...)) with `run` (float32 NCHW in [-1, 1] -> same); returns
    the written paths. timings: a list that receives per image {preprocess, inference, postprocess} seconds."""
    from faces import array_restorer, build_detector, looks_aligned, restore_aligned, restore_photo, write_outputs

    network = _TimedNetwork(run)
    restorer = array_restorer(network)
    detector = procedure = None
    if options.degrade and options.task != "FaceEnhancement":
        raise UserError(f"--degrade degrades faces for restoration (FaceEnhancement), not for --task {options.task}")
    if options.aligned != "yes" and not options.degrade and options.task == "FaceEnhancement":
        detector = build_detector(options.detector, options.detector_model, threshold=options.det_threshold,
                                  min_face=options.min_face, max_faces=options.max_faces,
                                  max_side=options.detect_max_side)
    if not options.degrade:  # the authors' procedures (faces/enhance.py) when their files are given
        from faces.enhance import files_procedure

        built = files_procedure(network, size, options.task, options.parsing_weights, detector, options.sr_weights,
                                options.sr_scale, options.alpha, options.batch_size,
                                read_image(options.mask) if options.mask else None, options.seed)
        procedure, pipeline = built or (None, f"{detector.name if detector else 'no'} detector, feathered box mask "
                                              f"(--parsing_weights ParseNet-latest.pth: the authors' FaceEnhancement)")
        print(f"pipeline: {pipeline}")
    written, scores = [], []
    for index, item in enumerate(inputs):
        stem = _stem(item.path, source)
        started, network.seconds = time.perf_counter(), 0.0
        if options.degrade:
            sharp = resize_square(item.image, size, interpolation)
            face = degrade_test_face(sharp, options.seed, index, degradation_cfg)
            degraded, original = face.degraded, face.target
            before_network = time.perf_counter()
            restored = restorer(degraded[None])[0]
            after_network = time.perf_counter()
            out = os.path.join(options.output, stem + ".png")
            write_image(out, side_by_side(degraded, restored, original))
            scores.append(psnr(restored, original))
            print(f"result saved in : {out}  (degraded | restored | original, PSNR {scores[-1]:.2f} dB)")
            written.append(out)
        else:
            aligned = options.aligned == "yes" or (options.aligned == "auto" and looks_aligned(item.image, detector))
            before_network = time.perf_counter()
            if procedure is not None:
                result = procedure(item.image, aligned=aligned)
            elif aligned:
                result = restore_aligned(item.image, restorer, size, options.alpha)
            else:
                result = restore_photo(item.image, restorer, detector, size, batch_size=options.batch_size,
                                       alpha=options.alpha, upscale=options.upscale)
            # Photo mode: detection and alignment are pre-processing, blending post-processing.
            before_network += result.timings.get("detect", 0) + result.timings.get("align", 0)
            after_network = before_network + network.seconds
            if result.notice:
                print(f"{item.path}: {result.notice}")
            before = getattr(result, "before", None)  # inpainting: the input with its missing region white
            paths = write_outputs(options.output, stem, item.image if before is None else before, result,
                                  save_faces=options.save_faces)
            print(f"result saved in : {paths[0]}  ({result.num_faces} face{'s' if result.num_faces != 1 else ''}"
                  f"{', aligned input' if aligned else ''})")
            written.extend(paths)
        if timings is not None:
            timings.append({"preprocess": item.decode_seconds + before_network - started, "inference": network.seconds,
                            "postprocess": time.perf_counter() - after_network})
    if scores:
        print(f"PSNR: {np.mean(scores):.4f} over {len(scores)} face{'s' if len(scores) > 1 else ''}")
    return written
