"""Seconds per photo for restoring every face of a photo, split into detection, alignment, restoration
and blending; and detector recall / precision on the shared wild photos.

    python tools/benchmark_faces.py [--photo ../shared/data/wild/Solvay_conference_1927.png]
        [--detector mtcnn|yunet] [--detector_model FILE.onnx] [--sizes 256 512] [--batch_size 4]
        [--repeat 3] [--threads 2] [--yunet_models DIR] [--json benchmark_faces.json]

Restoration runs GPEN's `model.FullGenerator` with random weights (speed does not depend on the
values): 256 with channel_multiplier 1, narrow 0.5; 512 with 2, 1 (the authors' GPEN-BFR models).
Detection is timed on its own (median of at least 3 runs after a warm-up); the other stages reuse its
faces and are the median of `--repeat` whole-photo runs after a warm-up batch (GPEN-512 on CPU takes
minutes per group photo, so the default is one run). The detector table runs
MTCNN and, when the YuNet models are found, YuNet on every photo of ../shared/data/wild against the
boxes in tools/wild_truth.py.
"""
import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
WILD = SHARED / "data" / "wild"
YUNET_DIR = SHARED / "weights" / "yunet"
# The authors' two face-restoration models: size -> (channel_multiplier, narrow).
GPEN_MODELS = {256: (1, 0.5), 512: (2, 1.0), 1024: (2, 1.0)}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photo", default=str(WILD / "Solvay_conference_1927.png"), help="photo to time")
    parser.add_argument("--detector", default="auto", choices=["auto", "mtcnn", "yunet", "retinaface"],
                        help="detector to time (auto: YuNet for an .onnx --detector_model, RetinaFace for a .pth, "
                             "else MTCNN)")
    parser.add_argument("--detector_model", default="", help="YuNet .onnx or RetinaFace .pth")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="GPEN sizes to time")
    parser.add_argument("--batch_size", type=int, default=4, help="faces per restorer call")
    parser.add_argument("--backend", choices=("auto", "dygraph", "predictor"), default="auto",
                        help="generator backend, as predict.py's (auto: the oneDNN predictor on CPU)")
    parser.add_argument("--repeat", type=int, default=1, help="timed whole-photo runs per size (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--yunet_models", default=str(YUNET_DIR), help="folder of YuNet .onnx files for the "
                        "detector table (skipped when absent)")
    parser.add_argument("--skip_detectors", action="store_true", help="no recall / precision table")
    parser.add_argument("--json", default="", help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def _restorer(size, backend):
    """(restorer, description): a random-weight FullGenerator run as predict.py runs it."""
    from deploy.runner import GeneratorRunner
    from faces.restorer import array_restorer
    from model import FullGenerator

    multiplier, narrow = GPEN_MODELS[size]
    generator = FullGenerator(size, style_dim=512, n_mlp=8, channel_multiplier=multiplier, narrow=narrow)
    runner = GeneratorRunner(generator, size, backend=backend)
    description = (f"FullGenerator({size}, channel_multiplier={multiplier}, narrow={narrow}), random weights, "
                   f"{runner.backend}")
    return array_restorer(runner), description


def time_photo(args, photo, detector):
    from faces.pipeline import restore_photo

    detect_s = []
    faces = detector(photo)  # warm-up
    for _ in range(max(3, args.repeat)):
        start = time.perf_counter()
        faces = detector(photo)
        detect_s.append(time.perf_counter() - start)
    report = {"faces": len(faces), "detect_s": statistics.median(detect_s), "sizes": {}}
    for size in args.sizes:
        restorer, description = _restorer(size, args.backend)
        warm_up = faces.select(slice(0, args.batch_size))
        restore_photo(photo, restorer, None, size, batch_size=args.batch_size, faces=warm_up)
        runs = [restore_photo(photo, restorer, None, size, batch_size=args.batch_size, faces=faces).timings
                for _ in range(args.repeat)]
        stages = {stage: statistics.median(run[stage] for run in runs) for stage in ("align", "restore", "blend")}
        total = report["detect_s"] + sum(stages.values())
        report["sizes"][str(size)] = dict(restorer=description, **{f"{k}_s": v for k, v in stages.items()},
                                          restore_s_per_face=stages["restore"] / max(len(faces), 1),
                                          total_s=total)
    return report


def detector_table(args):
    from faces.detect import build_detector
    from tools.wild_truth import WILD_TRUTH, evaluate_photo
    from utils.image_io import read_image

    photos = {name: read_image(str(WILD / name)) for name in WILD_TRUTH if (WILD / name).exists()}
    candidates = [("mtcnn", None)]
    yunet_dir = Path(args.yunet_models)
    if yunet_dir.is_dir():
        candidates += [("yunet", str(path)) for path in sorted(yunet_dir.glob("*.onnx"))]
    table = []
    for name, model in candidates:
        detector = build_detector(name, model)
        totals, seconds, per_photo = [0, 0, 0], 0.0, {}
        for photo_name, photo in photos.items():
            detector(photo)  # warm-up
            start = time.perf_counter()
            faces = detector(photo)
            elapsed = time.perf_counter() - start
            hits, missed, false_pos = evaluate_photo(faces, photo_name)
            totals = [totals[0] + hits, totals[1] + missed, totals[2] + false_pos]
            seconds += elapsed
            per_photo[photo_name] = {"found": hits, "faces": hits + missed, "false_positives": false_pos,
                                     "seconds": elapsed}
        hits, missed, false_pos = totals
        table.append({"detector": name, "model": os.path.basename(model) if model else "mtcnn package weights",
                      "recall": hits / max(hits + missed, 1), "precision": hits / max(hits + false_pos, 1),
                      "faces": hits + missed, "seconds_all_photos": seconds, "photos": per_photo})
    return table


def main(argv=None):
    args = parse_args(argv)
    from utils.runtime import prepare_cpu

    prepare_cpu(args.threads)
    import paddle  # noqa: F401  (after prepare_cpu: fixes the thread count)

    from faces.detect import build_detector
    from utils.image_io import read_image

    photo = read_image(args.photo)
    detector = build_detector(args.detector, args.detector_model or None)
    args.detector = detector.name
    report = {"photo": os.path.basename(args.photo), "photo_size": list(photo.shape[:2]), "detector": args.detector,
              "threads": args.threads, "batch_size": args.batch_size, "repeat": args.repeat,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
                         f"load {os.getloadavg()[0]:.1f}"}
    report.update(time_photo(args, photo, detector))
    print(f"{report['photo']} {photo.shape[1]}x{photo.shape[0]}: {report['faces']} faces; "
          f"{args.threads} threads; median of {args.repeat}; load average {os.getloadavg()[0]:.1f}")
    print(f"{'size':>5} {'detect':>8} {'align':>8} {'restore':>8} {'blend':>8} {'total':>8}  restorer")
    for size, row in report["sizes"].items():
        print(f"{size:>5} {report['detect_s']:8.3f} {row['align_s']:8.3f} {row['restore_s']:8.3f} "
              f"{row['blend_s']:8.3f} {row['total_s']:8.3f}  {row['restorer']}")
    if not args.skip_detectors:
        report["detectors"] = detector_table(args)
        print(f"\n{'detector':<10} {'model':<24} {'recall':>7} {'precision':>9} {'seconds':>8}  (all wild photos)")
        for row in report["detectors"]:
            print(f"{row['detector']:<10} {row['model']:<24} {row['recall']:7.3f} {row['precision']:9.3f} "
                  f"{row['seconds_all_photos']:8.2f}")
            for name, figures in row["photos"].items():
                print(f"{'':<10} {name:<24} {figures['found']:>3}/{figures['faces']:<3} fp {figures['false_positives']}"
                      f"  {figures['seconds']:.2f}s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    from utils.errors import run_cli

    run_cli(main)
